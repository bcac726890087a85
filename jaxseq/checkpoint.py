"""Checkpoints: a run's config, loss history and training state in one file, written atomically.

A checkpoint is written aside and renamed into place, so a kill at any moment leaves
the previous complete checkpoint. It holds the history up to its step, so the run's
`history.csv` can always be rebuilt from it. The state is stored as its flattened
leaves (NumPy arrays); loading checks every leaf's shape and dtype against the state
that the stored config builds, so a file from another model size is refused by name.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from jaxseq.config import TrainConfig
from jaxseq.errors import CheckpointError

FILE = "checkpoint.npz"


@dataclasses.dataclass
class Checkpoint:
    config: TrainConfig  # the run's options, as first given
    losses: np.ndarray  # (step,) the history so far
    leaves: list[np.ndarray]  # the flattened training state after `step` steps

    @property
    def step(self) -> int:
        return len(self.losses)


def save(run_dir: Path, checkpoint: Checkpoint) -> None:
    from jaxseq.outputs import atomic_write

    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(checkpoint.leaves)}
    arrays["losses"] = np.asarray(checkpoint.losses, np.float64)
    arrays["config"] = np.array(json.dumps(dataclasses.asdict(checkpoint.config)))

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)

    atomic_write(Path(run_dir) / FILE, write)


def load(run_dir) -> Checkpoint:
    """The checkpoint in `run_dir` (or the file itself); raises CheckpointError naming the problem."""
    path = Path(run_dir)
    path = path / FILE if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (train with --checkpoint-every N to write one)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = sorted(k for k in f.files if k.startswith("leaf_"))
            config = TrainConfig(**json.loads(str(f["config"])))
            losses = f["losses"]
            leaves = [f[name] for name in names]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if losses.ndim != 1 or not np.isfinite(losses).all() or len(losses) > config.steps:
        raise CheckpointError(f"{path}: inconsistent checkpoint (history of shape {losses.shape})")
    return Checkpoint(config=config, losses=losses, leaves=leaves)


def check_leaves(leaves: list[np.ndarray], template: list, source) -> None:
    """Raises CheckpointError unless `leaves` match the `template` leaves in number, shape and dtype."""
    if len(leaves) != len(template):
        raise CheckpointError(f"{source}: checkpoint has {len(leaves)} state arrays, the model needs {len(template)}")
    for i, (leaf, want) in enumerate(zip(leaves, template, strict=True)):
        if leaf.shape != want.shape or leaf.dtype != want.dtype:
            raise CheckpointError(
                f"{source}: state array {i} is {leaf.dtype}{list(leaf.shape)}, the model needs "
                f"{want.dtype}{list(want.shape)} (a checkpoint from a different model size?)"
            )
