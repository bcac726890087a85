"""The seed question's size alone (batch 1, hidden 100, length 21, float64, Adam), measured side by side.

    python benchmarks/seed.py                # 7 interleaved throughput runs, 5 CLI runs each (about 3 min)
    python benchmarks/seed.py --repeats 3 --cli-runs 3

1. Training throughput, jaxseq / torchseq, as in benchmarks/matrix.py (worker processes,
   interleaved runs, medians).
2. End-to-end command wall time, process start to exit, of
   `jaxseq train --no-progress --out DIR` and `torchseq train --no-progress --out DIR`
   (1000 steps), interleaved, medians: jaxseq with `--no-cache` (cold: compiles everything),
   and once more with a warm persistent compilation cache (its default; JAX_COMPILATION_CACHE_DIR
   pointed at a fresh directory that one untimed run fills first).
3. The floor under one jaxseq step at this size on this machine (`floor_seconds`): the parts of a
   step that no implementation of this training can skip, each timed alone in JAX, and torchseq's
   step time divided by their sum, the most jaxseq / torchseq could reach here.
Writes benchmarks/results/seed.json and seed.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import RESULTS, SEED_CELL, Worker, measure_cell  # noqa: E402

CACHE_ENV = (
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
)


def command_seconds(module: str, out: str, env: dict, *extra: str) -> float:
    """Wall time of `python -m <module> train --no-progress --out <out> [extra]`, process start to exit."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", module, "train", "--no-progress", "--out", out, *extra],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def cli_times(runs: int) -> dict:
    cold_env = {k: v for k, v in os.environ.items() if k not in CACHE_ENV}
    times = {"jaxseq": [], "torchseq": [], "jaxseq_warm_cache": []}
    with tempfile.TemporaryDirectory() as tmp:
        # `jaxseq train` keeps compiled programs in $JAX_COMPILATION_CACHE_DIR unless --no-cache.
        warm_env = dict(cold_env, JAX_COMPILATION_CACHE_DIR=f"{tmp}/cache")
        command_seconds("jaxseq.cli", f"{tmp}/warmup", warm_env)  # fills the cache; not timed
        for _ in range(runs):
            for name, module, env, extra in (
                ("jaxseq", "jaxseq.cli", cold_env, ("--no-cache",)),
                ("torchseq", "torchseq.cli", cold_env, ()),
                ("jaxseq_warm_cache", "jaxseq.cli", warm_env, ()),
            ):
                times[name].append(command_seconds(module, f"{tmp}/{name}", env, *extra))
                print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    return times


