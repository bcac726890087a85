"""Many independent models in one compiled program: `jax.vmap` over seeds and learning rates.

Every model of the grid (seed x learning rate) runs the very step `jaxseq train` runs, vmapped:
`run_chunk` under `jax.vmap` under one `jax.jit`. The learning rate lives in the optimizer
state (`with_learning_rate`), so it is vmapped like the parameters. With several devices the
model axis is sharded across them (`jax.sharding.NamedSharding`); JAX places the work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import jax
import numpy as np
from flax import nnx

from jaxseq import devices
from jaxseq.config import TrainConfig
from jaxseq.model import enable_dtype
from jaxseq.task import data_key, load_sequences
from jaxseq.training import (
    STATIC,
    TrainState,
    as_sequences,
    compile_timed,
    init_model,
    make_optimizer,
    run_chunk,
    with_learning_rate,
)


@dataclass
class SweepResult:
    seeds: list[int]  # (S,)
    lrs: list[float]  # (L,)
    losses: np.ndarray  # (S, L, steps) the loss of every model at every step
    compile_seconds: float
    run_seconds: float
    devices: int  # devices the model axis was sharded over

    @property
    def model_steps_per_second(self) -> float:
        return self.losses.size / self.run_seconds


# Models per vmapped group (per device). Each step reads every model's weights 2T times (forward and backward
# through time); a group of 8 seed-size models (8 x 320 KB of W_hh in float64) stays in cache,
# 64 at once do not, and ran 1.6x slower per model (benchmarks/sweep.py).
GROUP = 8


@partial(jax.jit, static_argnames=STATIC, donate_argnames="state")
def sweep_chunk(state: TrainState, data, key, done, steps, **static):
    """`run_chunk` for n x G x g models: every leaf of `state` has leading axes (n devices,
    G groups, g models). Devices work in parallel (the sharded axis), the groups of each device
    one after another (`lax.map`), the models of a group together (`jax.vmap`). Every model
    sees the same data and the same minibatches.
    """
    group = jax.vmap(partial(run_chunk, **static), in_axes=(0, None, None, None, None))

    def device(state_Gxg):
        return jax.lax.map(lambda s: group(s, data, key, done, steps), state_Gxg)

    return jax.vmap(device)(state)


def sweep(
    config: TrainConfig, seeds: list[int], lrs: list[float], batch=None, *, progress: bool = False
) -> SweepResult:
    """Trains one model per (seed, lr) on the config's batch; model (s, l) is `train(config with
    seed s and lr l)`. Losses that become NaN or infinite stay in the result (no early stop)."""
    from tqdm.auto import tqdm

    dtype = enable_dtype(config.dtype)
    data = as_sequences(load_sequences(config) if batch is None else batch, dtype)
    tx = make_optimizer(config.optimizer, config.lr, config.zero_grad)
    states, graphdef = [], None
    for seed in seeds:
        graphdef, params = nnx.split(init_model(config.replace(seed=seed), data.x.shape[-1], data.y.shape[-1]))
        opt_state = tx.init(params)
        states += [TrainState(params, with_learning_rate(opt_state, lr)) for lr in lrs]
    M = len(states)
    used = devices.usable_devices(devices.platform_devices(config.platform), M, "models")
    n = len(used)
    g = max(k for k in range(1, GROUP + 1) if (M // n) % k == 0)  # models per group
    state_M = jax.tree.map(lambda *leaves: np.stack(leaves).reshape(n, M // n // g, g, *leaves[0].shape), *states)
    replicated, split = devices.shardings(devices.mesh(used, "models"))
    state_M = devices.put(state_M, split)
    data = devices.put(data, replicated)
    key = devices.put(data_key(config.data_seed), replicated)

    chunk = min(config.chunk, config.steps)
    static = dict(graphdef=graphdef, tx=tx, reduction=config.loss, chunk=chunk, batch_size=config.batch_size)
    compiled, compile_seconds = compile_timed(sweep_chunk, state_M, data, key, 0, config.steps, **static)
    losses = []
    start = time.perf_counter()
    show = progress and devices.is_main_process()
    with tqdm(total=config.steps, disable=not show, unit="step", leave=False) as bar:
        for done in range(0, config.steps, chunk):
            state_M, chunk_losses_GxgxC = compiled(state_M, data, key, done, config.steps)
            losses.append(devices.fetch(chunk_losses_GxgxC).reshape(M, chunk)[:, : config.steps - done])
            bar.update(losses[-1].shape[1])
    run_seconds = time.perf_counter() - start
    losses_MxN = np.concatenate(losses, axis=1)
    return SweepResult(
        seeds=list(seeds),
        lrs=list(lrs),
        losses=losses_MxN.reshape(len(seeds), len(lrs), config.steps),
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        devices=n,
    )


def table(result: SweepResult) -> str:
    """Final loss by learning rate: median over seeds, and the range."""
    final_SxL = result.losses[:, :, -1]
    lines = [f"{'lr':>10} {'median final loss':>18} {'min':>11} {'max':>11}  (over {len(result.seeds)} seeds)"]
    for j, lr in enumerate(result.lrs):
        f = final_SxL[:, j]
        lines.append(f"{lr:>10.3g} {np.median(f):>18.3e} {np.min(f):>11.3e} {np.max(f):>11.3e}")
    lines.append(
        f"{result.losses.size:,} model-steps in {result.run_seconds:.2f} s "
        f"({result.model_steps_per_second:,.0f}/s, compile {result.compile_seconds:.1f} s) "
        f"on {result.devices} device(s)"
    )
    return "\n".join(lines)


def plot(path, result: SweepResult) -> None:
    """Left: log10 median loss by learning rate and step. Right: loss curves, median and seed range."""
    from jaxseq.outputs import pyplot, save_figure

    median_LxN = np.median(result.losses, axis=0)
    steps = np.arange(1, median_LxN.shape[1] + 1)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4))
    image = left.imshow(
        np.log10(median_LxN),
        aspect="auto",
        origin="lower",
        extent=(1, steps[-1], -0.5, len(result.lrs) - 0.5),
        cmap="viridis",
    )
    left.set(xlabel="step", ylabel="learning rate", title="log10 median loss over seeds")
    left.set_yticks(range(len(result.lrs)), [f"{lr:g}" for lr in result.lrs])
    fig.colorbar(image, ax=left)
    for j, lr in enumerate(result.lrs):
        low, high = result.losses[:, j].min(axis=0), result.losses[:, j].max(axis=0)
        right.plot(steps, median_LxN[j], label=f"lr {lr:g}")
        right.fill_between(steps, low, high, alpha=0.2)
    right.set(xlabel="step", ylabel="loss", yscale="log", title=f"median and range over {len(result.seeds)} seeds")
    right.legend(fontsize="small")
    right.grid(True, which="both", alpha=0.3)
    save_figure(path, fig)
