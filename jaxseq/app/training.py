"""Training: a pure step, a compiled loop of steps, and the run around it.

`train_step(state, batch) -> (state, loss)` is pure. `train_chunk` runs `chunk`
of them in one `lax.scan` under one `jax.jit`; `train` calls that compiled chunk
repeatedly, so each run compiles once and the host wakes only between chunks
(to advance the progress bar, collect the losses, write checkpoints, and stop
early when asked to).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxseq import optim
from jaxseq.app import devices
from jaxseq.app.checkpoint import Checkpoint, check_leaves
from jaxseq.app.config import TrainConfig
from jaxseq.app.data import Sequences, check_lengths
from jaxseq.app.task import check_batch_size, data_key, load_sequences, minibatch_indices
from jaxseq.errors import DivergenceError
from jaxseq.nn.model import Architecture, Model, enable_dtype


class TrainState(NamedTuple):
    params: nnx.State  # the model's parameters
    opt_state: optax.OptState


def sequence_loss(pred_BxTxO, y_BxTxO, reduction: str = "sum", lengths_B=None):
    """Per-step MSE (mean over batch and outputs), then summed ("sum") or averaged ("mean") over time.

    "sum" is the original script's loss: `sum_t MSELoss()(pred[:, t], y[:, t])`. With `lengths_B`,
    sequence b counts at steps t < lengths_B[b] only: each step's MSE is the mean over the
    sequences still running at t (0 where none is), and "mean" is always the sum divided by T.
    """
    square_BxTxO = jnp.square(pred_BxTxO - y_BxTxO)
    if lengths_B is None:
        per_step_T = jnp.mean(square_BxTxO, axis=(0, 2))
        return jnp.sum(per_step_T) if reduction == "sum" else jnp.mean(per_step_T)
    _, T, O = square_BxTxO.shape
    valid_BxT = jnp.arange(T) < lengths_B[:, None]
    count_T = jnp.sum(valid_BxT, axis=0)
    total_T = jnp.sum(jnp.where(valid_BxT[..., None], square_BxTxO, 0), axis=(0, 2))
    per_step_T = total_T / (O * jnp.maximum(count_T, 1))
    return jnp.sum(per_step_T) if reduction == "sum" else jnp.sum(per_step_T) / T


def loss_fn(params, graphdef, batch: Sequences, reduction: str):
    model = nnx.merge(graphdef, params)
    return sequence_loss(model(batch.x, lengths=batch.lengths), batch.y, reduction, batch.lengths)


def train_step(state: TrainState, batch: Sequences, *, graphdef, tx, reduction):
    """One optimizer step on `batch` (x_BxTxI, y_BxTxO, lengths_B or None); returns (new state, loss before it)."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, graphdef, batch, reduction)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss


def run_chunk(
    state: TrainState,
    data: Sequences,
    key,
    done,
    steps,
    *,
    graphdef,
    tx,
    reduction,
    chunk: int,
    batch_size: int | None = None,
    batch_sharding=None,
):
    """Steps done .. done + chunk - 1 of a run of `steps`, in one `lax.scan`; steps >= `steps`
    leave the state as is (so the last, shorter chunk reuses the same compiled program).

    Each step trains on all of `data`, or with `batch_size` on a minibatch of it gathered on the
    device (`jaxseq.app.task.minibatch_indices` with `key`), laid out by `batch_sharding` (data parallelism) if
    given. Returns (state, losses_chunk), with NaN for the skipped steps.
    """
    step = partial(train_step, graphdef=graphdef, tx=tx, reduction=reduction)
    nan = jnp.full((), jnp.nan, data.y.dtype)

    def batch_at(k):
        if batch_size is None:
            return data
        indices = minibatch_indices(key, k, sequences=data.x.shape[0], batch_size=batch_size)
        batch = jax.tree.map(lambda a: a[indices], data)
        return batch if batch_sharding is None else jax.lax.with_sharding_constraint(batch, batch_sharding)

    def body(state, i):
        k = done + i
        return jax.lax.cond(k < steps, lambda s: step(s, batch_at(k)), lambda s: (s, nan), state)

    return jax.lax.scan(body, state, jnp.arange(chunk))


STATIC = ("graphdef", "tx", "reduction", "chunk", "batch_size", "batch_sharding")
train_chunk = jax.jit(run_chunk, static_argnames=STATIC, donate_argnames="state")
train_chunk.__doc__ = "`run_chunk`, compiled; the state's buffers are donated."


