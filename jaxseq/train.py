"""Training: a pure step, a compiled loop of steps, and the run around it.

`train_step(state, batch) -> (state, loss)` is pure. `train_chunk` runs `chunk`
of them in one `lax.scan` under one `jax.jit`; `train` calls that compiled chunk
repeatedly, so each run compiles once and the host wakes only between chunks
(to advance the progress bar and collect the losses).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxseq.config import TrainConfig
from jaxseq.model import Model, enable_dtype
from jaxseq.task import task_from_config


class TrainState(NamedTuple):
    params: nnx.State  # the model's parameters
    opt_state: optax.OptState


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite."""


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """optax's equivalent of torch.optim.Adam / SGD with PyTorch's default hyperparameters."""
    if name == "adam":
        return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    if name == "sgd":
        return optax.sgd(lr)
    raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {name!r}")


def sequence_loss(pred_BxTxO, y_BxTxO, reduction: str = "sum"):
    """Per-step MSE (mean over batch and outputs), then summed ("sum") or averaged ("mean") over time.

    "sum" is the original script's loss: `sum_t MSELoss()(pred[:, t], y[:, t])`.
    """
    per_step_T = jnp.mean(jnp.square(pred_BxTxO - y_BxTxO), axis=(0, 2))
    return jnp.sum(per_step_T) if reduction == "sum" else jnp.mean(per_step_T)


def loss_fn(params, graphdef, x_BxTxI, y_BxTxO, reduction: str):
    model = nnx.merge(graphdef, params)
    return sequence_loss(model(x_BxTxI), y_BxTxO, reduction)


def train_step(state: TrainState, batch, *, graphdef, tx, reduction):
    """One optimizer step on `batch = (x_BxTxI, y_BxTxO)`; returns (new state, loss before the step)."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, graphdef, *batch, reduction)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss


@partial(jax.jit, static_argnames=("graphdef", "tx", "reduction", "chunk"), donate_argnames="state")
def train_chunk(state: TrainState, batch, steps_left, *, graphdef, tx, reduction, chunk: int):
    """`chunk` steps in one `lax.scan`; steps at index >= `steps_left` leave the state as is.

    The mask lets the last, shorter chunk reuse the same compiled program.
    Returns (state, losses_chunk), with NaN for the skipped steps.
    """
    step = partial(train_step, graphdef=graphdef, tx=tx, reduction=reduction)
    nan = jnp.full((), jnp.nan, batch[1].dtype)

    def body(state, i):
        return jax.lax.cond(i < steps_left, lambda s: step(s, batch), lambda s: (s, nan), state)

    return jax.lax.scan(body, state, jnp.arange(chunk))


def init_model(config: TrainConfig) -> Model:
    """The run's starting model: jaxseq's own initialisation, or torchseq's for a seed."""
    dtype = enable_dtype(config.dtype)
    if config.init_from_torch is not None:
        try:
            import torchseq  # the PyTorch side is optional for a JAX user
        except ImportError as e:
            raise RuntimeError(f"--init-from-torch needs PyTorch ({e}); install jaxseq[torch]") from None
        from jaxseq.convert import from_torch

        return from_torch(torchseq.build_model(config.hidden, config.init_from_torch, config.dtype))
    return Model(1, config.hidden, 1, init=config.init, param_dtype=dtype, rngs=nnx.Rngs(config.seed))


def select_device(platform: str | None) -> jax.Device:
    """The first device of `platform` (JAX's default backend when None)."""
    try:
        return jax.devices(platform)[0] if platform else jax.devices()[0]
    except RuntimeError as e:
        raise RuntimeError(f"platform {platform!r} is not available to JAX: {str(e).splitlines()[0]}") from None


@dataclass
class TrainResult:
    model: Model  # the trained model
    losses: np.ndarray  # (steps,) the loss at each step, before that step's update
    compile_seconds: float  # lowering and compiling the chunk program
    run_seconds: float  # executing all chunks, after compilation
    platform: str  # the platform JAX ran on: "cpu", "gpu", "tpu"

    @property
    def steps_per_second(self) -> float:
        return len(self.losses) / self.run_seconds


def train(config: TrainConfig, model: Model | None = None, batch=None, *, progress: bool = False) -> TrainResult:
    """Trains `model` (or `init_model(config)`) on `batch` = (x_BxTxI, y_BxTxO), by default the
    config's task; every step sees the whole batch. Raises DivergenceError on a NaN/inf loss.

    >>> result = train(TrainConfig(steps=1000))
    >>> result.losses[-1] < 1e-3
    True
    """
    from tqdm.auto import tqdm

    dtype = enable_dtype(config.dtype)
    device = select_device(config.platform)
    model = init_model(config) if model is None else model
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config.optimizer, config.lr)
    batch = task_from_config(config) if batch is None else batch
    batch = jax.device_put(tuple(jnp.asarray(a, dtype) for a in batch), device)
    state = jax.device_put(TrainState(params, tx.init(params)), device)
    chunk = min(config.chunk, config.steps)
    static = dict(graphdef=graphdef, tx=tx, reduction=config.loss, chunk=chunk)

    start = time.perf_counter()
    compiled = train_chunk.lower(state, batch, config.steps, **static).compile()
    compile_seconds = time.perf_counter() - start

    losses = []
    start = time.perf_counter()
    with tqdm(total=config.steps, disable=not progress, unit="step", leave=False) as bar:
        for done in range(0, config.steps, chunk):
            state, chunk_losses = compiled(state, batch, config.steps - done)
            chunk_losses = np.asarray(chunk_losses)[: config.steps - done]  # waits for the chunk
            _check_finite(chunk_losses, done, losses)
            losses.append(chunk_losses)
            bar.update(len(chunk_losses))
            bar.set_postfix(loss=f"{chunk_losses[-1]:.3e}")
    run_seconds = time.perf_counter() - start

    return TrainResult(
        model=nnx.merge(graphdef, state.params),
        losses=np.concatenate(losses),
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        platform=device.platform,
    )


def _check_finite(chunk_losses: np.ndarray, done: int, earlier: list) -> None:
    bad = np.flatnonzero(~np.isfinite(chunk_losses))
    if bad.size:
        finite = np.concatenate(earlier + [chunk_losses[: bad[0]]])
        last = f"{finite[-1]:.6g}" if finite.size else "none"
        raise DivergenceError(f"loss is {chunk_losses[bad[0]]} at step {done + bad[0] + 1}; last finite loss {last}")
