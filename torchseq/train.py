"""The reference training loop: the original script's, with `optimizer.zero_grad()` restored."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from jaxseq.app.config import TrainConfig
from jaxseq.app.data import Sequences
from jaxseq.app.task import check_batch_size, load_sequences, minibatches
from jaxseq.errors import CheckpointError, DivergenceError
from jaxseq.nn.model import Architecture
from jaxseq.optim import torch_from_config
from torchseq.model import Model, build, from_state_dict

CHECKPOINT = "checkpoint.pt"
DRAWS = 1000  # minibatch draws fetched from JAX at a time


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """torch.optim's `name` ("adam", "sgd", ...; see jaxseq.app.config.OPTIMIZERS) on `params`, its defaults."""
    from jaxseq.optim import torch_optimizer

    return torch_optimizer(name, params, lr)


def sequence_loss(
    pred_BxTxO: torch.Tensor, y_BxTxO: torch.Tensor, reduction: str = "sum", lengths_B: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-step MSE (mean over batch and outputs), summed or averaged over time; vectorised.
    With `lengths_B`, only the steps t < lengths_B[b] of sequence b count (see jaxseq.app.training)."""
    square_BxTxO = torch.square(pred_BxTxO - y_BxTxO)
    if lengths_B is None:
        per_step_T = square_BxTxO.mean(dim=(0, 2))
        return per_step_T.sum() if reduction == "sum" else per_step_T.mean()
    _, T, O = square_BxTxO.shape
    valid_BxT = torch.arange(T) < lengths_B[:, None]
    count_T = valid_BxT.sum(dim=0)
    total_T = torch.where(valid_BxT[..., None], square_BxTxO, 0).sum(dim=(0, 2))
    per_step_T = total_T / (O * count_T.clamp(min=1))
    return per_step_T.sum() if reduction == "sum" else per_step_T.sum() / T


def init_model(config: TrainConfig, input_size: int = 1, output_size: int = 1) -> Model:
    """The run's starting model: the weights in --init-from, or the original script's initialisation."""
    if config.init_from is None:
        return build(Architecture.of_run(config, input_size, output_size), seed=config.seed, dtype=config.dtype)
    from jaxseq.port.weights import check_weights_fit, read_weights_file

    state_dict = read_weights_file(config.init_from)
    check_weights_fit(state_dict, config, input_size=input_size, output_size=output_size, source=config.init_from)
    return from_state_dict(state_dict)


@dataclass
class TorchResult:
    model: Model  # the trained model
    losses: np.ndarray  # (steps done,) the loss at each step, before that step's update; fewer than
    # config.steps where `stop` ended the run early
    run_seconds: float  # the training loop's wall time
    first_step: int = 0  # steps already done before this call (a resumed run)

    @property
    def steps_per_second(self) -> float:
        return (len(self.losses) - self.first_step) / self.run_seconds


def train(
    config: TrainConfig,
    model: Model | None = None,
    batch=None,
    *,
    progress: bool = False,
    resume: TorchCheckpoint | None = None,
    on_checkpoint=None,
    stop: Callable[[], bool] | None = None,
) -> TorchResult:
    """Trains `model` (or `init_model(config, ...)`) on `batch` = (x_NxTxI, y_NxTxO) or
    (x, y, lengths_N) as NumPy arrays or tensors, by default `load_sequences(config)`: the --data
    file or the --task. Every step sees all N sequences, or a minibatch of `config.batch_size`:
    the very sequences jaxseq draws at that step (`jaxseq.app.task.minibatches`: JAX computes the
    draws, before the timer starts), which makes the two runs comparable step by step.

    config.zero_grad=False reproduces the original bug: gradients accumulate across steps.
    resume: a checkpoint (`load_checkpoint`) of this run to continue from, up to config.steps
      (which may be more than the run's recorded steps: the same trajectory, extended).
    on_checkpoint: called as `on_checkpoint(losses_so_far, model, optimizer, scheduler or None)` at
      the end, every `config.checkpoint_every` steps, and where `stop` ends the run.
    stop: called after each step; True ends the run there.
    Raises DivergenceError (with the finite history) when the loss becomes NaN or infinite.
    """
    from tqdm.auto import tqdm

    data = Sequences(*(load_sequences(config) if batch is None else batch))
    dtype = getattr(torch, config.dtype)
    x_NxTxI, y_NxTxO = (torch.as_tensor(np.asarray(a)).to(dtype) for a in data[:2])
    lengths_N = None if data.lengths is None else torch.as_tensor(np.asarray(data.lengths, np.int64))
    if batch is not None:  # load_sequences checks its own
        check_batch_size(config.batch_size, len(x_NxTxI))
    if model is None:
        # A resumed run's weights come from the checkpoint: --init-from's file is not read again.
        start = config if resume is None else config.replace(init_from=None)
        model = init_model(start, x_NxTxI.shape[-1], y_NxTxO.shape[-1])
    optimizer, scheduler = torch_from_config(config, model.parameters())
    losses = np.empty(config.steps)
    first = 0 if resume is None else _resume(resume, config, model, optimizer, scheduler, losses, x_NxTxI, y_NxTxO)
    if first == config.steps and on_checkpoint is not None:  # nothing to run: the checkpoint as it was
        on_checkpoint(losses, model, optimizer, scheduler)
    done = config.steps
    batches = step_batches(config, (x_NxTxI, y_NxTxO, lengths_N), first)  # draws before the timer
    start = time.perf_counter()
    with tqdm(total=config.steps, initial=first, disable=not progress, unit="step", leave=False) as bar:
        for step, (x_BxTxI, y_BxTxO, lengths_B) in zip(range(first, config.steps), batches, strict=False):
            if config.zero_grad:
                optimizer.zero_grad()
            loss = sequence_loss(model(x_BxTxI, lengths_B), y_BxTxO, config.loss, lengths_B)
            loss.backward()
            if config.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm, foreach=False)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses[step] = loss.item()
            if not np.isfinite(losses[step]):
                last = f"{losses[step - 1]:.6g}" if step else "none"
                message = f"loss is {losses[step]} at step {step + 1}; last finite loss {last}"
                raise DivergenceError(message, losses[:step].copy())
            if (step + 1) % config.chunk == 0 or step + 1 == config.steps:
                bar.update((step % config.chunk) + 1)
                bar.set_postfix(loss=f"{losses[step]:.3e}")
            stopping = stop is not None and step + 1 < config.steps and stop()
            if on_checkpoint is not None and (stopping or config.checkpoint_due(step + 1)):
                on_checkpoint(losses[: step + 1], model, optimizer, scheduler)
            if stopping:
                done = step + 1
                break
    run_seconds = time.perf_counter() - start
    return TorchResult(model=model, losses=losses[:done], run_seconds=run_seconds, first_step=first)


def _resume(resume, config, model, optimizer, scheduler, losses, x_NxTxI, y_NxTxO) -> int:
    """Loads a checkpoint into the model, optimizer, scheduler and history; returns the steps it holds."""
    from jaxseq.port.weights import check_weights_fit

    sizes = dict(input_size=x_NxTxI.shape[-1], output_size=y_NxTxO.shape[-1])
    check_weights_fit(resume.model, config, source="the checkpoint", **sizes)
    model.load_state_dict(resume.model)
    optimizer.load_state_dict(resume.optimizer)
    if scheduler is not None:
        scheduler.load_state_dict(resume.scheduler)
    losses[: len(resume.losses)] = resume.losses
    return len(resume.losses)


def step_batches(config: TrainConfig, data, first: int):
    """(x_BxTxI, y_BxTxO, lengths_B) for each step from `first`: all of `data` (tensors x, y, lengths),
    or the minibatch jaxseq draws at that step (`jaxseq.app.task.minibatches`, fetched DRAWS steps at a
    time; the first block is drawn, and JAX's program compiled, on creation)."""
    if config.batch_size is None:
        return itertools.repeat(data)
    x_NxTxI, y_NxTxO, lengths_N = data
    draws = partial(minibatches, config.data_seed, len(x_NxTxI), config.batch_size, block=DRAWS)
    drawn = draws(first)

    def gather():
        nonlocal drawn
        for step in itertools.count(first):
            if (step - first) % DRAWS == 0 and step > first:
                drawn = draws(step)
            indices_B = torch.from_numpy(drawn[(step - first) % DRAWS])
            yield x_NxTxI[indices_B], y_NxTxO[indices_B], None if lengths_N is None else lengths_N[indices_B]

    return gather()


def save_checkpoint(run_dir, losses, model, optimizer, scheduler=None, *, config: TrainConfig) -> None:
    """checkpoint.pt: config, history, model, optimizer and scheduler state, written aside and renamed."""
    import dataclasses
    import json
    from pathlib import Path

    from jaxseq.files import atomic_write

    payload = {
        "config": json.dumps(dataclasses.asdict(config)),
        "losses": torch.from_numpy(np.array(losses)),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {} if scheduler is None else scheduler.state_dict(),
    }
    atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: torch.save(payload, tmp))


@dataclass
class TorchCheckpoint:
    config: TrainConfig  # the run's options, as first given
    losses: np.ndarray  # (step,) the history so far
    model: dict  # the model's state_dict after `step` steps
    optimizer: dict  # the optimizer's state_dict
    scheduler: dict = dataclasses.field(default_factory=dict)  # the scheduler's state_dict ({}: none)


def load_checkpoint(run_dir) -> TorchCheckpoint:
    """The checkpoint in `run_dir` (or the file itself); raises CheckpointError naming the problem."""
    import json
    import pickle
    import zipfile
    from pathlib import Path

    path = Path(run_dir)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (a torchseq run writes {CHECKPOINT} at its end)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        payload["config"] = TrainConfig(**json.loads(payload["config"]))
        payload["losses"] = payload["losses"].numpy()
    except (
        OSError,
        RuntimeError,
        KeyError,
        TypeError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
    ) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    from jaxseq.port.convert import check_state_dict

    config = payload["config"]
    try:
        arch = check_state_dict(payload["model"])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if arch.hidden_size != config.hidden:
        raise CheckpointError(f"{path}: weights of hidden size {arch.hidden_size} in a run of --hidden {config.hidden}")
    if (arch.cell, arch.num_layers, arch.bidirectional) != (config.cell, config.layers, config.bidirectional):
        raise CheckpointError(f"{path}: the weights are not the recorded run's --cell, --layers, --bidirectional")
    return TorchCheckpoint(**payload)