def compile_timed(jitted, *args, **static):
    """(`jitted` lowered and compiled for `args` and `static`, the seconds that took)."""
    start = time.perf_counter()
    compiled = jitted.lower(*args, **static).compile()
    return compiled, time.perf_counter() - start


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
        from jaxseq.port.convert import from_torch
        from jaxseq.port.weights import check_weights_fit, read_weights_file

        state_dict = read_weights_file(config.init_from)
        check_weights_fit(state_dict, config, input_size=input_size, output_size=output_size, source=config.init_from)
        return from_torch(state_dict)
    if config.init_from_torch is not None:
        from jaxseq.app.crossing import torch_start

        return torch_start(config, input_size, output_size)
    return Architecture.of_run(config, input_size, output_size).build(dtype=dtype, seed=config.seed, init=config.init)


@dataclass
class TrainResult:
    model: Model  # the trained model (on this process's default device)
    losses: np.ndarray  # (steps done,) the loss at each step, before that step's update; fewer than
    # config.steps where `stop` ended the run early
    compile_seconds: float  # lowering and compiling the chunk program
    run_seconds: float  # executing all chunks, after compilation
    platform: str  # the platform JAX ran on: "cpu", "gpu", "tpu"
    first_step: int = 0  # steps already done before this call (a resumed run)
    devices: int = 1  # devices each step's batch was split over (data parallelism)

    @property
    def steps_per_second(self) -> float:
        return (len(self.losses) - self.first_step) / self.run_seconds


def as_sequences(batch, dtype) -> Sequences:
    """`batch` ((x, y) or (x, y, lengths), NumPy or JAX) as Sequences of NumPy arrays in `dtype`."""
    data = Sequences(*batch)
    lengths = None if data.lengths is None else check_lengths(data.lengths, np.shape(data.x))
    return Sequences(np.asarray(data.x, dtype), np.asarray(data.y, dtype), lengths)


