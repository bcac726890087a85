"""Training: a pure step, a compiled loop of steps, and the run around it.

`train_step(state, batch) -> (state, loss)` is pure. `train_chunk` runs `chunk`
of them in one `lax.scan` under one `jax.jit`; `train` calls that compiled chunk
repeatedly, so each run compiles once and the host wakes only between chunks
(to advance the progress bar and collect the losses).
"""

from __future__ import annotations

import math
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
from jaxseq.task import load_batch


class TrainState(NamedTuple):
    params: nnx.State  # the model's parameters
    opt_state: optax.OptState


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite; `.losses` holds the finite history before it."""

    def __init__(self, message: str, losses: np.ndarray):
        super().__init__(message)
        self.losses = losses


class AccumulateState(NamedTuple):
    total: optax.Updates  # the sum of every gradient seen so far


def accumulate_gradients() -> optax.GradientTransformation:
    """Replaces each gradient by the running sum of all gradients so far.

    This is what PyTorch computes when `optimizer.zero_grad()` is never called: `.grad`
    keeps every earlier backward pass's contribution. Chained before an optimizer, it
    reproduces the seed question's bug.
    """

    def init(params):
        return AccumulateState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        total = jax.tree.map(jnp.add, state.total, updates)
        return total, AccumulateState(total)

    return optax.GradientTransformation(init, update)


def make_optimizer(name: str, lr: float, zero_grad: bool = True) -> optax.GradientTransformation:
    """optax's equivalent of torch.optim.Adam / SGD with PyTorch's defaults (betas 0.9/0.999, eps 1e-8).

    The learning rate is kept in the optimizer state (see `with_learning_rate`).
    zero_grad=False first sums the gradients over all steps, as PyTorch does without `zero_grad()`.
    """
    if name == "adam":
        tx = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root"))(
            lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0
        )
    elif name == "sgd":
        tx = optax.inject_hyperparams(optax.sgd)(lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {name!r}")
    return tx if zero_grad else optax.chain(accumulate_gradients(), tx)


def with_learning_rate(opt_state, lr):
    """`opt_state` (from `make_optimizer(...).init`) with its learning rate set to `lr`.

    The rate lives in the state (optax.inject_hyperparams), so one compiled program serves
    every rate, and `jaxseq sweep` can vmap over it.
    """

    def is_injected(node):
        return isinstance(node, tuple) and hasattr(node, "hyperparams")

    def replace(node):
        if not is_injected(node):
            return node
        rate = jnp.asarray(lr, node.hyperparams["learning_rate"].dtype)
        return node._replace(hyperparams={**node.hyperparams, "learning_rate": rate})

    return jax.tree.map(replace, opt_state, is_leaf=is_injected)


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


def run_chunk(state: TrainState, batch, steps_left, *, graphdef, tx, reduction, chunk: int):
    """`chunk` steps in one `lax.scan`; steps at index >= `steps_left` leave the state as is.

    The mask lets the last, shorter chunk reuse the same compiled program.
    Returns (state, losses_chunk), with NaN for the skipped steps.
    """
    step = partial(train_step, graphdef=graphdef, tx=tx, reduction=reduction)
    nan = jnp.full((), jnp.nan, batch[1].dtype)

    def body(state, i):
        return jax.lax.cond(i < steps_left, lambda s: step(s, batch), lambda s: (s, nan), state)

    return jax.lax.scan(body, state, jnp.arange(chunk))


STATIC = ("graphdef", "tx", "reduction", "chunk")
train_chunk = jax.jit(run_chunk, static_argnames=STATIC, donate_argnames="state")
train_chunk.__doc__ = "`run_chunk`, compiled; the state's buffers are donated."


def enable_compilation_cache(directory=None) -> str:
    """Keeps compiled programs on disk, so a repeated run skips XLA compilation.

    Uses `directory`, else $JAX_COMPILATION_CACHE_DIR, else ~/.cache/jaxseq/xla, and caches
    every program (also the small ones of eager initialisation). Call it before anything is
    compiled, i.e. before building the model. Returns the directory.
    """
    import os
    from pathlib import Path

    directory = directory or os.environ.get("JAX_COMPILATION_CACHE_DIR") or Path.home() / ".cache" / "jaxseq" / "xla"
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(directory)


def init_model(config: TrainConfig, input_size: int = 1, output_size: int = 1) -> Model:
    """The run's starting model: the weights in --init-from, torchseq's for --init-from-torch,
    or jaxseq's own initialisation (`config.init`, `config.seed`)."""
    dtype = enable_dtype(config.dtype)
    if config.init_from is not None:
        from jaxseq.convert import check_weights_fit, from_torch, read_weights_file

        state_dict = read_weights_file(config.init_from)
        check_weights_fit(state_dict, config, input_size=input_size, output_size=output_size, source=config.init_from)
        return from_torch(state_dict)
    if config.init_from_torch is not None:
        try:
            import torchseq  # the PyTorch side is optional for a JAX user
        except ImportError as e:
            raise ImportError(f"--init-from-torch needs PyTorch ({e}); install jaxseq[torch]") from None
        from jaxseq.convert import from_torch

        layers = dict(cell=config.cell, layers=config.layers, bidirectional=config.bidirectional)
        seed = config.init_from_torch
        return from_torch(torchseq.build_model(config.hidden, seed, config.dtype, input_size, output_size, **layers))
    return Model(
        input_size,
        config.hidden,
        output_size,
        cell=config.cell,
        num_layers=config.layers,
        bidirectional=config.bidirectional,
        init=config.init,
        param_dtype=dtype,
        rngs=nnx.Rngs(config.seed),
    )


