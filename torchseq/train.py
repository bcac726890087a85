"""The reference training loop: the original script's, with `optimizer.zero_grad()` restored."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from jaxseq.config import TrainConfig
from jaxseq.task import load_batch
from torchseq.model import Model, build_model, from_state_dict


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite."""


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {name!r}")


def sequence_loss(pred_BxTxO: torch.Tensor, y_BxTxO: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Per-step MSE (mean over batch and outputs), summed or averaged over time; vectorised."""
    per_step_T = torch.square(pred_BxTxO - y_BxTxO).mean(dim=(0, 2))
    return per_step_T.sum() if reduction == "sum" else per_step_T.mean()


def init_model(config: TrainConfig, input_size: int = 1, output_size: int = 1) -> Model:
    """The run's starting model: the weights in --init-from, or the original script's initialisation."""
    if config.init_from is None:
        return build_model(config.hidden, config.seed, config.dtype, input_size, output_size)
    from jaxseq.convert import check_weights_fit, read_weights_file

    state_dict = read_weights_file(config.init_from)
    check_weights_fit(
        state_dict,
        dtype=config.dtype,
        hidden=config.hidden,
        input_size=input_size,
        output_size=output_size,
        source=config.init_from,
    )
    return from_state_dict(state_dict)


@dataclass
class TorchResult:
    model: Model  # the trained model
    losses: np.ndarray  # (steps,) the loss at each step, before that step's update
    run_seconds: float  # the training loop's wall time

    @property
    def steps_per_second(self) -> float:
        return len(self.losses) / self.run_seconds


def train(
    config: TrainConfig,
    model: Model | None = None,
    batch=None,
    *,
    progress: bool = False,
) -> TorchResult:
    """Trains `model` (or `init_model(config, ...)`) on `batch` = (x_BxTxI, y_BxTxO) as NumPy
    arrays or tensors, by default `load_batch(config)`: the --data file or the task.

    config.zero_grad=False reproduces the original bug: gradients accumulate across steps.
    Raises DivergenceError when the loss becomes NaN or infinite.
    """
    from tqdm.auto import tqdm

    batch = load_batch(config) if batch is None else batch
    dtype = getattr(torch, config.dtype)
    x_BxTxI, y_BxTxO = (torch.as_tensor(a).to(dtype) for a in batch)
    model = init_model(config, x_BxTxI.shape[-1], y_BxTxO.shape[-1]) if model is None else model
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr)
    losses = np.empty(config.steps)
    start = time.perf_counter()
    with tqdm(total=config.steps, disable=not progress, unit="step", leave=False) as bar:
        for step in range(config.steps):
            if config.zero_grad:
                optimizer.zero_grad()
            loss = sequence_loss(model(x_BxTxI), y_BxTxO, config.loss)
            loss.backward()
            optimizer.step()
            losses[step] = loss.item()
            if not np.isfinite(losses[step]):
                last = f"{losses[step - 1]:.6g}" if step else "none"
                raise DivergenceError(f"loss is {losses[step]} at step {step + 1}; last finite loss {last}")
            if (step + 1) % config.chunk == 0 or step + 1 == config.steps:
                bar.update((step % config.chunk) + 1)
                bar.set_postfix(loss=f"{losses[step]:.3e}")
    return TorchResult(model=model, losses=losses, run_seconds=time.perf_counter() - start)
