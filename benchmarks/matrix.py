"""Training throughput of jaxseq against torchseq, measured side by side.

    python benchmarks/matrix.py                  # the full matrix, 3 repeats (about 7 min on 2 cores)
    python benchmarks/matrix.py --quick          # shorter measurements, 1 repeat
    python benchmarks/matrix.py --seed-only      # batch 1, hidden 100, length 21, float64 only

Each framework runs in its own long-lived worker process (`--worker jax|torch`); for
every cell the parent asks them in turn (jax, torch, jax, torch, ...) for one timed
measurement of `steps` Adam steps on random data, r times, and reports medians.
JAX is timed after compilation and a warm-up, with a host sync after every chunk,
exactly as `jaxseq.app.training.train` runs it (`train_chunk` compiled once per cell);
PyTorch runs `torchseq.train.train`. Writes benchmarks/results/<name>.json and .md at the end;
until then, <name>.partial.json and .md after every cell (a run stopped early keeps those).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jaxseq.app.options import positive_int
from jaxseq.files import write_text

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES, HIDDENS, LENGTHS, DTYPES = (1, 64, 256), (100, 256), (21, 100), ("float32", "float64")
SEED_CELL = (1, 100, 21, "float64")


def random_batch(batch: int, length: int, dtype: str):
    """(x_BxTx1, y_BxTx1) drawn from a fixed seed, the same arrays for both frameworks."""
    import numpy as np

    rng = np.random.default_rng(0)
    return tuple(rng.uniform(-1, 1, (batch, length, 1)).astype(dtype) for _ in range(2))


# ----------------------------------------------------------------------------- workers


class JaxCell:
    """One cell on the JAX side: `train_chunk` compiled once, then timed calls of `chunk` steps."""

    def __init__(self, batch, hidden, length, dtype, chunk):
        import jax.numpy as jnp
        from flax import nnx

        from jaxseq.app.config import TrainConfig
        from jaxseq.app.data import Sequences
        from jaxseq.app.task import data_key
        from jaxseq.app.training import TrainState, compile_timed, init_model, train_chunk
        from jaxseq.optim import make_optimizer

        config = TrainConfig(hidden=hidden, length=length, dtype=dtype, chunk=chunk)
        graphdef, params = nnx.split(init_model(config))
        tx = make_optimizer(config.optimizer, config.lr)
        self.batch = Sequences(*(jnp.asarray(a) for a in random_batch(batch, length, dtype)))
        self.key = data_key(0)  # unused: every step sees the whole batch
        self.state = TrainState(params, tx.init(params))
        self.chunk = chunk
        static = dict(graphdef=graphdef, tx=tx, reduction=config.loss, chunk=chunk)
        args = (self.state, self.batch, self.key, 0, chunk)
        self.compiled, self.compile_seconds = compile_timed(train_chunk, *args, **static)

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps (a multiple of `chunk`), syncing on the losses after each chunk."""
        import numpy as np

        start = time.perf_counter()
        for _ in range(steps // self.chunk):
            self.state, losses = self.compiled(self.state, self.batch, self.key, 0, self.chunk)
            np.asarray(losses)
        return time.perf_counter() - start


class TorchCell:
    """One cell on the PyTorch side: `torchseq.train.train` on the same random batch."""

    def __init__(self, batch, hidden, length, dtype, chunk):
        from jaxseq.app.config import TrainConfig
        from torchseq.model import build_model

        self.config = TrainConfig(hidden=hidden, length=length, dtype=dtype)
        self.model = build_model(hidden, 0, dtype)
        self.batch = random_batch(batch, length, dtype)
        self.compile_seconds = 0.0

    def run(self, steps: int) -> float:
        from torchseq.train import train

        start = time.perf_counter()
        train(self.config.replace(steps=steps), model=self.model, batch=self.batch)
        return time.perf_counter() - start


def thread_settings(framework: str) -> dict:
    if framework == "jax":
        import jax

        return {"jax": jax.__version__, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "device": str(jax.devices()[0])}
    import torch

    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def worker(framework: str) -> None:
    """Serves one JSON request per stdin line: {"cell": [...], "chunk": n} builds a cell,
    {"steps": n} times it; answers one JSON line each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C or a time limit stops the parent, which ends us
    cls = JaxCell if framework == "jax" else TorchCell
    print(json.dumps(thread_settings(framework)), flush=True)
    cell = None
    for line in sys.stdin:
        request = json.loads(line)
        if "cell" in request:
            cell = cls(*request["cell"], request["chunk"])
            warm = cell.run(request["chunk"])
            print(json.dumps({"compile_seconds": cell.compile_seconds, "warmup_seconds": warm}), flush=True)
        else:
            print(json.dumps({"seconds": cell.run(request["steps"])}), flush=True)


# ----------------------------------------------------------------------------- parent


class Worker:
    def __init__(self, framework: str):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", framework],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.settings = self.ask(None)

    def ask(self, request):
        if request is not None:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker exited (status {self.proc.wait()})")
        return json.loads(line)

    def close(self, kill: bool = False):
        """Ends the worker: once it has answered (closing its input ends its loop), or at once."""
        if kill:
            self.proc.kill()
        self.proc.stdin.close()
        self.proc.wait()


@contextlib.contextmanager
def started_workers():
    """{"jax": Worker, "torch": Worker}, ended with the block: at once if Ctrl-C or a time limit
    (SIGINT) interrupted it, which then goes on up."""
    workers = {"jax": Worker("jax"), "torch": Worker("torch")}
    interrupted = False
    try:
        yield workers
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for w in workers.values():
            w.close(kill=interrupted)


def default_chunk(batch: int, hidden: int, length: int) -> int:
    """JAX steps per compiled call: `jaxseq train`'s default (100) for the small cells
    (batch * length * hidden^2 <= 2e6), 10 for the rest, so that one call stays within seconds.

    Each call first touches its freshly allocated buffers (page faults), which at the largest
    sizes costs about as much as a step; from 10 steps per call on that no longer shows
    (compare `--chunk 2`, `--chunk 10` and `--chunk 30` on one `--cell`).
    """
    return 100 if batch * length * hidden * hidden <= 2e6 else 10


def measure_cell(workers, cell, repeats: int, target_seconds: float, chunk: int | None = None) -> dict:
    """Interleaved timings of one cell; the step count is chosen from the slower warm-up."""
    batch, hidden, length, _ = cell
    chunk = default_chunk(batch, hidden, length) if chunk is None else chunk
    warm = {name: w.ask({"cell": list(cell), "chunk": chunk}) for name, w in workers.items()}
    # Each framework runs enough steps (a multiple of chunk) for ~target_seconds, timed once warm.
    steps = {}
    for name, w in workers.items():
        seconds_per_step = w.ask({"steps": chunk})["seconds"] / chunk
        steps[name] = max(chunk, round(target_seconds / seconds_per_step / chunk) * chunk)
    rates = {name: [] for name in workers}
    for _ in range(repeats):
        for name, w in workers.items():
            rates[name].append(steps[name] / w.ask({"steps": steps[name]})["seconds"])
    jax_rate, torch_rate = statistics.median(rates["jax"]), statistics.median(rates["torch"])
    return {
        "batch": cell[0],
        "hidden": cell[1],
        "length": cell[2],
        "dtype": cell[3],
        "jax_steps": steps["jax"],
        "torch_steps": steps["torch"],
        "jax_steps_per_second": jax_rate,
        "torch_steps_per_second": torch_rate,
        "ratio": jax_rate / torch_rate,
        "jax_all": rates["jax"],
        "torch_all": rates["torch"],
        "jax_compile_seconds": warm["jax"]["compile_seconds"],
        "chunk": chunk,
    }


def markdown(report: dict) -> str:
    lines = [
        f"# jaxseq / torchseq training throughput ({report['date']})",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}. JAX: {report['jax']}. PyTorch: {report['torch']}.",
        f"Adam, lr 1e-3, random data; median of {report['repeats']} interleaved runs per cell; "
        "ratio = jaxseq steps/s / torchseq steps/s (> 1: jaxseq faster).",
        "",
        "| batch | hidden | length | dtype | jaxseq steps/s | torchseq steps/s | ratio "
        "| steps timed (jax/torch) | jax steps per call | jax compile s |",
        "|---:|---:|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["cells"]:
        lines.append(
            f"| {r['batch']} | {r['hidden']} | {r['length']} | {r['dtype']} "
            f"| {r['jax_steps_per_second']:.1f} | {r['torch_steps_per_second']:.1f} | **{r['ratio']:.2f}x** "
            f"| {r['jax_steps']}/{r['torch_steps']} | {r['chunk']} | {r['jax_compile_seconds']:.2f} |"
        )
    ratios = [r["ratio"] for r in report["cells"]]
    done, planned = len(report["cells"]), report["cells_planned"]
    lines += [
        "",
        *([f"**Incomplete: {done} of {planned} cells measured** (the run stopped early)."] if done < planned else []),
        f"Ratio: min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x, max {max(ratios):.2f}x.",
        "",
    ]
    return "\n".join(lines)


def parse_cell(text: str) -> tuple:
    try:
        batch, hidden, length, dtype = text.split(",")
        if dtype not in DTYPES:
            raise ValueError
        return positive_int(batch), positive_int(hidden), positive_int(length), dtype
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected B,H,T,float32|float64 with B, H, T >= 1; got {text!r}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=positive_int, default=3, help="interleaved runs per cell (%(default)s)")
    p.add_argument(
        "--seconds",
        type=float,
        default=1.0,
        help="target seconds per timed run (%(default)s); a run is at least one compiled call (see default_chunk)",
    )
    p.add_argument("--quick", action="store_true", help="--repeats 1 --seconds 0.3")
    p.add_argument("--seed-only", action="store_true", help="only batch 1, hidden 100, length 21, float64")
    p.add_argument(
        "--cell", action="append", type=parse_cell, metavar="B,H,T,DTYPE", help="only this cell (repeatable)"
    )
    p.add_argument(
        "--chunk", type=positive_int, default=None, help="JAX steps per compiled call (default: see default_chunk)"
    )
    p.add_argument(
        "--name", default=None, help="results file stem (matrix; cells with --cell; matrix-seed with --seed-only)"
    )
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.quick:
        args.repeats, args.seconds = 1, 0.3
    cells = args.cell or ([SEED_CELL] if args.seed_only else list(itertools.product(BATCHES, HIDDENS, LENGTHS, DTYPES)))
    name = args.name or ("cells" if args.cell else "matrix-seed" if args.seed_only else "matrix")
    command = "python benchmarks/matrix.py " + " ".join(sys.argv[1:] if argv is None else argv)

    start = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    measured = []

    def write_results(report: dict, stem: str):
        report["wall_seconds"] = time.perf_counter() - start
        write_text(RESULTS / f"{stem}.json", json.dumps(report, indent=1) + "\n")
        write_text(RESULTS / f"{stem}.md", markdown(report))

    try:
        with started_workers() as workers:
            report = {
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": command.strip(),
                "machine": f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
                f"load average at start {os.getloadavg()[0]:.2f}",
                "jax": workers["jax"].settings,
                "torch": workers["torch"].settings,
                "repeats": args.repeats,
                "cells_planned": len(cells),
                "cells": measured,
            }
            print(f"jax: {report['jax']}\ntorch: {report['torch']}\nnproc: {os.cpu_count()}", flush=True)
            for cell in cells:
                r = measure_cell(workers, cell, args.repeats, args.seconds, args.chunk)
                measured.append(r)
                write_results(report, f"{name}.partial")  # a run stopped early keeps what it measured here
                print(
                    f"B={r['batch']:<3} H={r['hidden']:<3} T={r['length']:<3} {r['dtype']}: "
                    f"jax {r['jax_steps_per_second']:9.1f}  torch {r['torch_steps_per_second']:8.1f} steps/s  "
                    f"ratio {r['ratio']:6.2f}x  ({r['jax_steps']}/{r['torch_steps']} steps, "
                    f"compile {r['jax_compile_seconds']:.2f} s)",
                    flush=True,
                )
    except KeyboardInterrupt:
        kept = f"; the {len(measured)} measured are in {RESULTS / name}.partial.json and .md" if measured else ""
        print(f"matrix.py: interrupted after {len(measured)} of {len(cells)} cells{kept}", file=sys.stderr)
        return 130
    write_results(report, name)
    for suffix in (".json", ".md"):
        (RESULTS / f"{name}.partial{suffix}").unlink(missing_ok=True)
    print(f"wrote {RESULTS / name}.json and .md ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
