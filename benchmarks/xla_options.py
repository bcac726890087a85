"""Can XLA compile the slow-compiling corpus models faster, and at what cost per step?

zoo.py finds the converted models whose XLA compile takes over 2 s per input shape. This
compiles each such model's training step (the program zoo.py times, `jaxseq.parity.jax_training`)
once per set of XLA options, from one lowering, and times the compiled programs in paired rounds
(medians of per-round step times; each round runs every program once, in turn):

  - default: XLA's own options;
  - O0: `xla_backend_optimization_level=0` (LLVM's optimisations off), which halves the compile
    time of these programs;
  - no-expensive: `xla_llvm_disable_expensive_passes`.

A faster compile is only worth having if the steps stay as fast (within 5%); the first loss is
compared too (bit for bit).

    python benchmarks/xla_options.py [--only NAME ...] [--rounds 7] [--steps 20]

Writes the table to stdout and to --out (benchmarks/results/xla_options.md).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402 (the corpus setups, as zoo.py builds them)

OPTIONS = {
    "default": None,
    "O0": {"xla_backend_optimization_level": 0},
    "no-expensive": {"xla_llvm_disable_expensive_passes": True},
}
# zoo.py's cells whose compile (trace, lower, XLA) took over 2 s (benchmarks/results/zoo.md)
SLOW = [
    "wlm_transformer.make", "time_sequence.make", "seq2seq_translation.make", "deepspeech_torchaudio.make",
    "lstnet.make", "idioms.make_mha_over_lstm",
]


def programs(name: str, dtype: torch.dtype, batch: int | None):
    """{option name: (compile seconds, compiled step)}, the first state and the batch's arrays."""
    from jaxseq.parity import jax_training

    module, function = name.split(".")
    setup = zoo.load(name, module, function, dtype, batch)
    model = copy.deepcopy(setup["model"])
    optimizer = zoo.fresh_optimizer(setup["optimizer"], model)
    training = jax_training(
        model, setup["batch"], optimizer=optimizer, loss=setup["loss"], clip_grad_norm=setup["clip"]
    )

    def train_step(static, state, arrays):
        state, metrics = training.step(static, state, arrays)
        return state, metrics["loss"]

    arrays, static = training.arrays_of(setup["batch"])
    arrays = jax.device_put(arrays)
    lowered = jax.jit(train_step, static_argnums=0).trace(static, training.state, arrays).lower()
    compiled = {}
    for option, flags in OPTIONS.items():
        start = time.perf_counter()
        program = lowered.compile(compiler_options=flags)
        compiled[option] = (time.perf_counter() - start, program)
    return compiled, training.state, arrays


def measure(compiled, state, arrays, rounds: int, steps: int) -> dict:
    first = {option: float(program(state, arrays)[1]) for option, (_, program) in compiled.items()}
    states = dict.fromkeys(compiled, state)
    times = {option: [] for option in compiled}
    for _ in range(rounds):
        for option, (_, program) in compiled.items():
            s, value = program(states[option], arrays)  # warm
            jax.block_until_ready(value)
            start = time.perf_counter()
            for _ in range(steps):
                s, value = program(s, arrays)
            jax.block_until_ready(value)
            times[option].append((time.perf_counter() - start) / steps)
            states[option] = s
    return {
        option: dict(
            compile_s=compiled[option][0],
            step_ms=1e3 * statistics.median(times[option]),
            # per-round ratio of this option's step time to the default's, median
            slowdown=statistics.median(t / d for t, d in zip(times[option], times["default"], strict=True)),
            same_loss=first[option] == first["default"],
        )
        for option in compiled
    }


def row_line(name, dtype, batch, result) -> str:
    cells = []
    for option, r in result.items():
        cells += [f"{r['compile_s']:.2f}", f"{r['step_ms']:.3f}"]
        if option != "default":
            cells += [f"{r['slowdown']:.2f}x", "yes" if r["same_loss"] else "no"]
    return f"| {name} | {dtype} | {batch} | " + " | ".join(cells) + " |"


HEADER = (
    "| model | dtype | batch | default compile s | default ms/step | "
    + " | ".join(
        f"{o} compile s | {o} ms/step | {o} step time vs default | {o} same first loss"
        for o in OPTIONS
        if o != "default"
    )
    + " |"
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=SLOW, help="corpus ids (module.function)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--batches", nargs="+", default=["corpus", "64"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=str(zoo.ROOT / "benchmarks" / "results" / "xla_options.md"))
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    command = " ".join(["python benchmarks/xla_options.py", *(argv if argv is not None else sys.argv[1:])])
    started = datetime.datetime.now(datetime.UTC)
    lines = [HEADER, "|" + "---|" * (5 + 4 * (len(OPTIONS) - 1))]
    print(HEADER, flush=True)
    results = []
    for name in args.only:
        for batch in args.batches:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                before = torch.get_default_dtype()
                torch.set_default_dtype(dtype)
                try:
                    compiled, state, arrays = programs(name, dtype, None if batch == "corpus" else int(batch))
                    result = measure(compiled, state, arrays, args.rounds, args.steps)
                finally:
                    torch.set_default_dtype(before)
                results.append(result)
                lines.append(row_line(name, dtype_name, batch, result))
                print(lines[-1], flush=True)
    ended = datetime.datetime.now(datetime.UTC)
    summary = []
    for option in OPTIONS:
        if option == "default":
            continue
        faster = [r["default"]["compile_s"] / r[option]["compile_s"] for r in results]
        slower = [r[option]["slowdown"] for r in results]
        same = sum(r[option]["same_loss"] for r in results)
        summary.append(
            f"- {option}: compile {min(faster):.2f}x to {max(faster):.2f}x faster than the default; steps "
            f"{min(slower):.2f}x to {max(slower):.2f}x the default's time (over 1.05x in "
            f"{sum(s > 1.05 for s in slower)} of {len(results)} cells); first loss equal bit for bit in {same}"
        )
    text = "\n".join([
        f"`{command}`", "",
        f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, {os.cpu_count()} CPUs, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}; medians of {args.rounds} paired rounds of {args.steps} steps.", "",
        *summary, "", *lines,
    ]) + "\n"
    Path(args.out).write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
