"""Many independent models in one compiled program: `jax.vmap` over seeds and learning rates.

Every model of the grid (seed x learning rate) runs the very step `jaxseq train` runs, vmapped:
`run_chunk` under `jax.vmap` under one `jax.jit`. The learning rate lives in the optimizer
state (`with_learning_rate`), so it is vmapped like the parameters. With several devices the
model axis is sharded across them (`jax.sharding.NamedSharding`); JAX places the work.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import numpy as np
from flax import nnx

from jaxseq.app import devices
from jaxseq.app.config import TrainConfig
from jaxseq.app.task import data_key
from jaxseq.app.training import STATIC, TrainState, init_model, prepare, run_chunk, run_loop, static_args
from jaxseq.optim import with_learning_rate


@dataclass
class SweepResult:
    seeds: list[int]  # (S,)
    lrs: list[float]  # (L,)
    losses: np.ndarray  # (S, L, steps) the loss of every model at every step
    compile_seconds: float
    run_seconds: float
    devices: int  # devices the model axis was sharded over

    @property
    def diverged_at(self) -> np.ndarray:
        """(S, L): the first step (from 1) whose loss is NaN or infinite, 0 for a model that did not diverge."""
        bad_SxLxN = ~np.isfinite(self.losses)
        return np.where(bad_SxLxN.any(axis=-1), bad_SxLxN.argmax(axis=-1) + 1, 0)

    @property
    def steps(self) -> int:
        """Steps every model ran: the config's, or fewer where the sweep was stopped."""
        return self.losses.shape[-1]

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
    config: TrainConfig, seeds: list[int], lrs: list[float], batch=None, *, progress: bool = False, stop=None
) -> SweepResult:
    """Trains one model per (seed, lr) on the config's batch; model (s, l) is `train(config with
    seed s and lr l)`. A model whose loss becomes NaN or infinite diverged: its losses stay in the
    result from there on (the others go on), and `SweepResult.diverged_at` names its step.
    `stop()`, asked after each chunk of steps, ends the sweep there: the result then holds the
    steps done (`SweepResult.steps` < config.steps)."""
    data, tx = prepare(config, batch)
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
    losses = []

    def on_chunk(done, chunk_losses_GxgxC, state):
        losses.append(devices.fetch(chunk_losses_GxgxC).reshape(M, -1)[:, : config.steps - done])
        shown = np.nanmedian(losses[-1][:, -1]) if np.isfinite(losses[-1][:, -1]).any() else np.nan
        return shown, stop is not None and stop()

    key = devices.put(data_key(config.data_seed), replicated)
    static = static_args(config, graphdef, tx, min(config.chunk, config.steps))
    _, compile_seconds, run_seconds = run_loop(
        sweep_chunk, state_M, data, key, config=config, first=0, static=static, progress=progress, on_chunk=on_chunk
    )
    return SweepResult(
        seeds=list(seeds),
        lrs=list(lrs),
        losses=np.concatenate(losses, axis=1).reshape(len(seeds), len(lrs), -1),
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
        devices=n,
    )


def summary(result: SweepResult, config: TrainConfig) -> dict:
    """What `jaxseq sweep` writes to summary.json: every model's final loss, or null and the step
    it diverged at; the throughput; the config with its list of learning rates."""
    runs = []
    for i, seed in enumerate(result.seeds):
        for j, lr in enumerate(result.lrs):
            at = int(result.diverged_at[i, j])
            final = None if at else float(result.losses[i, j, -1])
            runs.append({"seed": seed, "lr": lr, "final_loss": final, "diverged_at_step": at or None})
    return {
        "status": "finished" if result.steps == config.steps else "interrupted",
        "steps": result.steps,
        "runs": runs,
        "diverged": int((result.diverged_at > 0).sum()),
        "devices": result.devices,
        "processes": jax.process_count(),
        "model_steps_per_second": result.model_steps_per_second,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "config": dataclasses.asdict(config) | {"lr": list(result.lrs)},
    }


def table(result: SweepResult) -> str:
    """Final loss by learning rate over the seeds that did not diverge (median and range), and how many did."""
    final_SxL = result.losses[:, :, -1]
    diverged_SxL = result.diverged_at > 0
    header = f"{'lr':>10} {'median final loss':>18} {'min':>11} {'max':>11} {'diverged':>9}"
    lines = [f"{header}  (over {len(result.seeds)} seeds)"]
    for j, lr in enumerate(result.lrs):
        f = final_SxL[~diverged_SxL[:, j], j]
        stats = [f"{v:.3e}" for v in (np.median(f), np.min(f), np.max(f))] if f.size else ["-"] * 3
        first = result.diverged_at[diverged_SxL[:, j], j]
        diverged = f"{first.size} (from step {first.min()})" if first.size else "0"
        lines.append(f"{lr:>10.3g} {stats[0]:>18} {stats[1]:>11} {stats[2]:>11} {diverged:>9}")
    lines.append(
        f"{result.losses.size:,} model-steps in {result.run_seconds:.2f} s "
        f"({result.model_steps_per_second:,.0f}/s, compile {result.compile_seconds:.1f} s) "
        f"on {result.devices} device(s)"
    )
    return "\n".join(lines)


PLOT_CEILING = 1e30  # losses above it are left out of the plot, as the non-finite ones are


def plot(path, result: SweepResult) -> None:
    """Left: log10 median loss by learning rate and step. Right: loss curves, median and seed range.
    A diverged model counts up to its last finite step (and below PLOT_CEILING); a cell where
    every model diverged is blank."""
    from jaxseq.files import pyplot, save_figure

    # past 1e30 a diverging loss is on its way to overflow; a log axis cannot draw it either
    finite_SxLxN = np.where(np.isfinite(result.losses) & (np.abs(result.losses) < PLOT_CEILING), result.losses, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: every seed diverged there
        median_LxN = np.nanmedian(finite_SxLxN, axis=0)
        low_LxN, high_LxN = np.nanmin(finite_SxLxN, axis=0), np.nanmax(finite_SxLxN, axis=0)
        log_median_LxN = np.log10(median_LxN)
    steps = np.arange(1, median_LxN.shape[1] + 1)
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4))
    image = left.imshow(
        log_median_LxN,
        aspect="auto",
        origin="lower",
        extent=(1, steps[-1], -0.5, len(result.lrs) - 0.5),
        cmap="viridis",
    )
    left.set(xlabel="step", ylabel="learning rate", title="log10 median loss over seeds")
    left.set_yticks(range(len(result.lrs)), [f"{lr:g}" for lr in result.lrs])
    fig.colorbar(image, ax=left)
    for j, lr in enumerate(result.lrs):
        label = f"lr {lr:g}" + (" (diverged)" if (result.diverged_at[:, j] > 0).any() else "")
        right.plot(steps, median_LxN[j], label=label)
        right.fill_between(steps, low_LxN[j], high_LxN[j], alpha=0.2)
    right.set(xlabel="step", ylabel="loss", yscale="log", title=f"median and range over {len(result.seeds)} seeds")
    right.legend(fontsize="small")
    right.grid(True, which="both", alpha=0.3)
    save_figure(path, fig)