def select_device(platform: str | None) -> jax.Device:
    """The first device of `platform` (JAX's default backend when None)."""
    try:
        return jax.devices(platform)[0] if platform else jax.devices()[0]
    except RuntimeError as e:
        raise ValueError(f"platform {platform!r} is not available to JAX: {str(e).splitlines()[0]}") from None


@dataclass
class TrainResult:
    model: Model  # the trained model
    losses: np.ndarray  # (steps,) the loss at each step, before that step's update
    compile_seconds: float  # lowering and compiling the chunk program
    run_seconds: float  # executing all chunks, after compilation
    platform: str  # the platform JAX ran on: "cpu", "gpu", "tpu"
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
    resume=None,
    on_checkpoint=None,
) -> TrainResult:
    """Trains `model` (or `init_model(config, ...)`) on `batch` = (x_BxTxI, y_BxTxO), by default
    `load_batch(config)`: the --data file or the task. Every step sees the whole batch.

    resume: a `jaxseq.checkpoint.Checkpoint` of this config to continue from.
    on_checkpoint: called as `on_checkpoint(losses_so_far, state_leaves)` every
      `config.checkpoint_every` steps and at the end (chunks are sized to end there).
    Raises DivergenceError (with the finite history) on a NaN/inf loss.

    >>> result = train(TrainConfig(steps=1000))
    >>> result.losses[-1] < 1e-3
    True
    """
    from tqdm.auto import tqdm

    dtype = enable_dtype(config.dtype)
    device = select_device(config.platform)
    batch = load_batch(config) if batch is None else batch
    batch = jax.device_put(tuple(jnp.asarray(a, dtype) for a in batch), device)
    model = init_model(config, batch[0].shape[-1], batch[1].shape[-1]) if model is None else model
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config.optimizer, config.lr, config.zero_grad)
    state = TrainState(params, tx.init(params))
    losses, first = [], 0
    if resume is not None:
        from jaxseq.checkpoint import check_leaves

        leaves, treedef = jax.tree.flatten(state)
        check_leaves(resume.leaves, leaves, "checkpoint")
        state = jax.tree.unflatten(treedef, [jnp.asarray(leaf) for leaf in resume.leaves])
        losses, first = [np.asarray(resume.losses)], resume.step
    state = jax.device_put(state, device)
    chunk = math.gcd(min(config.chunk, config.steps), config.checkpoint_every or config.steps)
    static = dict(graphdef=graphdef, tx=tx, reduction=config.loss, chunk=chunk)

    start = time.perf_counter()
    compiled = train_chunk.lower(state, batch, config.steps, **static).compile()
    compile_seconds = time.perf_counter() - start

    every = config.checkpoint_every
    start = time.perf_counter()
    with tqdm(total=config.steps, initial=first, disable=not progress, unit="step", leave=False) as bar:
        for done in range(first, config.steps, chunk):
            state, chunk_losses = compiled(state, batch, config.steps - done)
            chunk_losses = np.asarray(chunk_losses)[: config.steps - done]  # waits for the chunk
            _check_finite(chunk_losses, done, losses)
            losses.append(chunk_losses)
            bar.update(len(chunk_losses))
            bar.set_postfix(loss=f"{chunk_losses[-1]:.3e}")
            steps_done = done + len(chunk_losses)
            if on_checkpoint is not None and every and (steps_done % every == 0 or steps_done == config.steps):
                on_checkpoint(np.concatenate(losses), [np.asarray(leaf) for leaf in jax.tree.leaves(state)])
    run_seconds = time.perf_counter() - start

    return TrainResult(
        model=nnx.merge(graphdef, state.params),
        losses=np.concatenate(losses),
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        platform=device.platform,
        first_step=first,
    )


def _check_finite(chunk_losses: np.ndarray, done: int, earlier: list) -> None:
    bad = np.flatnonzero(~np.isfinite(chunk_losses))
    if bad.size:
        finite = np.concatenate(earlier + [chunk_losses[: bad[0]]])
        last = f"{finite[-1]:.6g}" if finite.size else "none"
        message = f"loss is {chunk_losses[bad[0]]} at step {done + bad[0] + 1}; last finite loss {last}"
        raise DivergenceError(message, finite)