def train(
    config: TrainConfig,
    model: Model | None = None,
    batch=None,
    *,
    progress: bool = False,
    resume: Checkpoint | None = None,
    on_checkpoint=None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Trains `model` (or `init_model(config, ...)`) on `batch`: (x_NxTxI, y_NxTxO) or
    (x, y, lengths_N), by default `load_sequences(config)` (the --data file or the --task).
    Every step sees all N sequences, or a minibatch of `config.batch_size` drawn on the device.

    The data and the state are placed once. Each step's batch is split over all devices of the
    platform (data parallelism; XLA all-reduces the gradients) when its size divides evenly,
    else the run uses one device.

    resume: a `jaxseq.app.checkpoint.Checkpoint` of this run to continue from, up to config.steps
      (which may be more than the run's recorded steps: the same trajectory, extended).
    on_checkpoint: called as `on_checkpoint(losses_so_far, state_leaves)` at the end, every
      `config.checkpoint_every` steps (chunks are sized to end there), and where `stop` ends the run.
    stop: called on the host after each chunk; True ends the run there, after `config.steps` or
      fewer steps (in a multi-host run the run stops where any process says so; every process must
      pass one).
    Raises DivergenceError (with the finite history) on a NaN/inf loss.

    >>> result = train(TrainConfig(steps=1000))
    >>> result.losses[-1] < 1e-3
    True
    """
    data, tx = prepare(config, batch)
    if model is None:
        # A resumed run's weights come from the checkpoint: --init-from's file is not read again.
        start = config if resume is None else config.replace(init_from=None, init_from_torch=None)
        model = init_model(start, data.x.shape[-1], data.y.shape[-1])
    graphdef, params = nnx.split(model)
    state = TrainState(params, tx.init(params))
    losses, first = [], 0
    if resume is not None:
        leaves, treedef = jax.tree.flatten(state)
        check_leaves(resume.leaves, leaves, "checkpoint")
        state = jax.tree.unflatten(treedef, list(resume.leaves))
        losses, first = [np.asarray(resume.losses)], resume.step
        if first == config.steps and on_checkpoint is not None:  # nothing to run: the checkpoint as it was
            on_checkpoint(np.asarray(resume.losses), list(resume.leaves))

    state, data, key, used, batch_sharding = place(config, state, data)
    # Chunks end at every checkpoint; the last one may run past config.steps (`run_chunk` skips those steps).
    chunk = min(config.chunk, config.steps)
    if config.checkpoint_every:
        chunk = math.gcd(chunk, config.checkpoint_every)
    static = static_args(config, graphdef, tx, chunk) | dict(batch_sharding=batch_sharding)

    def on_chunk(done, chunk_losses, state):
        chunk_losses = devices.fetch(chunk_losses)[: config.steps - done]  # waits for the chunk
        _check_finite(chunk_losses, done, losses)
        losses.append(chunk_losses)
        steps_done = done + len(chunk_losses)
        stopping = stop is not None and steps_done < config.steps and devices.any_process(stop())
        if on_checkpoint is not None and (stopping or config.checkpoint_due(steps_done)):
            on_checkpoint(np.concatenate(losses), devices.fetch(jax.tree.leaves(state)))
        return chunk_losses[-1], stopping

    state, compile_seconds, run_seconds = run_loop(
        train_chunk, state, data, key, config=config, first=first, static=static, progress=progress, on_chunk=on_chunk
    )
    return TrainResult(
        model=nnx.merge(graphdef, jax.tree.map(jnp.asarray, devices.fetch(state.params))),
        losses=np.concatenate(losses),
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        platform=used[0].platform,
        first_step=first,
        devices=len(used),
    )


def place(config: TrainConfig, state, data):
    """(state, data, key, devices used, batch_sharding) laid out for data parallelism: the state
    replicated on every device, and the data split over them (all of it each step) or replicated
    (minibatches drawn on the device, then laid out by batch_sharding; None on one device)."""
    per_step = config.batch_size or len(data.x)
    used = devices.usable_devices(devices.platform_devices(config.platform), per_step, "sequences per step")
    replicated, split = devices.shardings(devices.mesh(used, "data"))
    state = devices.put(state, replicated)
    data = devices.put(data, split if config.batch_size is None else replicated)
    key = devices.put(data_key(config.data_seed), replicated)
    batch_sharding = split if config.batch_size is not None and len(used) > 1 else None
    return state, data, key, used, batch_sharding


def prepare(config: TrainConfig, batch=None):
    """(data, tx): the run's data as `Sequences` in config.dtype (x64 switched on for float64),
    `batch` or else `load_sequences(config)`, and its optimizer."""
    dtype = enable_dtype(config.dtype)
    if batch is None:
        data = as_sequences(load_sequences(config), dtype)  # checks --batch-size against the data
    else:
        data = as_sequences(batch, dtype)
        check_batch_size(config.batch_size, len(data.x))
    return data, optim.from_config(config)


def static_args(config: TrainConfig, graphdef, tx, chunk: int) -> dict:
    """`run_chunk`'s static arguments for this run (batch_sharding: None, set it where it applies)."""
    return dict(
        graphdef=graphdef, tx=tx, reduction=config.loss, chunk=chunk, batch_size=config.batch_size, batch_sharding=None
    )


def run_loop(jitted, state, data, key, *, config: TrainConfig, first: int, static: dict, progress: bool, on_chunk):
    """The host loop of `train` and `sweep`: compiles `jitted` once for these arguments, then runs it
    chunk by chunk over steps first .. config.steps - 1, with a progress bar (process 0 only).

    `on_chunk(done, chunk_losses, state)` runs on the host after each chunk (fetch, NaN check,
    checkpoints) and returns (the loss to show, whether to stop here). Returns (state,
    compile_seconds, run_seconds).
    """
    from tqdm.auto import tqdm

    compiled, compile_seconds = compile_timed(jitted, state, data, key, first, config.steps, **static)
    chunk = static["chunk"]
    start = time.perf_counter()
    show = progress and devices.is_main_process()
    with tqdm(total=config.steps, initial=first, disable=not show, unit="step", leave=False) as bar:
        for done in range(first, config.steps, chunk):
            state, chunk_losses = compiled(state, data, key, done, config.steps)
            shown, stopping = on_chunk(done, chunk_losses, state)
            bar.set_postfix(loss=f"{shown:.3e}", refresh=False)  # shown by the update
            bar.update(min(chunk, config.steps - done))
            if stopping:
                break
    return state, compile_seconds, time.perf_counter() - start


def _check_finite(chunk_losses: np.ndarray, done: int, earlier: list) -> None:
    bad = np.flatnonzero(~np.isfinite(chunk_losses))
    if bad.size:
        finite = np.concatenate(earlier + [chunk_losses[: bad[0]]])
        last = f"{finite[-1]:.6g}" if finite.size else "none"
        message = f"loss is {chunk_losses[bad[0]]} at step {done + bad[0] + 1}; last finite loss {last}"
        raise DivergenceError(message, finite)
