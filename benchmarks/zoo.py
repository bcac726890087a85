"""How fast does each model of the corpus train in torch and converted to JAX?

For every plain setup of `parity_tests/corpus` (the models `jaxseq check` is tested on), in
float32 and float64, this times one whole training step (forward, loss, backward, optimizer
update) in:
  - torch eager with 1 and with 2 threads;
  - torch.compile of the model (default mode), where its first step compiles within --compile-limit
    seconds (else "over limit");
  - jaxseq: the model converted by `jaxseq.from_torch` and trained by the jitted pure step of
    `jaxseq.parity` (the optax transformation converted from the torch optimizer).
Each round times every peer once, in a rotating order, over --steps steps (so the rounds are
paired); the table gives medians over --rounds rounds, and jaxseq's speed against the fastest
torch peer as the median of the per-round ratios (within 5%: a tie). The first step of each
compiled peer (its compile time for that input shape) is reported apart. Benchmarks do not pin
torch's threads; each torch peer sets its own.

    python benchmarks/zoo.py [--rounds 5] [--steps 20] [--dtypes float32 float64] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import signal
import statistics
import sys
import time
from pathlib import Path

import jax
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the corpus is data for this script, read as files, not a test module


def corpus():
    """[(id, module name, make function name)] of the corpus's plain setups."""
    namespace = {}
    exec((ROOT / "parity_tests" / "corpus" / "__init__.py").read_text(), namespace)
    return [(f"{m}.{f}", m, f) for m, f in namespace["PLAIN"]]


def load(module: str, function: str, dtype: str) -> dict:
    from jaxseq.parity.files import load_setup

    setup = load_setup(f"{ROOT / 'parity_tests' / 'corpus' / (module + '.py')}:{function}")
    cast = torch.float32 if dtype == "float32" else torch.float64
    model = setup["model"].to(cast)
    batches = setup["batches"]
    first = batches if isinstance(batches, tuple) else list(batches)[0]
    first = torch.utils._pytree.tree_map(
        lambda t: t.to(cast) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, tuple(first))
    optimizer = type(setup["optimizer"])(model.parameters(), **_defaults(setup["optimizer"]))
    return dict(model=model, batch=first, optimizer=optimizer, loss=setup.get("loss"), hidden=setup.get("hidden"))


def _defaults(optimizer) -> dict:
    group = optimizer.param_groups[0]
    return {k: v for k, v in group.items() if k != "params" and k in optimizer.defaults}


class TimeLimit(Exception):
    pass


def _within(seconds: float, fn):
    def alarm(*_):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def torch_peer(setup, threads: int, compiled: bool, compile_limit: float):
    """(first step seconds, a function running n steps) for torch, eager or compiled."""
    from jaxseq.parity.check import Loss, _split

    model = copy.deepcopy(setup["model"])
    optimizer = type(setup["optimizer"])(model.parameters(), **_defaults(setup["optimizer"]))
    loss = Loss(setup["loss"])
    inputs, targets = _split(setup["batch"], loss)
    forward = torch.compile(model) if compiled else model

    def steps(n):
        torch.set_num_threads(threads)
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            value = loss.torch(forward(*inputs), targets)
            value.backward()
            optimizer.step()

    start = time.perf_counter()
    _within(compile_limit, lambda: steps(1)) if compiled else steps(1)
    return time.perf_counter() - start, steps


def jax_peer(setup):
    """(first step seconds, a function running n steps) for the converted model's jitted step."""
    parity = importlib.import_module("jaxseq.parity.check")

    model = copy.deepcopy(setup["model"])
    optimizer = type(setup["optimizer"])(model.parameters(), **_defaults(setup["optimizer"]))
    loss = parity.Loss(setup["loss"])
    inputs, targets = parity._split(setup["batch"], loss)
    jax_model = parity._jax_side(model, None, inputs)
    if not loss.own:
        loss.convert(parity._example_prediction(jax_model, inputs, False), targets)
    step_fn, state = parity._jax_training(model, jax_model, optimizer, None, None, loss, None, 10**6)
    arrays, static = parity._flatten(parity._to_numpy(setup["batch"]))
    box = [state]

    def steps(n):
        for _ in range(n):
            box[0], _ = step_fn(static, box[0], arrays)
        jax.block_until_ready(box[0])

    start = time.perf_counter()
    steps(1)
    return time.perf_counter() - start, steps


