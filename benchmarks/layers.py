"""Stacked and bidirectional LSTMs and GRUs against the one-layer path, and each kernel against autodiff.

    python benchmarks/layers.py              # seed size (batch 1, hidden 100, length 21), float64 and float32
    python benchmarks/layers.py --batch 64   # a batched size (results: layers-batch64.md)
    python benchmarks/layers.py --hidden 256 --cells lstm   # (results: layers-hidden256.md)
    python benchmarks/layers.py --cells gru  # GRU only

For each cell (LSTM, GRU) and configuration (1 layer; 2 layers; bidirectional; 2 layers
bidirectional) it times jaxseq's training step (`jaxseq.app.training.train_chunk`, Adam,
whole-sequence loss) twice: with the cell's hand-written kernel (`jaxseq.nn.recurrent.KERNELS`,
the default) and with the kernel table
emptied, i.e. plain autodiff through `lax.scan`. Each variant is compiled once; the variants are
then timed in turn (interleaved), `--repeats` times, and the medians reported, with the time per
layer-direction (step time / (layers x directions)) beside the one-layer step. JAX is timed after
compilation, blocking on each chunk's losses. Writes benchmarks/results/layers.md and .json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

from jaxseq.files import write_text

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = ((1, False), (2, False), (1, True), (2, True))  # (layers, bidirectional)


def compiled_step(cell, layers, bidirectional, batch, hidden, length, dtype, chunk, use_kernel):
    """(run(), steps per call): `chunk` training steps compiled for this configuration."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from jaxseq.app.config import TrainConfig
    from jaxseq.app.data import Sequences
    from jaxseq.app.task import data_key
    from jaxseq.app.training import TrainState, init_model, prepare, static_args, train_chunk
    from jaxseq.nn import recurrent

    config = TrainConfig(hidden=hidden, cell=cell, layers=layers, bidirectional=bidirectional, dtype=dtype, chunk=chunk)
    rng = np.random.default_rng(0)
    x, y = (rng.uniform(-1, 1, (batch, length, 1)).astype(dtype) for _ in range(2))
    data, tx = prepare(config, (x, y))
    data = Sequences(jnp.asarray(data.x), jnp.asarray(data.y), None)
    graphdef, params = nnx.split(init_model(config))
    state = TrainState(params, tx.init(params))
    key = data_key(0)
    saved = dict(recurrent.KERNELS)
    if not use_kernel:
        recurrent.KERNELS.clear()  # read when the step is traced, i.e. by this compilation only
    try:
        compiled = train_chunk.lower(state, data, key, 0, chunk, **static_args(config, graphdef, tx, chunk)).compile()
    finally:
        recurrent.KERNELS.update(saved)
    holder = [state]

    def run() -> float:
        start = time.perf_counter()
        holder[0], losses = compiled(holder[0], data, key, 0, chunk)
        losses.block_until_ready()
        return time.perf_counter() - start

    run()  # warm-up
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--length", type=int, default=21)
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--chunk", type=int, default=200, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    rows = []
    for cell, dtype in ((c, d) for c in args.cells.split(",") for d in args.dtypes.split(",")):
        runs = {
            (layers, bidi, kernel): compiled_step(
                cell, layers, bidi, args.batch, args.hidden, args.length, dtype, args.chunk, kernel
            )
            for layers, bidi in CONFIGS
            for kernel in (True, False)
        }
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, run in runs.items():  # interleaved
                times[k].append(run() / args.chunk * 1e3)
        one_layer = statistics.median(times[(1, False, True)])
        for layers, bidi in CONFIGS:
            kernel, autodiff = (
                statistics.median(times[(layers, bidi, True)]),
                statistics.median(times[(layers, bidi, False)]),
            )
            per = kernel / (layers * (2 if bidi else 1))
            rows.append(
                dict(
                    cell=cell,
                    dtype=dtype,
                    layers=layers,
                    bidirectional=bidi,
                    kernel_ms=kernel,
                    autodiff_ms=autodiff,
                    kernel_speedup=autodiff / kernel,
                    per_layer_direction_ms=per,
                    vs_one_layer=one_layer / per,
                )
            )
    date = datetime.datetime.now().isoformat(timespec="minutes")
    command = " ".join(["python benchmarks/layers.py", *(sys.argv[1:] if argv is None else argv)])
    head = (
        f"# Stacked and bidirectional LSTM and GRU, {date}\n\n`{command}` (batch {args.batch}, "
        f"hidden {args.hidden}, length {args.length}, Adam, median of {args.repeats} x {args.chunk} steps, "
        f"{os.cpu_count()} cores). ms per training step.\n\n"
        "| cell | dtype | layers | bidirectional | kernel | autodiff scan | kernel speed-up | per layer-direction | "
        "one-layer step / per layer-direction |\n|---|---|---:|---|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['cell']} | {r['dtype']} | {r['layers']} | {r['bidirectional']} | {r['kernel_ms']:.3f} | "
        f"{r['autodiff_ms']:.3f} | "
        f"{r['kernel_speedup']:.2f}x | {r['per_layer_direction_ms']:.3f} | {r['vs_one_layer']:.2f}x |"
        for r in rows
    ]
    text = head + "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = (
        "layers"
        + (f"-batch{args.batch}" if args.batch != 1 else "")
        + (f"-hidden{args.hidden}" if args.hidden != 100 else "")
    )
    write_text(RESULTS / f"{name}.md", text)
    write_text(
        RESULTS / f"{name}.json",
        json.dumps({"date": date, "command": command, "args": vars(args), "rows": rows}, indent=2) + "\n",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
