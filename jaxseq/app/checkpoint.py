"""Checkpoints: a run's config, loss history and training state in one file, written atomically.

A checkpoint is written aside and renamed into place, so a kill at any moment leaves
the previous complete checkpoint. It holds the history up to its step, so the run's
`history.csv` can always be rebuilt from it. The state is stored as its flattened
leaves (NumPy arrays); resuming checks every leaf's shape and dtype against the state
that the stored config builds, so a file from another model size is refused by name.
Saving and loading need NumPy only; `restore` rebuilds the state (JAX, imported there).
`jaxseq.app.crossing` carries a checkpoint to torchseq's and back.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from jaxseq.app.config import TrainConfig
from jaxseq.errors import CheckpointError
from jaxseq.files import atomic_write

FILE = "checkpoint.npz"


@dataclasses.dataclass
class Checkpoint:
    config: TrainConfig  # the run's options (its --steps as extended by --resume)
    losses: np.ndarray  # (step,) the history so far
    leaves: list[np.ndarray]  # the flattened training state after `step` steps
    sizes: tuple[int, int] | None = None  # the data's (input, target) features; None: read the data again

    @property
    def step(self) -> int:
        return len(self.losses)


def save(run_dir: Path, checkpoint: Checkpoint) -> None:
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(checkpoint.leaves)}
    arrays["losses"] = np.asarray(checkpoint.losses, np.float64)
    arrays["config"] = np.array(json.dumps(dataclasses.asdict(checkpoint.config)))
    if checkpoint.sizes is not None:
        arrays["sizes"] = np.array(checkpoint.sizes, np.int64)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)

    atomic_write(Path(run_dir) / FILE, write)


def load(run_dir) -> Checkpoint:
    """The checkpoint in `run_dir` (or the file itself); raises CheckpointError naming the problem."""
    path = Path(run_dir)
    path = path / FILE if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (a jaxseq run writes {FILE} at its end)")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = sorted(k for k in f.files if k.startswith("leaf_"))
            config = TrainConfig(**json.loads(str(f["config"])))
            losses = f["losses"]
            leaves = [f[name] for name in names]
            sizes = tuple(int(n) for n in f["sizes"]) if "sizes" in f.files else None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    if losses.ndim != 1 or not np.isfinite(losses).all() or len(losses) > config.steps:
        raise CheckpointError(f"{path}: inconsistent checkpoint (history of shape {losses.shape})")
    return Checkpoint(config=config, losses=losses, leaves=leaves, sizes=sizes)


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


def state_template(config: TrainConfig, input_size: int, output_size: int):
    """((params, opt_state) of a fresh run of `config`, the model's graphdef): the layout of a
    checkpoint's leaves, the parameters' first, as `jaxseq.app.training.TrainState` flattens."""
    from flax import nnx

    from jaxseq import optim
    from jaxseq.nn.model import Architecture

    model = Architecture.of_run(config, input_size, output_size).build(dtype=config.dtype, init=config.init)
    graphdef, params = nnx.split(model)
    return (params, optim.from_config(config).init(params)), graphdef


def restore(saved: Checkpoint, input_size: int, output_size: int):
    """((params, opt_state) as the checkpoint holds them, the model's graphdef), for data of these
    feature sizes; CheckpointError where the checkpoint does not fit its config's model."""
    import jax

    template, graphdef = state_template(saved.config, input_size, output_size)
    leaves, treedef = jax.tree.flatten(template)
    check_leaves(saved.leaves, leaves, "checkpoint")
    return jax.tree.unflatten(treedef, list(saved.leaves)), graphdef


def restore_model(saved: Checkpoint):
    """The checkpoint's model (a `jaxseq.Model`) at its step. The data's feature sizes are the
    checkpoint's (`saved.sizes`), else those of the data its config names (read again)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if saved.sizes is not None:
        sizes = saved.sizes
    else:
        from jaxseq.app.task import load_sequences

        data = load_sequences(saved.config)
        sizes = data.x.shape[-1], data.y.shape[-1]
    (params, _), graphdef = restore(saved, *sizes)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, params))