def measure(name, setup, args) -> dict:
    peers, first, notes = {}, {}, []
    for label, make in [
        ("torch 1 thread", lambda: torch_peer(setup, 1, False, 0)),
        ("torch 2 threads", lambda: torch_peer(setup, 2, False, 0)),
        ("torch.compile", lambda: torch_peer(setup, 2, True, args.compile_limit)),
        ("jaxseq", lambda: jax_peer(setup)),
    ]:
        try:
            first[label], peers[label] = make()
        except TimeLimit:
            notes.append(f"{label}: first step over {args.compile_limit:g} s")
        except Exception as e:  # a peer that cannot run this model: said in the table, not fatal
            notes.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
    times = {label: [] for label in peers}
    order = list(peers)
    for r in range(args.rounds if order else 0):
        for label in order[r % len(order):] + order[: r % len(order)]:
            start = time.perf_counter()
            peers[label](args.steps)
            times[label].append((time.perf_counter() - start) / args.steps)
    torch_labels = [label for label in times if label != "jaxseq"]
    ratio = None
    if "jaxseq" in times and torch_labels:
        best = [min(times[label][r] for label in torch_labels) for r in range(args.rounds)]
        ratio = statistics.median(b / j for b, j in zip(best, times["jaxseq"], strict=True))
    return dict(name=name, median_ms={k: 1e3 * statistics.median(v) for k, v in times.items()},
                first_s=first, ratio=ratio, notes=notes)


def table(rows) -> str:
    peers = ["torch 1 thread", "torch 2 threads", "torch.compile", "jaxseq"]
    lines = ["| model | dtype | " + " | ".join(f"{p} ms/step" for p in peers) + " | jaxseq vs best torch | "
             "compile s (torch.compile, jaxseq) | notes |",
             "|---|---|" + "---|" * (len(peers) + 3)]
    for row in rows:
        cells = [f"{row['median_ms'][p]:.3f}" if p in row["median_ms"] else "-" for p in peers]
        ratio = row["ratio"]
        verdict = "-" if ratio is None else f"{ratio:.2f}x" + (" (tie)" if abs(ratio - 1) < 0.05 else "")
        compile_s = ", ".join(f"{row['first_s'][p]:.2f}" if p in row["first_s"] else "-"
                              for p in ("torch.compile", "jaxseq"))
        lines.append(f"| {row['name']} | {row['dtype']} | " + " | ".join(cells) +
                     f" | {verdict} | {compile_s} | {'; '.join(row['notes'])} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--only", nargs="*", default=None, help="corpus ids (module.function) to run")
    parser.add_argument("--compile-limit", type=float, default=120.0, help="seconds for torch.compile's first step")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    rows = []
    for name, module, function in corpus():
        if args.only and name not in args.only:
            continue
        for dtype in args.dtypes:
            try:
                setup = load(module, function, dtype)
            except Exception as e:  # a setup that does not build in this dtype
                rows.append(dict(name=name, dtype=dtype, median_ms={}, first_s={}, ratio=None,
                                 notes=[f"setup: {type(e).__name__}: {str(e).splitlines()[0][:100]}"]))
                continue
            row = measure(name, setup, args)
            row["dtype"] = dtype
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    print()
    print(f"python benchmarks/zoo.py --rounds {args.rounds} --steps {args.steps} --dtypes {' '.join(args.dtypes)}")
    print(table(rows))


if __name__ == "__main__":
    main()
