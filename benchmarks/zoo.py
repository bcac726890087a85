"""How fast does each model of the corpus train in torch and converted to JAX?

For every plain setup of `parity_tests/corpus` (the models `jaxseq check` is tested on), in
float32 and float64, at the corpus's batch size and at batch 64, this times one whole training
step (forward, loss, backward, gradient clipping where the setup clips, optimizer update) in:
  - torch eager with 1 and with 2 threads;
  - torch.compile of the model (default mode, 2 threads, with dynamo's allow_rnn: by default
    dynamo leaves nn.LSTM/GRU/RNN to eager), where its first step compiles within --compile-limit
    seconds (else the cell says so);
  - jaxseq: the model converted by `jaxseq.from_torch` and trained by `jaxseq.parity`'s pure
    step (the optax transformation converted from the torch optimizer) under `jax.jit`, the state
    donated, as a training loop runs it.
Each round times every peer once, in a rotating order, over --steps steps, so rounds are paired;
the table gives medians over --rounds rounds, and jaxseq against the fastest torch peer of each
round as the median of those per-round ratios (within 5%: a tie). A peer that fails (its compile,
a step) is left out of the cell, with its error in the notes; the run goes on.

Compile time is reported apart, per input shape: torch.compile's first step; jaxseq's conversion
(torch.export and the graph's translation) and its first step (tracing and XLA's compile).

Each cell runs with torch's default dtype set to the cell's, so a model that builds its initial
state with `torch.zeros(...)` builds it in that dtype, as a user running it in that dtype would.
Batch 64 repeats each sequence of the corpus batch along its batch axis (`BATCH_AXES`), so
lengths stay sorted where the model packs sequences.

    python benchmarks/zoo.py [--rounds 5] [--steps 20] [--batches corpus 64] [--only NAME ...]

Writes the table to stdout and to --out (benchmarks/results/zoo.md), rewritten after every cell.
Benchmarks do not pin torch's threads; each torch peer sets its own. With --torch-device cuda
(benchmarks/gpu.sh) the torch peers run on the GPU, where their thread counts change nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import inspect
import math
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import jax
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the corpus is data for this script, read as files, not a test module

DEFAULT_THREADS = torch.get_num_threads()  # before any peer sets its own
PEERS = ("torch 1 thread", "torch 2 threads", "torch.compile", "jaxseq")
TIE = 0.05

# The batch axis of each leaf of a corpus setup's batch (jax.tree order), to build batch 64:
# an int is the leaf's batch axis; "T" a target flattened time-major (T * B,), "B" one flattened
# batch-major (B * T,).
BATCH_AXES = {
    "wlm_rnn.make": (1, 1, 1, "T"),  # ids (T, B), (h, c) (layers, B, H), targets (T * B,)
    "wlm_transformer.make": (1, "T"),
    "time_sequence.make": (0, 0),
    "char_rnn_classification.make": (1, 0),  # letters (T, B, 28), classes (B,)
    "seq2seq_translation.make": (0, 0, "B"),
    "yunjey_rnn.make": (0, 0),
    "yunjey_birnn.make": (0, 0),
    "yunjey_rnnlm.make": (0, 1, 1, "B"),
    "deepspeech_torchaudio.make": (0, 0, 0, 0),
    "algoperf_deepspeech.make": (0, 0, 0, 0),
    "lstnet.make": (0, 0),
    "mnist_rnn.make": (0, 0),
    "idioms.make_zeros_state": (0, 0),
    "idioms.make_masked": (0, 0),
    "idioms.make_lstmcell_loop": (0, 0),
    "idioms.make_conv_bn_bigru": (0, 0),
    "idioms.make_mha_over_lstm": (0, 0),
    "idioms.make_cumsum_where_detach": (0, 0),
}


def corpus():
    """[(id, module name, make function name)] of the corpus's plain setups."""
    namespace = {}
    exec((ROOT / "parity_tests" / "corpus" / "__init__.py").read_text(), namespace)
    return [(f"{m}.{f}", m, f) for m, f in namespace["PLAIN"]]