def floor_seconds(repeats: int, reps: int = 200) -> dict:
    """Seconds per step of the work a training step at the seed's size cannot avoid, each part
    timed alone: `reps` repetitions inside one jitted `lax.scan` (so no dispatch), median of
    `repeats` runs after compilation.

    - recurrent_products: the 2T matrix-vector products with W_hh (4H x H) that run one after
      another, T in the forward pass (h W_hh^T) and T in the backward pass (dgates W_hh).
      Each needs the one before, so nothing can overlap them; chained here with nothing else.
    - weight_gradients: the one matmul that gives every LSTM weight gradient, z^T dgates,
      (T*B, H+I+1)^T (T*B, 4H), as `jaxseq.model` computes it.
    - adam: jaxseq's Adam update (`make_optimizer`) and `optax.apply_updates` on the model's
      parameters.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxseq.config import TrainConfig
    from jaxseq.training import init_model, make_optimizer

    batch, hidden, length, dtype = SEED_CELL
    config = TrainConfig(hidden=hidden, length=length, dtype=dtype)
    _, params = nnx.split(init_model(config))
    w_hh_4HxH = params["lstm"]["weight_hh_l0"][...]
    tx = make_optimizer("adam", config.lr)
    rng = jax.random.split(jax.random.key(0), 2)
    z_NxK = jax.random.uniform(rng[0], (length * batch, hidden + 2), w_hh_4HxH.dtype)
    dgates_Nx4H = jax.random.uniform(rng[1], (length * batch, 4 * hidden), w_hh_4HxH.dtype)

    def repeated(body, carry):
        return jax.jit(lambda c: jax.lax.scan(lambda c, _: (body(c), None), c, None, length=reps)[0])

    def recurrent_products(scale):
        def backward_then_forward(g_1x4H, _):
            h_1xH = g_1x4H @ w_hh_4HxH  # as dh_{t-1} = dgates_t W_hh
            return jnp.einsum("bh,gh->bg", h_1xH, w_hh_4HxH), None  # as h_{t-1} W_hh^T

        g_1x4H = jnp.full((1, 4 * hidden), scale)
        return scale + 1e-9 * jax.lax.scan(backward_then_forward, g_1x4H, None, length=length)[0][0, 0]

    def weight_gradients(scale):
        return scale + 1e-9 * jnp.einsum("nk,ng->kg", z_NxK * scale, dgates_Nx4H)[0, 0]

    def adam(state):
        params, opt_state = state
        updates, opt_state = tx.update(params, opt_state, params)  # the parameters stand in for gradients
        return optax.apply_updates(params, updates), opt_state

    parts = {
        "recurrent_products": (recurrent_products, jnp.ones((), w_hh_4HxH.dtype)),
        "weight_gradients": (weight_gradients, jnp.ones((), w_hh_4HxH.dtype)),
        "adam": (adam, (params, tx.init(params))),
    }
    seconds = {}
    for name, (body, carry) in parts.items():
        run = repeated(body, carry)
        jax.block_until_ready(run(carry))  # compile
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(run(carry))
            times.append((time.perf_counter() - start) / reps)
        seconds[name] = statistics.median(times)
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="interleaved throughput runs (%(default)s)")
    p.add_argument("--seconds", type=float, default=2.0, help="target seconds per throughput run (%(default)s)")
    p.add_argument("--cli-runs", type=int, default=5, help="runs of each command (%(default)s)")
    args = p.parse_args(argv)
    command = "python benchmarks/seed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()

    workers = {"jax": Worker("jax"), "torch": Worker("torch")}
    try:
        print(
            f"jax: {workers['jax'].settings}\ntorch: {workers['torch'].settings}\nnproc: {os.cpu_count()}", flush=True
        )
        cell = measure_cell(workers, SEED_CELL, args.repeats, args.seconds)
    finally:
        settings = {name: w.settings for name, w in workers.items()}
        for w in workers.values():
            w.close()
    print(
        f"throughput: jax {cell['jax_steps_per_second']:.0f}  torch {cell['torch_steps_per_second']:.0f} steps/s  "
        f"ratio {cell['ratio']:.2f}x  (jax runs {[round(r) for r in cell['jax_all']]}, "
        f"torch runs {[round(r) for r in cell['torch_all']]})",
        flush=True,
    )

    floor = floor_seconds(args.repeats)
    floor_total = sum(floor.values())
    ceiling = 1 / cell["torch_steps_per_second"] / floor_total
    print(
        "floor per step: "
        + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in floor.items())
        + f"; sum {floor_total * 1e6:.0f} us, so at most {ceiling:.1f}x torchseq here",
        flush=True,
    )

    print("command wall times (1000 steps, process start to exit):", flush=True)
    times = cli_times(args.cli_runs)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print("  medians: " + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()), flush=True)

    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command.strip(),
        "nproc": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
        **settings,
        "throughput": cell,
        "floor_seconds_per_step": floor,
        "floor_ceiling_ratio": ceiling,
        "cli_seconds": times,
        "cli_median_seconds": medians,
        "wall_seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "seed.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "seed.md").write_text(
        "\n".join(
            [
                f"# Seed size: batch 1, hidden 100, length 21, float64, Adam ({report['date']})",
                "",
                f"Command: `{report['command']}`; nproc {report['nproc']}; "
                f"JAX {settings['jax']}; PyTorch {settings['torch']}.",
                "",
                f"Training throughput, median of {args.repeats} interleaved runs of "
                f"{cell['jax_steps']} (jax) / {cell['torch_steps']} (torch) steps:",
                f"jaxseq {cell['jax_steps_per_second']:.0f} steps/s, "
                f"torchseq {cell['torch_steps_per_second']:.0f} steps/s, "
                f"**ratio {cell['ratio']:.2f}x** (jaxseq compile {cell['jax_compile_seconds']:.2f} s).",
                "",
                "The floor under one jaxseq step here (`floor_seconds` in the script; each part timed alone, "
                f"median of {args.repeats}):",
                "",
                "| part | us per step |",
                "|:---|---:|",
                *(f"| {name} | {sec * 1e6:.1f} |" for name, sec in floor.items()),
                f"| **sum** | **{floor_total * 1e6:.1f}** |",
                "",
                f"jaxseq's step: {1e6 / cell['jax_steps_per_second']:.0f} us "
                f"({100 * cell['jax_steps_per_second'] * floor_total:.0f}% of it is the floor); "
                f"torchseq's: {1e6 / cell['torch_steps_per_second']:.0f} us. "
                f"A step at the floor would be **{ceiling:.1f}x** torchseq.",
                "",
                f"`train --no-progress` end to end (1000 steps, process start to exit), median of {args.cli_runs}:",
                "",
                "| command | median s | runs |",
                "|:---|---:|:---|",
                *(f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |" for name in times),
                "",
            ]
        )
    )
    print(f"wrote {RESULTS}/seed.json and seed.md ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
