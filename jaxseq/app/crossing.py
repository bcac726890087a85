"""Runs across frameworks: a checkpointed run of one continued in the other, the weights of either
framework's run directory, and torchseq's initial weights for a jaxseq run (--init-from-torch).

A run checkpointed in one framework, continued in the other: the weights under PyTorch's names, the
optimizer and scheduler state converted by `jaxseq.optim.state_to_torch` / `state_from_torch`.
The only application module besides `compare` that imports torchseq, and only inside functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxseq.app import checkpoint, outputs
from jaxseq.app.config import TrainConfig
from jaxseq.errors import CheckpointError, ConversionError, torch_required
from jaxseq.files import write_text

TORCH_CHECKPOINT = "checkpoint.pt"  # torchseq.train.CHECKPOINT, named here without importing torch


def to_torch(run_dir, out_dir, data) -> Path:
    """Writes jaxseq's checkpoint in `run_dir` as torchseq's (out_dir/checkpoint.pt and history.csv,
    by `outputs.RunDir`'s rule), so `torchseq train --resume out_dir` continues the run on the same
    trajectory. `data`: the run's Sequences (for the model's sizes). Needs torch."""
    from flax import nnx

    from jaxseq import optim
    from jaxseq.port.convert import to_torch_state_dict
    from torchseq.model import from_state_dict
    from torchseq.train import save_checkpoint

    saved = checkpoint.load(run_dir)
    config = saved.config
    _accumulated_state_unsupported(config)
    (params, opt_state), graphdef = checkpoint.restore(saved, data.x.shape[-1], data.y.shape[-1])
    t_model = from_state_dict(to_torch_state_dict(nnx.merge(graphdef, params)))
    optimizer, scheduler = optim.torch_from_config(config, t_model.parameters())
    optim.state_to_torch(opt_state, optimizer, scheduler, model=t_model)
    with outputs.RunDir(out_dir) as out:
        save_checkpoint(out, saved.losses, t_model, optimizer, scheduler, config=config)
        write_text(out / "history.csv", outputs.history_csv(saved.losses))
    return Path(out_dir)


def from_torch(run_dir, out_dir) -> Path:
    """Writes torchseq's checkpoint in `run_dir` as jaxseq's (out_dir/checkpoint.npz and history.csv,
    by `outputs.RunDir`'s rule), so `jaxseq train --resume out_dir` continues the run on the same
    trajectory. Needs torch."""
    import jax
    from flax import nnx

    from jaxseq import optim
    from jaxseq.port.convert import from_torch as model_from_torch
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
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves((params, opt_state))]  # TrainState's order
    sizes = (t_model.recurrent.input_size, t_model.linear.out_features)
    with outputs.RunDir(out_dir) as out:
        checkpoint.save(out, checkpoint.Checkpoint(config, saved.losses, leaves, sizes))
        write_text(out / "history.csv", outputs.history_csv(saved.losses))
    return Path(out_dir)


def torch_start(config: TrainConfig, input_size: int, output_size: int):
    """The jaxseq Model holding the weights torchseq builds for seed `config.init_from_torch`
    (--init-from-torch): the very start of `torchseq train --seed SEED`. Needs torch."""
    try:
        from torchseq.train import init_model  # PyTorch is optional for a JAX user
    except ImportError:
        raise torch_required("--init-from-torch") from None
    from jaxseq.port.convert import from_torch as model_from_torch

    torch_config = config.replace(seed=config.init_from_torch)  # init_from is None where this is asked
    return model_from_torch(init_model(torch_config, input_size, output_size))


def _accumulated_state_unsupported(config: TrainConfig) -> None:
    if not config.zero_grad:
        raise CheckpointError(
            "a --no-zero-grad run keeps its gradient sum in torch's .grad: it cannot cross frameworks"
        )


def run_weights(path) -> dict[str, np.ndarray]:
    """The weights (a NumPy state_dict under PyTorch's names) in a .safetensors or .pt file, or in a
    run directory of either framework: its weights file, else its checkpoint (jaxseq's
    checkpoint.npz, or torchseq's checkpoint.pt, which needs torch)."""
    from jaxseq.port.weights import read_weights_file

    path = Path(path)
    if not path.is_dir() or any((path / name).is_file() for name in outputs.WEIGHTS_FILES.values()):
        return read_weights_file(path)
    if (path / checkpoint.FILE).is_file():
        from jaxseq.port.convert import to_torch_state_dict

        return to_torch_state_dict(checkpoint.restore_model(checkpoint.load(path)))
    if (path / TORCH_CHECKPOINT).is_file():
        try:
            from torchseq.train import load_checkpoint
        except ImportError:
            raise torch_required(f"{path / TORCH_CHECKPOINT}: reading torchseq's checkpoint") from None
        return {k: v.numpy() for k, v in load_checkpoint(path).model.items()}
    raise ConversionError(f"{path}: no weights.safetensors, model.pt, {checkpoint.FILE} or {TORCH_CHECKPOINT} here")