def resize(batch: tuple, axes: tuple, n: int) -> tuple:
    """`batch` with n sequences: each of its B sequences repeated ceil(n / B) times in place
    (so an order by length is kept), then the first n."""
    leaves, treedef = torch.utils._pytree.tree_flatten(batch)
    assert len(leaves) == len(axes), f"{len(leaves)} leaves, {len(axes)} axes"
    B = next(leaf.shape[axis] for leaf, axis in zip(leaves, axes, strict=True) if isinstance(axis, int))
    times = math.ceil(n / B)

    def grow(t, axis):
        if axis == "T":
            return grow(t.reshape(-1, B), 1).reshape(-1)
        if axis == "B":
            return grow(t.reshape(B, -1), 0).reshape(-1)
        return t.repeat_interleave(times, dim=axis).narrow(axis, 0, n).contiguous()

    return torch.utils._pytree.tree_unflatten([grow(t, a) for t, a in zip(leaves, axes, strict=True)], treedef)


def load(name: str, module: str, function: str, dtype: torch.dtype, batch_size: int | None) -> dict:
    """The setup's model (in `dtype`), its first batch (floating tensors in `dtype`; with
    `batch_size`, resized to it), a fresh optimizer of its class and options, its loss and clipping."""
    from jaxseq.parity.files import load_setup

    setup = load_setup(f"{ROOT / 'parity_tests' / 'corpus' / (module + '.py')}:{function}")
    model = setup["model"].to(dtype)
    batches = setup["batches"]
    first = batches if isinstance(batches, tuple) else list(batches)[0]
    first = torch.utils._pytree.tree_map(
        lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, tuple(first)
    )
    if batch_size is not None:
        first = resize(first, BATCH_AXES[name], batch_size)
    return dict(model=model, batch=first, optimizer=setup["optimizer"], loss=setup.get("loss"),
                clip=setup.get("clip_grad_norm"))


def fresh_optimizer(optimizer, model):
    """A new optimizer of `optimizer`'s class and options over `model`'s parameters (the options its
    constructor takes: AdamW's defaults also hold a `decoupled_weight_decay` it does not take)."""
    group = optimizer.param_groups[0]
    takes = inspect.signature(type(optimizer)).parameters
    options = {k: v for k, v in group.items() if k != "params" and k in optimizer.defaults and k in takes}
    return type(optimizer)(model.parameters(), **options)


class TimeLimit(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raises TimeLimit in the block after `seconds` (None: no limit)."""
    if seconds is None:
        yield
        return

    def alarm(*_):
        raise TimeLimit

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def torch_peer(setup, threads: int, compiled: bool, limit: float | None):
    """(compile seconds or None, a function running n steps): torch eager or torch.compile'd."""
    from jaxseq.parity.check import Loss

    device = torch.device(setup["torch_device"])
    model = copy.deepcopy(setup["model"]).to(device)
    optimizer = fresh_optimizer(setup["optimizer"], model)
    loss = Loss(setup["loss"])
    batch = torch.utils._pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, setup["batch"])
    inputs, targets = loss.split(batch)
    if compiled:
        torch._dynamo.config.allow_rnn = True  # else dynamo leaves nn.LSTM/GRU/RNN to eager (a graph break)
    forward = torch.compile(model) if compiled else model
    clip = setup["clip"]

    def steps(n):
        torch.set_num_threads(threads)
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            value = loss.torch(forward(*inputs), targets)
            value.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    with time_limit(limit if compiled else None):
        steps(1)
    return (time.perf_counter() - start if compiled else None), steps


def jax_peer(setup):
    """((conversion seconds, trace and lowering seconds, XLA compile seconds), a function running n
    steps): the converted model's step as `jaxseq check` runs it, jitted with its state donated and
    only the loss out."""
    from jaxseq.parity import jax_training

    model = copy.deepcopy(setup["model"])
    optimizer = fresh_optimizer(setup["optimizer"], model)
    start = time.perf_counter()
    training = jax_training(
        model, setup["batch"], optimizer=optimizer, loss=setup["loss"], clip_grad_norm=setup["clip"]
    )
    convert_seconds = time.perf_counter() - start
    state = training.state

    def train_step(static, state, arrays):  # check's step returns outputs and gradients too: only the loss here
        state, metrics = training.step(static, state, arrays)
        return state, metrics["loss"]

    arrays, static = training.arrays_of(setup["batch"])
    arrays = jax.device_put(arrays)
    start = time.perf_counter()
    lowered = jax.jit(train_step, static_argnums=0, donate_argnums=1).trace(static, state, arrays).lower()
    traced = time.perf_counter()
    compiled = lowered.compile()
    seconds = (convert_seconds, traced - start, time.perf_counter() - traced)
    box = [state]

    def steps(n):
        for _ in range(n):
            box[0], value = compiled(box[0], arrays)
        jax.block_until_ready(value)

    steps(1)
    return seconds, steps


