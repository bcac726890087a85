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
Writes benchmarks/results/seed.json and seed.md (another stem with --name).
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
from matrix import RESULTS, SEED_CELL, measure_cell, started_workers  # noqa: E402

from jaxseq.app.options import positive_int  # noqa: E402
from jaxseq.files import write_text  # noqa: E402

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
        command_seconds("jaxseq.app.cli", f"{tmp}/warmup", warm_env)  # fills the cache; not timed
        for _ in range(runs):
            for name, module, env, extra in (
                ("jaxseq", "jaxseq.app.cli", cold_env, ("--no-cache",)),
                ("torchseq", "torchseq.cli", cold_env, ()),
                ("jaxseq_warm_cache", "jaxseq.app.cli", warm_env, ()),
            ):
                times[name].append(command_seconds(module, f"{tmp}/{name}", env, *extra))
                print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    return times


def floor_seconds(
    repeats: int, dtype: str = "float64", cell: tuple = SEED_CELL[:3], seconds: float = 0.2
) -> dict | None:
    """Seconds per step of the parts of an LSTM training step of `cell` = (batch, hidden, length)
    (the seed's size by default) in `dtype` that this training cannot do without, each timed alone
    on the CPU as XLA and optax run them: repeated inside one jitted `lax.scan` (so no dispatch; as
    many repetitions as take about `seconds`, at most 200), median of `repeats` runs after
    compilation.

    - recurrent_products: the products with W_hh (4H x H) that run one after another: T - 1 in
      the forward pass (h_{t-1} W_hh^T; the first is 0, as h_0 = 0) and T - 1 in the backward
      pass (dgates_t W_hh; the last would only give h_0's gradient). Each needs the one before;
      chained here with nothing else.
    - weight_gradients: every LSTM weight and bias gradient as one matmul, z^T dgates with
      z = [h_{t-1}, x_t, 1]: (T*B, H+I+1)^T (T*B, 4H). jaxseq's kernel does the same arithmetic as
      one matmul per weight and a sum (`jaxseq.nn.kernels._weight_gradients`).
    - adam: jaxseq's Adam update (`make_optimizer`, optax) and `optax.apply_updates` on the
      model's parameters.

    The arrays are arguments of the compiled programs (not constants XLA could fold), and each
    result passes an optimization barrier before one element of it is used, so no part of a
    product can be left out. Returns None where JAX's default device is not the CPU.
    `torch_floor_seconds` times the same parts in torch.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxseq.app.config import TrainConfig
    from jaxseq.app.training import init_model
    from jaxseq.optim import make_optimizer

    if jax.default_backend() != "cpu":
        return None  # on an accelerator these parts would time launch overheads, not the arithmetic
    batch, hidden, length = cell
    config = TrainConfig(hidden=hidden, length=length, dtype=dtype)
    _, params = nnx.split(init_model(config))
    # scaled to spectral norm 1, so that the chained products stay finite over long sequences
    w_hh_4HxH = params["lstm"]["weight_hh_l0"][...]
    w_hh_4HxH = w_hh_4HxH / jnp.linalg.norm(w_hh_4HxH, 2)
    tx = make_optimizer("adam", config.lr)
    rng = jax.random.split(jax.random.key(0), 2)
    z_NxK = jax.random.uniform(rng[0], (length * batch, hidden + 2), w_hh_4HxH.dtype)
    dgates_Nx4H = jax.random.uniform(rng[1], (length * batch, 4 * hidden), w_hh_4HxH.dtype)
    one = jnp.ones((), w_hh_4HxH.dtype)

    def recurrent_products(scale, w_hh_4HxH):
        def backward_then_forward(g_Bx4H, _):
            h_BxH = g_Bx4H @ w_hh_4HxH  # as dh_{t-1} = dgates_t W_hh
            return jnp.einsum("bh,gh->bg", h_BxH, w_hh_4HxH), None  # as h_{t-1} W_hh^T

        g_Bx4H, _ = jax.lax.scan(backward_then_forward, jnp.full((batch, 4 * hidden), scale), None, length=length - 1)
        return scale + 1e-9 * jax.lax.optimization_barrier(g_Bx4H)[0, 0]

    def weight_gradients(scale, z_NxK, dgates_Nx4H):
        dzw_Kx4H = jnp.einsum("nk,ng->kg", z_NxK * scale, dgates_Nx4H)
        return scale + 1e-9 * jax.lax.optimization_barrier(dzw_Kx4H)[0, 0]

    def adam(state):
        params, opt_state = state
        updates, opt_state = tx.update(params, opt_state, params)  # the parameters stand in for gradients
        return optax.apply_updates(params, updates), opt_state

    parts = {
        "recurrent_products": (recurrent_products, one, (w_hh_4HxH,)),
        "weight_gradients": (weight_gradients, one, (z_NxK, dgates_Nx4H)),
        "adam": (adam, (params, tx.init(params)), ()),
    }

    def repeated(body, reps):
        def run(carry, *operands):
            return jax.lax.scan(lambda c, _: (body(c, *operands), None), carry, None, length=reps)[0]

        return jax.jit(run)

    def timed(body, carry, operands):
        """A run of `body` repeated inside one compiled program, timed per repetition."""
        once = repeated(body, 1)
        reps = repetitions(lambda: jax.block_until_ready(once(carry, *operands)), seconds)
        run = repeated(body, reps)
        jax.block_until_ready(run(carry, *operands))  # compile
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = jax.block_until_ready(run(carry, *operands))
            times.append((time.perf_counter() - start) / reps)
        if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(result)):
            raise FloatingPointError("a floor part did not stay finite")
        return statistics.median(times)

    return {name: timed(*part) for name, part in parts.items()}


def repetitions(once, seconds: float, most: int = 200) -> int:
    """How many repetitions of `once()` take about `seconds`: from one timed call, after an untimed
    one (which compiles it), between 1 and `most`."""
    once()
    start = time.perf_counter()
    once()
    return max(1, min(most, round(seconds / (time.perf_counter() - start))))


def torch_floor_seconds(
    repeats: int, dtype: str = "float64", cell: tuple = SEED_CELL[:3], seconds: float = 0.2
) -> dict:
    """`floor_seconds`' parts as torch runs them (eager, at the process's thread count): the
    chained products with torch.mm, the weight-gradient matmul, and torchseq's Adam
    (`torchseq.train.make_optimizer`) stepping torchseq's model, the parameters standing in for
    their gradients. The same arithmetic as `floor_seconds`, but each product and each of Adam's
    operations is one eager call from Python, so this floor includes torch's dispatch, which
    `floor_seconds` excludes by design: at batch 1 that is most of it; in the batched cells the
    products dominate, and the two floors compare the libraries' matrix products there."""
    import torch

    from torchseq.model import build_model
    from torchseq.train import make_optimizer

    batch, hidden, length = cell
    model = build_model(hidden, 0, dtype)
    kind = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    w_hh_4HxH = model.lstm.weight_hh_l0.detach().clone()
    w_hh_4HxH /= torch.linalg.matrix_norm(w_hh_4HxH, ord=2)  # as in `floor_seconds`
    z_NxK = torch.rand(length * batch, hidden + 2, dtype=kind, generator=generator)
    dgates_Nx4H = torch.rand(length * batch, 4 * hidden, dtype=kind, generator=generator)
    for p in model.parameters():
        p.grad = p.detach().clone()
    optimizer = make_optimizer("adam", model.parameters(), 1e-3)

    def recurrent_products():
        g_Bx4H = torch.full((batch, 4 * hidden), 1.0, dtype=kind)
        for _ in range(length - 1):
            g_Bx4H = (g_Bx4H @ w_hh_4HxH) @ w_hh_4HxH.T
        return g_Bx4H

    parts = {
        "recurrent_products": recurrent_products,
        "weight_gradients": lambda: z_NxK.T @ dgates_Nx4H,
        "adam": optimizer.step,
    }

    def timed(part):
        def run(n):
            for _ in range(n):
                part()

        reps = repetitions(part, seconds)
        times = []  # no torch.no_grad(): optimizer.step switches autograd off itself, nothing else tracks it
        for _ in range(repeats):
            start = time.perf_counter()
            run(reps)
            times.append((time.perf_counter() - start) / reps)
        return statistics.median(times)

    if not bool(torch.isfinite(recurrent_products()).all()):
        raise FloatingPointError("the chained products did not stay finite")
    return {name: timed(part) for name, part in parts.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=positive_int, default=7, help="interleaved throughput runs (%(default)s)")
    p.add_argument("--seconds", type=float, default=2.0, help="target seconds per throughput run (%(default)s)")
    p.add_argument("--cli-runs", type=positive_int, default=5, help="runs of each command (%(default)s)")
    p.add_argument("--name", default="seed", help="results file stem (%(default)s)")
    args = p.parse_args(argv)
    command = "python benchmarks/seed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()

    try:
        with started_workers() as workers:
            settings = {name: w.settings for name, w in workers.items()}
            print(f"jax: {settings['jax']}\ntorch: {settings['torch']}\nnproc: {os.cpu_count()}", flush=True)
            cell = measure_cell(workers, SEED_CELL, args.repeats, args.seconds)
    except KeyboardInterrupt:
        print("seed.py: interrupted; nothing written", file=sys.stderr)
        return 130
    print(
        f"throughput: jax {cell['jax_steps_per_second']:.0f}  torch {cell['torch_steps_per_second']:.0f} steps/s  "
        f"ratio {cell['ratio']:.2f}x  (jax runs {[round(r) for r in cell['jax_all']]}, "
        f"torch runs {[round(r) for r in cell['torch_all']]})",
        flush=True,
    )

    floor = floor_seconds(args.repeats)
    floor_lines, ceiling, ceiling_range = [], None, None
    if floor is not None:
        floor_total = sum(floor.values())
        # torchseq's step time over jaxseq's floor: the median run, and the range over all runs
        ceiling = 1 / cell["torch_steps_per_second"] / floor_total
        ceilings = [1 / rate / floor_total for rate in cell["torch_all"]]
        ceiling_range = [min(ceilings), max(ceilings)]
        spread = f"{ceiling_range[0]:.1f}x-{ceiling_range[1]:.1f}x over torchseq's {len(ceilings)} runs"
        print(
            "floor per step: "
            + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in floor.items())
            + f"; sum {floor_total * 1e6:.0f} us: a step at the floor would be {ceiling:.1f}x torchseq ({spread})",
            flush=True,
        )
        floor_lines = [
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
            f"torchseq's: {1e6 / cell['torch_steps_per_second']:.0f} us. A step at the floor would be "
            f"**{ceiling:.1f}x** torchseq ({spread}).",
            "",
        ]

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
        "floor_ceiling_ratio_range": ceiling_range,
        "cli_seconds": times,
        "cli_median_seconds": medians,
        "wall_seconds": time.perf_counter() - start,
    }
    RESULTS.mkdir(exist_ok=True)
    write_text(RESULTS / f"{args.name}.json", json.dumps(report, indent=1) + "\n")
    write_text(
        RESULTS / f"{args.name}.md",
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
                *floor_lines,
                f"`train --no-progress` end to end (1000 steps, process start to exit), median of {args.cli_runs}:",
                "",
                "| command | median s | runs |",
                "|:---|---:|:---|",
                *(f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |" for name in times),
                "",
            ]
        ),
    )
    print(f"wrote {RESULTS}/{args.name}.json and .md ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
