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


# A run checkpointed in one framework, continued in the other: the weights under PyTorch's names,
# the optimizer and scheduler state converted by `jaxseq.optim.state_to_torch` / `state_from_torch`.


def _template(config: TrainConfig, data):
    """(the run's TrainState as jaxseq builds it, the model's graphdef): the checkpoint's leaves' layout."""
    from flax import nnx

    from jaxseq.training import TrainState, init_model, prepare

    fresh = config.replace(init_from=None, init_from_torch=None)  # the weights come from the checkpoint
    data, tx = prepare(fresh, data)
    graphdef, params = nnx.split(init_model(fresh, data.x.shape[-1], data.y.shape[-1]))
    return TrainState(params, tx.init(params)), graphdef


def to_torch(run_dir, out_dir, data) -> Path:
    """Writes jaxseq's checkpoint in `run_dir` as torchseq's (out_dir/checkpoint.pt and history.csv),
    so `torchseq train --resume out_dir` continues the run on the same trajectory. `data`: the
    run's Sequences (for the model's sizes). Needs torch."""
    import jax
    from flax import nnx

    from jaxseq import optim, outputs
    from jaxseq.port.convert import to_torch_state_dict
    from torchseq.model import from_state_dict
    from torchseq.train import save_checkpoint

    saved = load(run_dir)
    config = saved.config
    _accumulated_state_unsupported(config)
    template, graphdef = _template(config, data)
    leaves, treedef = jax.tree.flatten(template)
    check_leaves(saved.leaves, leaves, run_dir)
    state = jax.tree.unflatten(treedef, list(saved.leaves))
    t_model = from_state_dict(to_torch_state_dict(nnx.merge(graphdef, state.params)))
    optimizer, scheduler = optim.torch_from_config(config, t_model.parameters())
    optim.state_to_torch(state.opt_state, optimizer, scheduler, model=t_model)
    out = outputs.prepare_out_dir(out_dir)
    save_checkpoint(out, saved.losses, t_model, optimizer, scheduler, config=config)
    outputs.write_text(out / "history.csv", outputs.history_csv(saved.losses))
    return out


def from_torch(run_dir, out_dir) -> Path:
    """Writes torchseq's checkpoint in `run_dir` as jaxseq's (out_dir/checkpoint.npz and history.csv),
    so `jaxseq train --resume out_dir` continues the run on the same trajectory. Needs torch."""
    import jax
    from flax import nnx

    from jaxseq import optim, outputs
    from jaxseq.port.convert import from_torch as model_from_torch
    from jaxseq.training import TrainState
    from torchseq.model import from_state_dict
    from torchseq.train import load_checkpoint

    saved = load_checkpoint(run_dir)
    config = saved.config
    _accumulated_state_unsupported(config)
    t_model = from_state_dict({k: v.numpy() for k, v in saved.model.items()})
    optimizer, scheduler = optim.torch_from_config(config, t_model.parameters())
    optimizer.load_state_dict(saved.optimizer)
    if scheduler is not None:
        scheduler.load_state_dict(saved.scheduler)
    _, params = nnx.split(model_from_torch(t_model))
    opt_state = optim.state_from_torch(optimizer, scheduler, params=params, model=t_model, step=len(saved.losses))
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(TrainState(params, opt_state))]
    out = outputs.prepare_out_dir(out_dir)
    save(out, Checkpoint(config, saved.losses, leaves))
    outputs.write_text(out / "history.csv", outputs.history_csv(saved.losses))
    return out


def _accumulated_state_unsupported(config: TrainConfig) -> None:
    if not config.zero_grad:
        raise CheckpointError(
            "a --no-zero-grad run keeps its gradient sum in torch's .grad: it cannot cross frameworks"
        )