def note(label: str, e: BaseException) -> str:
    if isinstance(e, TimeLimit):
        return f"{label}: first step over the limit"
    first = str(e).splitlines()[0][:140] if str(e) else ""
    return f"{label}: {type(e).__name__}: {first}"


def measure(setup, args) -> dict:
    """Paired rounds of every peer that runs: medians (ms/step), compile times, per-round ratios."""
    makers = {
        "torch 1 thread": lambda: torch_peer(setup, 1, False, None),
        "torch 2 threads": lambda: torch_peer(setup, 2, False, None),
        "torch.compile": lambda: torch_peer(setup, 2, True, args.compile_limit),
        "jaxseq": lambda: jax_peer(setup),
    }
    peers, compile_s, notes = {}, {}, []
    for label, make in makers.items():
        if label not in args.peers and label != "torch 1 thread":
            continue
        try:
            compile_s[label], peers[label] = make()
        except Exception as e:  # a peer that cannot run this model: said in the table, not fatal
            if label == "torch 1 thread":  # the model as written does not train in this dtype or size
                return dict(median_ms={}, compile_s={}, ratios=[], notes=[note("torch", e)])
            notes.append(note(label, e))
    times = {label: [] for label in peers}
    for r in range(args.rounds):
        order = list(peers)
        for label in order[r % len(order):] + order[: r % len(order)] if order else []:
            start = time.perf_counter()
            try:
                peers[label](args.steps)
            except Exception as e:  # fails after its first step (a recompile, say): dropped from the cell
                notes.append(note(label, e))
                del peers[label], times[label]
                continue
            times[label].append((time.perf_counter() - start) / args.steps)
    for label in list(times):  # a peer dropped in a later round keeps no partial rounds
        if len(times[label]) != args.rounds:
            del times[label]
    torch_labels = [label for label in times if label != "jaxseq"]
    ratios = []
    if "jaxseq" in times and torch_labels:
        ratios = [min(times[t][r] for t in torch_labels) / times["jaxseq"][r] for r in range(args.rounds)]
    return dict(median_ms={k: 1e3 * statistics.median(v) for k, v in times.items()}, compile_s=compile_s,
                ratios=ratios, notes=notes)


def verdict(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    ratio = statistics.median(ratios)
    return f"{ratio:.2f}x" + (" (tie)" if abs(ratio - 1) < TIE else "")


HEADER = (
    "| model | dtype | batch | " + " | ".join(f"{p} ms" for p in PEERS)
    + " | jaxseq vs best torch | torch.compile compile s | jaxseq convert s | jaxseq trace s | XLA compile s | notes |"
)


def row_line(row) -> str:
    cells = [f"{row['median_ms'][p]:.3f}" if p in row["median_ms"] else "-" for p in PEERS]
    jax_compile = row["compile_s"].get("jaxseq") or ("-",) * 3
    compiled = row["compile_s"].get("torch.compile")
    extra = [f"{compiled:.1f}" if compiled is not None else "-", *(_seconds(t) for t in jax_compile)]
    return (f"| {row['name']} | {row['dtype']} | {row['batch']} | " + " | ".join(cells)
            + f" | {verdict(row['ratios'])} | " + " | ".join(extra) + f" | {'; '.join(row['notes'])} |")


def _seconds(t) -> str:
    return t if isinstance(t, str) else f"{t:.2f}"


def summary(rows) -> list[str]:
    """The goals, counted over the cells where jaxseq and a torch peer both ran."""
    both = [r for r in rows if r["ratios"]]
    if not both:
        return ["no cell ran in both jaxseq and torch"]
    medians = [statistics.median(r["ratios"]) for r in both]
    faster = sum(m >= 1 + TIE for m in medians)
    ties = sum(abs(m - 1) < TIE for m in medians)
    compiles = [r["compile_s"]["jaxseq"] for r in both]  # (convert, trace and lower, XLA compile)
    first = [c[1] + c[2] for c in compiles]
    over = [f"{r['name']} {r['dtype']} b{r['batch']}" for r, f in zip(both, first, strict=True) if f > 2.0]
    return [
        f"cells measured in both: {len(both)} of {len(rows)}; jaxseq faster than torch's best in {faster}, "
        f"a tie in {ties}, slower in {len(both) - faster - ties}; ratios {min(medians):.2f}x to {max(medians):.2f}x "
        f"(median {statistics.median(medians):.2f}x)",
        f"jaxseq compile per input shape (trace and lower, then XLA) {min(first):.2f} s to {max(first):.2f} s, "
        f"over 2 s in {len(over)} cells; of it, trace and lower (ours) {min(c[1] for c in compiles):.2f} s to "
        f"{max(c[1] for c in compiles):.2f} s, XLA's compile {min(c[2] for c in compiles):.2f} s to "
        f"{max(c[2] for c in compiles):.2f} s",
        f"jaxseq conversion (torch.export and translation; once per model, again for a new rank) {min(c[0] for c in compiles):.2f} s to "
        f"{max(c[0] for c in compiles):.2f} s",
        "compile over 2 s: " + (", ".join(over) or "none"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--batches", nargs="+", default=["corpus", "64"], help="corpus (its own size) and/or numbers")
    parser.add_argument("--only", nargs="*", default=None, help="corpus ids (module.function) to run")
    parser.add_argument("--compile-limit", type=float, default=120.0, help="seconds for torch.compile's first step")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS, metavar="PEER",
                        help="peers to time (torch 1 thread always runs): " + ", ".join(map(repr, PEERS)))
    parser.add_argument("--torch-device", default="cpu", help="where the torch peers run (cpu, cuda)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "zoo.md"), help="markdown file to write")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    # float32 matmuls in full precision, as torch's by default (on a GPU, JAX's default may use TF32)
    jax.config.update("jax_default_matmul_precision", "highest")
    command = "python benchmarks/zoo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = datetime.datetime.now(datetime.UTC)
    rows = []
    print(HEADER, flush=True)
    for name, module, function in corpus():
        if args.only and name not in args.only:
            continue
        for batch in args.batches:
            for dtype_name in args.dtypes:
                dtype = getattr(torch, dtype_name)
                before = torch.get_default_dtype()
                torch.set_default_dtype(dtype)
                try:
                    setup = load(name, module, function, dtype, None if batch == "corpus" else int(batch))
                    setup["torch_device"] = args.torch_device
                    size = len(setup["batch"][0]) if BATCH_AXES[name][0] == 0 else setup["batch"][0].shape[1]
                    row = dict(name=name, dtype=dtype_name, batch=size) | measure(setup, args)
                except Exception as e:  # a setup that does not build in this dtype or size
                    row = dict(name=name, dtype=dtype_name, batch=batch, median_ms={}, compile_s={}, ratios=[],
                               notes=[note("setup", e)])
                finally:
                    torch.set_default_dtype(before)
                    torch._dynamo.reset()
                rows.append(row)
                print(row_line(row), flush=True)
                write(args.out, command, started, rows, args, done=False)  # a run cut short keeps its rows
    print()
    print(write(args.out, command, started, rows, args, done=True))


def write(path, command: str, started, rows, args, *, done: bool) -> str:
    ended = datetime.datetime.now(datetime.UTC)
    where = f"torch on {args.torch_device}, jax on {jax.devices()[0].platform}"
    if os.environ.get("XLA_FLAGS"):
        where += f", XLA_FLAGS={os.environ['XLA_FLAGS']}"
    lines = [
        f"`{command}`" + ("" if done else " (still running, or cut short)"),
        "",
        f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({DEFAULT_THREADS} threads by default), jax {jax.__version__}, {where}; "
        f"medians of {args.rounds} paired rounds of {args.steps} steps.",
        "",
        *(f"- {line}" for line in summary(rows)),
        "",
        HEADER,
        "|" + "---|" * (len(PEERS) + 9),
        *map(row_line, rows),
    ]
    text = "\n".join(lines) + "\n"
    Path(path).write_text(text)
    return text


if __name__ == "__main__":
    main()
