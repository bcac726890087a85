"""Training throughput of jaxseq against what a user would pick instead, measured side by side.

    python benchmarks/peers.py                      # every cell: the LSTM matrix and the variants
    python benchmarks/peers.py --cells seed         # batch 1, hidden 100, length 21, float32 and float64
    python benchmarks/peers.py --quick              # --cells seed,batch64 --repeats 3 --seconds 0.5
    python benchmarks/peers.py --cell gru,64,100,21,float32 --peers jaxseq,flax

The peers (`PEERS`), each timed on the same random batch with Adam (lr 1e-3) and the seed's loss
(per-step MSE summed over time):

- jaxseq: `jaxseq.app.training.train_chunk`, compiled as `jaxseq.train` compiles it (`prepare`,
  `init_model`, `static_args`), `chunk` steps per call.
- flax: stock Flax NNX as its user would write it: `nnx.RNN(nnx.OptimizedLSTMCell)` (one bias;
  `nnx.GRUCell` for a GRU; `nnx.Bidirectional`; one `nnx.RNN` per layer) and `nnx.Linear`,
  `optax.adam`, the same `chunk` steps in one jitted `lax.scan`.
- scan: torch's two-bias cell written plainly (`x W_ih^T + b_ih + h W_hh^T + b_hh` each step),
  autodiff through `lax.scan`, `optax.adam`, `chunk` steps in one jitted `lax.scan`.
- torch1, torch2: `torchseq.train.train` (nn.LSTM/GRU + nn.Linear, torch.optim.Adam, eager) with
  1 and 2 intra-op threads. The ratio against torch is taken against the faster of the two. The
  tables say per cell what ran torch's recurrent layer (`TorchPeer.recurrent_kernel`): oneDNN's
  fused RNN primitive, or separate ATen ops per time step.
- compile: the same with `torch.compile(model)` (inductor; Adam stays eager), at the thread count
  faster eager in that cell: with Dynamo's experimental `allow_rnn=True` where that runs, else the
  default, under which nn.LSTM/GRU is a graph break and runs eager (the table says which). Once
  compiling with `allow_rnn` takes over --compile-limit, that cell and the model's later cells use
  the default; compile is skipped, with the reason, where compiling fails, or for the rest of the
  run once the default too takes over the limit.

Each thread setting runs in its own long-lived worker process (`--worker KIND`, as
benchmarks/matrix.py): one JAX worker per dtype (float64 switches JAX's x64 mode on for the
whole process; float32 runs without it, as a float32 user would), one torch worker per thread
count, one for torch.compile. Per cell every peer is compiled and warmed up, its step count set
from one timed call for about --seconds, then the peers are timed in turn (interleaved),
--repeats times; medians are reported, in ms per step. JAX is timed after compilation, blocking
on each call's losses. Writes benchmarks/results/<name>-<peer>.md and .json (one table per peer,
ratio = peer ms / jaxseq ms, > 1: jaxseq faster) and <name>.md/.json (all peers side by side),
rewritten after every cell (a run stopped early says so in them). At the seed's size (LSTM,
batch 1, hidden 100, length 21) the JAX worker also times that size's floor in its dtype
(`seed.floor_seconds`: the parts of a step no implementation can skip, each alone), and the
torch workers the same parts in torch (`seed.torch_floor_seconds`); with --floors all, at every
one-layer LSTM cell. The summary gives jaxseq's step and the fastest other peer's as multiples of
XLA's floor: where that peer's whole step is below 1x, it is shorter than XLA's own products and
Adam, each timed alone in the layout jaxseq uses. A floor that fails (not finite, out of memory)
leaves its cell without one, with the reason.

The machine is shared and noisy, so besides the medians the tables give per cell the rounds
(one interleaved run of every peer) in which jaxseq was the fastest, and list each lost cell with
its paired per-round ratios: lost in every round, or only by the median.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import itertools
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import BATCHES, DTYPES, HIDDENS, LENGTHS, RESULTS, SEED_CELL, default_chunk, random_batch  # noqa: E402

from jaxseq.app.options import positive_int  # noqa: E402
from jaxseq.files import write_text  # noqa: E402

# model name -> (cell, layers, bidirectional)
MODELS = {
    "lstm": ("lstm", 1, False),
    "gru": ("gru", 1, False),
    "lstm2": ("lstm", 2, False),
    "bilstm": ("lstm", 1, True),
}
PEERS = ("jaxseq", "flax", "scan", "torch1", "torch2", "compile")
WORKER_OF = {
    "jaxseq": "jax",
    "flax": "jax",
    "scan": "jax",
    "torch1": "torch-1",
    "torch2": "torch-2",
    "compile": "compile",
}
VARIANT_SIZES = ((1, 100, 21), (64, 100, 21))  # the seed's size and batch 64
GROUPS = {
    "seed": [("lstm", 1, 100, 21, d) for d in DTYPES],
    "batch64": [("lstm", 64, 256, 21, d) for d in DTYPES],
    "matrix": [("lstm", *c) for c in itertools.product(BATCHES, HIDDENS, LENGTHS, DTYPES)],
    "variants": [(m, *s, d) for m in ("gru", "lstm2", "bilstm") for s in VARIANT_SIZES for d in DTYPES],
}
GROUPS["all"] = GROUPS["matrix"] + GROUPS["variants"]


# ----------------------------------------------------------------------------- JAX peers


class JaxPeer:
    """A compiled program of `chunk` training steps; `run(steps)` calls it steps // chunk times."""

    chunk: int

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps // self.chunk):
            self.state, losses = self.call(self.state)
            losses.block_until_ready()
        return time.perf_counter() - start


class JaxseqPeer(JaxPeer):
    def __init__(self, model, batch, hidden, length, dtype, chunk):
        import jax.numpy as jnp
        from flax import nnx

        from jaxseq.app.config import TrainConfig
        from jaxseq.app.data import Sequences
        from jaxseq.app.task import data_key
        from jaxseq.app.training import TrainState, compile_timed, init_model, prepare, static_args, train_chunk

        cell, layers, bidirectional = MODELS[model]
        config = TrainConfig(
            hidden=hidden,
            cell=cell,
            layers=layers,
            bidirectional=bidirectional,
            length=length,
            dtype=dtype,
            chunk=chunk,
        )
        data, tx = prepare(config, random_batch(batch, length, dtype))
        data = Sequences(jnp.asarray(data.x), jnp.asarray(data.y), None)
        graphdef, params = nnx.split(init_model(config))
        key = data_key(0)  # unused: every step sees the whole batch
        self.chunk, self.state = chunk, TrainState(params, tx.init(params))
        static = static_args(config, graphdef, tx, chunk)
        self.compiled, self.compile_seconds = compile_timed(train_chunk, self.state, data, key, 0, chunk, **static)
        self.call = lambda state: self.compiled(state, data, key, 0, chunk)


def adam_chunk(value_and_grad, chunk: int):
    """`chunk` optax.adam(1e-3) steps in one jitted `lax.scan`, with `value_and_grad(params, rest,
    x, y) -> (loss, grads, new rest)` (rest: the model's other state, e.g. Flax's RNG counts):
    ((params, opt_state, rest), x, y) -> ((params, opt_state, rest), losses_chunk)."""
    import jax
    import optax

    tx = optax.adam(1e-3)

    def run(state, x, y):
        def step(state, _):
            params, opt_state, rest = state
            loss, grads, rest = value_and_grad(params, rest, x, y)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, rest), loss

        return jax.lax.scan(step, state, None, length=chunk)

    return tx, jax.jit(run, donate_argnums=0)


def sum_mse(pred_BxTxO, y_BxTxO):
    import jax.numpy as jnp

    return jnp.sum(jnp.mean(jnp.square(pred_BxTxO - y_BxTxO), axis=(0, 2)))


class ScannedPeer(JaxPeer):
    """`adam_chunk` compiled for a loss and its initial (params, rest)."""

    def setup(self, value_and_grad, params, rest, batch, length, dtype, chunk):
        import jax.numpy as jnp

        x, y = (jnp.asarray(a) for a in random_batch(batch, length, dtype))
        tx, jitted = adam_chunk(value_and_grad, chunk)
        self.chunk, self.state = chunk, (params, tx.init(params), rest)
        start = time.perf_counter()
        self.compiled = jitted.lower(self.state, x, y).compile()
        self.compile_seconds = time.perf_counter() - start
        self.call = lambda state: self.compiled(state, x, y)


class FlaxModel:
    """Stock Flax NNX layers, one `nnx.RNN` (or `nnx.Bidirectional`) per layer, then `nnx.Linear`."""

    @staticmethod
    def build(model, hidden, dtype, seed=0):
        from flax import nnx

        cell, layers, bidirectional = MODELS[model]
        Cell = nnx.OptimizedLSTMCell if cell == "lstm" else nnx.GRUCell
        rngs = nnx.Rngs(seed)
        D = 2 if bidirectional else 1

        def rnn(features):
            return nnx.RNN(Cell(features, hidden, param_dtype=dtype, rngs=rngs), rngs=rngs)

        class Net(nnx.Module):
            def __init__(self):
                features = [1] + [hidden * D] * (layers - 1)
                self.layers = nnx.List(
                    [nnx.Bidirectional(rnn(f), rnn(f), rngs=rngs) if bidirectional else rnn(f) for f in features]
                )
                self.head = nnx.Linear(hidden * D, 1, param_dtype=dtype, rngs=rngs)

            def __call__(self, x_BxTxF):
                for layer in self.layers:
                    x_BxTxF = layer(x_BxTxF)
                return self.head(x_BxTxF)

        return Net()


class FlaxPeer(ScannedPeer):
    def __init__(self, model, batch, hidden, length, dtype, chunk):
        import jax.numpy as jnp
        from flax import nnx

        graphdef, params, rest = nnx.split(FlaxModel.build(model, hidden, jnp.dtype(dtype)), nnx.Param, ...)

        def value_and_grad(params, rest, x, y):
            net = nnx.merge(graphdef, params, rest)
            loss, grads = nnx.value_and_grad(lambda net: sum_mse(net(x), y))(net)
            return loss, grads, nnx.state(net, nnx.Not(nnx.Param))

        self.setup(value_and_grad, params, rest, batch, length, dtype, chunk)


def scan_params(model, hidden, dtype, seed=0) -> dict:
    """torch's parameters ({"l0d0": {w_ih, w_hh, b_ih, b_hh}, ..., "head": {w, b}}), uniform in
    ±1/sqrt(H) as torch draws them (JAX's random numbers)."""
    import jax

    cell, layers, bidirectional = MODELS[model]
    G, D = (4 if cell == "lstm" else 3) * hidden, 2 if bidirectional else 1
    keys = iter(jax.random.split(jax.random.key(seed), 4 * layers * D + 2))

    def uniform(*shape, fan=hidden):
        bound = fan**-0.5
        return jax.random.uniform(next(keys), shape, dtype, -bound, bound)

    params = {
        f"l{l}d{d}": dict(
            w_ih=uniform(G, 1 if l == 0 else D * hidden),
            w_hh=uniform(G, hidden),
            b_ih=uniform(G),
            b_hh=uniform(G),
        )
        for l in range(layers)
        for d in range(D)
    }
    params["head"] = dict(w=uniform(1, D * hidden, fan=D * hidden), b=uniform(1, fan=D * hidden))
    return params


def scan_forward(params, x_BxTxI, cell: str, layers: int, directions: int):
    """torch.nn.LSTM/GRU (batch_first) + nn.Linear, each cell step written out, one `lax.scan` per direction."""
    import jax
    import jax.numpy as jnp

    def lstm_step(p, carry, x_BxF):
        h, c = carry
        gates = x_BxF @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"]
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru_step(p, h, x_BxF):
        x_r, x_z, x_n = jnp.split(x_BxF @ p["w_ih"].T + p["b_ih"], 3, axis=-1)
        h_r, h_z, h_n = jnp.split(h @ p["w_hh"].T + p["b_hh"], 3, axis=-1)
        r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h
        return h, h

    x_TxBxF = jnp.swapaxes(x_BxTxI, 0, 1)
    B = x_TxBxF.shape[1]
    for l in range(layers):
        outs = []
        for d in range(directions):
            p = params[f"l{l}d{d}"]
            h0 = jnp.zeros((B, p["w_hh"].shape[1]), x_TxBxF.dtype)
            step = lstm_step if cell == "lstm" else gru_step
            xs = x_TxBxF if d == 0 else x_TxBxF[::-1]
            _, out_TxBxH = jax.lax.scan(functools.partial(step, p), (h0, h0) if cell == "lstm" else h0, xs)
            outs.append(out_TxBxH if d == 0 else out_TxBxH[::-1])
        x_TxBxF = jnp.concatenate(outs, axis=-1)
    return jnp.swapaxes(x_TxBxF @ params["head"]["w"].T + params["head"]["b"], 0, 1)


class ScanPeer(ScannedPeer):
    def __init__(self, model, batch, hidden, length, dtype, chunk):
        import jax

        cell, layers, bidirectional = MODELS[model]

        def loss_fn(params, x, y):
            return sum_mse(scan_forward(params, x, cell, layers, 2 if bidirectional else 1), y)

        def value_and_grad(params, rest, x, y):
            return *jax.value_and_grad(loss_fn)(params, x, y), rest

        self.setup(value_and_grad, scan_params(model, hidden, dtype), None, batch, length, dtype, chunk)


# ----------------------------------------------------------------------------- torch peers


class TorchPeer:
    """`torchseq.train.train` on the random batch, eager or with `torch.compile(model)`."""

    def __init__(self, model, batch, hidden, length, dtype, chunk, compiled=False, allow_rnn=True, why=None):
        from jaxseq.app.config import TrainConfig
        from torchseq.model import build_model

        cell, layers, bidirectional = MODELS[model]
        self.config = TrainConfig(
            hidden=hidden, cell=cell, layers=layers, bidirectional=bidirectional, length=length, dtype=dtype
        )
        self.model = build_model(hidden, 0, dtype, cell=cell, layers=layers, bidirectional=bidirectional)
        self.batch = random_batch(batch, length, dtype)
        self.compile_seconds = None
        self.note = None
        if compiled:
            start = time.perf_counter()
            self.note = self.compile_model(allow_rnn, why)
            self.compile_seconds = time.perf_counter() - start  # Dynamo and inductor, and one step
        else:
            self.note = self.recurrent_kernel()

    def recurrent_kernel(self) -> str:
        """What ran the recurrent layer in one training step, from torch's profiler: on the CPU torch
        sends some layers (here: LSTMs in float32) to oneDNN's fused RNN primitive, forward and
        backward, and runs the others as separate ATen ops per time step."""
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            self.run(1)
        if any(e.name == "aten::mkldnn_rnn_layer" for e in profile.events()):
            return "the recurrent layer is oneDNN's fused RNN (aten::mkldnn_rnn_layer and its backward)"
        return "the recurrent layer is separate ATen ops per time step (no fused RNN kernel)"

    def compile_model(self, allow_rnn: bool, why: str | None) -> str:
        """Wraps the model in `torch.compile`: first (if `allow_rnn`) with Dynamo's experimental
        `allow_rnn` (without it the recurrent layer is a graph break and runs eager); if that fails
        on the first step, or is not tried (`why`), the default. Returns what ran, and why."""
        import torch

        eager = self.model
        failure = f"allow_rnn=True not tried: {why}"
        if allow_rnn:
            torch._dynamo.reset()  # each cell compiles afresh, not against the last one's cache limit
            torch._dynamo.config.allow_rnn = True
            self.model = torch.compile(eager)
            try:
                self.run(1)
                return "allow_rnn=True: the recurrent layer compiled"
            except Exception as e:
                failure = f"allow_rnn=True failed: {one_line(e)[:200]}"
        torch._dynamo.reset()
        torch._dynamo.config.allow_rnn = False
        self.model = torch.compile(eager)
        self.run(1)
        return f"default: the recurrent layer is a graph break and runs eager ({failure})"

    def run(self, steps: int) -> float:
        from torchseq.train import train

        start = time.perf_counter()
        train(self.config.replace(steps=steps), model=self.model, batch=self.batch)
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- workers


def one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


def worker_settings(kind: str) -> dict:
    if kind.startswith("jax"):
        import jax

        return {
            "jax": jax.__version__,
            "x64": bool(jax.config.jax_enable_x64),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "device": str(jax.devices()[0]),
        }
    import torch

    return {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def worker(kind: str) -> None:
    """Serves one JSON request per stdin line on the real stdout (libraries' prints go to stderr):
    {"build": peer, "cell": [...], "chunk": n[, "threads": n, "allow_rnn": bool, "why": text]}
    compiles and warms up a peer,
    {"run": peer, "steps": n} times it, {"floor": repeats, "cell": [B, H, T], "dtype": d} times an
    LSTM step's floor at that size (`seed.floor_seconds` in a JAX worker, `seed.torch_floor_seconds`
    in a torch worker, at its thread count); one JSON line answers each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C or a time limit stops the parent, which ends us
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if kind == "jax-float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    elif kind.startswith("torch-"):
        import torch

        torch.set_num_threads(int(kind.removeprefix("torch-")))
    classes = {"jaxseq": JaxseqPeer, "flax": FlaxPeer, "scan": ScanPeer, "torch1": TorchPeer, "torch2": TorchPeer}
    print(json.dumps(worker_settings(kind)), file=answer, flush=True)
    peers = {}
    for line in sys.stdin:
        request = json.loads(line)
        if "floor" in request:
            from seed import floor_seconds, torch_floor_seconds

            timer = floor_seconds if kind.startswith("jax") else torch_floor_seconds
            try:
                floor = timer(request["floor"], request["dtype"], tuple(request["cell"]))
            except (FloatingPointError, MemoryError) as e:
                floor = {"error": one_line(e)}
            print(json.dumps(floor), file=answer, flush=True)
        elif "build" in request:
            name = request["build"]
            try:
                if name == "compile":
                    import torch

                    torch.set_num_threads(request["threads"])
                    peer = TorchPeer(
                        *request["cell"],
                        request["chunk"],
                        compiled=True,
                        allow_rnn=request["allow_rnn"],
                        why=request.get("why"),
                    )
                else:
                    peer = classes[name](*request["cell"], request["chunk"])
                warm = peer.run(request["chunk"])
            except Exception as e:  # a peer that cannot run here is skipped, with the reason
                print(json.dumps({"error": one_line(e)[:300]}), file=answer, flush=True)
                continue
            peers[name] = peer
            built = {"compile_seconds": peer.compile_seconds, "warmup_seconds": warm}
            if getattr(peer, "note", None):
                built["note"] = peer.note
            print(json.dumps(built), file=answer, flush=True)
        else:
            print(json.dumps({"seconds": peers[request["run"]].run(request["steps"])}), file=answer, flush=True)


class Worker:
    def __init__(self, kind: str):
        self.kind = kind
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.settings = self.ask(None)

    def ask(self, request, timeout: float | None = None):
        """The worker's answer to `request`; TimeoutError (the worker killed) after `timeout` seconds."""
        if request is not None:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        if timeout is not None and not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.close(kill=True)
            raise TimeoutError
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.kind} exited (status {self.proc.wait()})")
        return json.loads(line)

    def close(self, kill: bool = False):
        if kill:
            self.proc.kill()
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        self.proc.wait()


class Workers(dict):
    """Workers by kind, started on first use, ended with the block (at once on Ctrl-C)."""

    def __missing__(self, kind):
        self[kind] = Worker(kind)
        return self[kind]

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        for w in self.values():
            w.close(kill=kind is KeyboardInterrupt)


# ----------------------------------------------------------------------------- parent


def measure_cell(workers, cell, peers, args, skip_compile: dict) -> dict:
    """Interleaved timings of every peer on one cell: {"peers": {name: result or {"skipped": why}}, ...}."""
    model, batch, hidden, length, dtype = cell
    chunk = default_chunk(batch, hidden, length)
    result = dict(model=model, batch=batch, hidden=hidden, length=length, dtype=dtype, chunk=chunk, peers={})

    def worker_of(name):
        kind = WORKER_OF[name]
        return workers[f"jax-{dtype}" if kind == "jax" else kind]

    def build(name, **extra):
        """Compiles and warms up peer `name`, and sets its steps per timed run from one probe.
        Returns its seconds per step; None if it was skipped (the reason in `result`); "timeout"
        if compiling took over --compile-limit (its worker killed)."""
        try:
            limit = args.compile_limit if name == "compile" else None
            answer = worker_of(name).ask({"build": name, "cell": list(cell), "chunk": chunk, **extra}, limit)
        except TimeoutError:
            del workers["compile"]
            result["peers"][name] = {"skipped": f"compiling took over {args.compile_limit:.0f} s"}
            return "timeout"
        if "error" in answer:
            result["peers"][name] = {"skipped": answer["error"]}
            return None
        # JAX runs whole compiled calls of `chunk` steps; torch any number of steps
        unit = chunk if WORKER_OF[name] == "jax" else 1
        probe = chunk if unit > 1 else max(1, chunk // 10)
        seconds_per_step = worker_of(name).ask({"run": name, "steps": probe})["seconds"] / probe
        steps = max(unit, round(args.seconds / seconds_per_step / unit) * unit)
        result["peers"][name] = dict(answer, steps=steps, all_ms=[])
        return seconds_per_step

    per_step = {name: build(name) for name in peers if name != "compile"}
    if "compile" in peers:
        if skip_compile.get("reason"):
            result["peers"]["compile"] = {"skipped": skip_compile["reason"]}
        else:
            # the faster eager thread count: medians of 3 short interleaved probes each
            probes = {n: [per_step[f"torch{n}"]] for n in (1, 2) if per_step.get(f"torch{n}")}
            for _ in range(2):
                for n in probes:
                    probe = max(1, chunk // 10)
                    probes[n].append(
                        worker_of(f"torch{n}").ask({"run": f"torch{n}", "steps": probe})["seconds"] / probe
                    )
            threads = min(probes, key=lambda n: statistics.median(probes[n])) if probes else 1
            # allow_rnn until compiling with it (and its fallback) once takes over --compile-limit
            # for this model (its longer cells would take longer), then the default; no compile at
            # all once that too takes over the limit
            slow = skip_compile.setdefault("allow_rnn", {})  # model -> why allow_rnn is not tried
            outcome = "not tried" if model in slow else build("compile", threads=threads, allow_rnn=True)
            if outcome == "timeout":
                slow[model] = f"compiling with it took over {args.compile_limit:.0f} s at {cell_label(cell)}"
            if outcome in ("timeout", "not tried"):
                if build("compile", threads=threads, allow_rnn=False, why=slow[model]) == "timeout":
                    skip_compile["reason"] = f"compiling took over {args.compile_limit:.0f} s (cell {cell_label(cell)})"
            if "steps" in result["peers"]["compile"]:
                result["peers"]["compile"]["threads"] = threads
    timed = [name for name in peers if "steps" in result["peers"][name]]
    for _ in range(args.repeats):
        for name in timed:  # interleaved
            steps = result["peers"][name]["steps"]
            seconds = worker_of(name).ask({"run": name, "steps": steps})["seconds"]
            result["peers"][name]["all_ms"].append(seconds / steps * 1e3)
    for name in timed:
        result["peers"][name]["ms"] = statistics.median(result["peers"][name]["all_ms"])
    seed_size = (model, batch, hidden, length) == ("lstm", *SEED_CELL[:3])
    wanted = {"all": model == "lstm", "seed": seed_size, "none": False}[args.floors]
    if wanted and "steps" in result["peers"]["jaxseq"]:
        result.update(floors(worker_of, [batch, hidden, length], dtype, peers, args.repeats))
    result["load_average"] = os.getloadavg()[0]  # other work on the machine, at the cell's end
    return result


def floors(worker_of, size: list, dtype: str, peers: list, repeats: int) -> dict:
    """An LSTM step's floor at `size` (B, H, T), ms per part: {"floor_ms": XLA's (the JAX worker),
    "torch_floor_ms": {threads: torch's} (each torch worker timed, only once XLA's ran)}, with
    "floor_error": the first failure's reason. Nothing off the CPU, where XLA's floor is None."""
    request = {"floor": repeats, "cell": size, "dtype": dtype}
    answers = {"jax": worker_of("jaxseq").ask(request)}
    if answers["jax"] is None:
        return {}
    if "error" not in answers["jax"]:
        answers |= {str(n): worker_of(f"torch{n}").ask(request) for n in (1, 2) if f"torch{n}" in peers}
    timed = {k: {part: s * 1e3 for part, s in a.items()} for k, a in answers.items() if "error" not in a}
    result = {"floor_ms": timed.pop("jax")} if "jax" in timed else {}
    if timed:
        result["torch_floor_ms"] = timed
    errors = [a["error"] for a in answers.values() if "error" in a]
    return result | ({"floor_error": errors[0]} if errors else {})


def cell_label(cell) -> str:
    model, batch, hidden, length, dtype = cell
    return f"{model} B={batch} H={hidden} T={length} {dtype}"


def ms(cell: dict, name: str):
    return cell["peers"].get(name, {}).get("ms")


def ratio_text(jaxseq_ms, peer_ms) -> str:
    """peer / jaxseq, bold: jaxseq faster (> 1) or slower."""
    return "-" if jaxseq_ms is None or peer_ms is None else f"**{peer_ms / jaxseq_ms:.2f}x**"


def fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def best_torch(cell: dict):
    eager = [m for m in (ms(cell, "torch1"), ms(cell, "torch2")) if m is not None]
    return min(eager) if eager else None


PEER_TABLES = {  # peer table -> (title, its columns: (header, cell -> text))
    "flax": (
        "stock Flax NNX (nnx.RNN(nnx.OptimizedLSTMCell / nnx.GRUCell) + nnx.Linear, optax.adam, loop in lax.scan)",
        [("flax ms", lambda c: fmt(ms(c, "flax"))), ("ratio", lambda c: ratio_text(ms(c, "jaxseq"), ms(c, "flax")))],
    ),
    "scan": (
        "the two-bias cell written plainly, autodiff through lax.scan, optax.adam, loop in lax.scan",
        [("scan ms", lambda c: fmt(ms(c, "scan"))), ("ratio", lambda c: ratio_text(ms(c, "jaxseq"), ms(c, "scan")))],
    ),
    "torch": (
        "torch eager (torchseq.train.train), 1 and 2 intra-op threads, each in its own process",
        [
            ("torch 1 thread ms", lambda c: fmt(ms(c, "torch1"))),
            ("torch 2 threads ms", lambda c: fmt(ms(c, "torch2"))),
            ("ratio vs 1 thread", lambda c: ratio_text(ms(c, "jaxseq"), ms(c, "torch1"))),
            ("ratio vs 2 threads", lambda c: ratio_text(ms(c, "jaxseq"), ms(c, "torch2"))),
            ("ratio vs the faster", lambda c: ratio_text(ms(c, "jaxseq"), best_torch(c))),
        ],
    ),
    "compile": (
        "torch.compile(model) (inductor; Adam eager), at the thread count faster eager in the cell",
        [
            ("compile ms", lambda c: fmt(ms(c, "compile")) if ms(c, "compile") else "skipped"),
            ("threads", lambda c: str(c["peers"].get("compile", {}).get("threads", "-"))),
            ("compile s", lambda c: fmt(c["peers"].get("compile", {}).get("compile_seconds"))),
            ("ratio", lambda c: ratio_text(ms(c, "jaxseq"), ms(c, "compile"))),
        ],
    ),
}
TABLE_PEERS = {"flax": ("flax",), "scan": ("scan",), "torch": ("torch1", "torch2"), "compile": ("compile",)}


def header(report: dict, title: str) -> list[str]:
    done, planned = len(report["cells"]), report["cells_planned"]
    return [
        f"# jaxseq against {title} ({report['date']})",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}. Workers: "
        + "; ".join(f"{k}: {v}" for k, v in report["workers"].items())
        + ". JAX (XLA:CPU) uses its default thread pool on all cores.",
        f"Adam lr 1e-3, sum-over-time MSE, random data; ms per training step, median of {report['repeats']} "
        f"interleaved runs of about {report['seconds']} s per peer and cell; "
        "ratio = peer ms / jaxseq ms (> 1: jaxseq faster). Load: the 1-minute load average at the "
        "cell's end; the benchmark itself adds about 1, more is other work sharing the cores, which "
        "slows most the peers that use 2 threads.",
        *([f"**Incomplete: {done} of {planned} cells measured.**"] if done < planned else []),
        "",
    ]


def skipped_lines(report, names) -> list[str]:
    """The skipped peers and the peers' notes (torch.compile's mode, what ran eager torch's recurrent
    layer), each with its cells."""
    reasons = {}
    for c in report["cells"]:
        for name in names:
            for key, label in (("skipped", "Skipped"), ("note", "Ran")):
                why = c["peers"].get(name, {}).get(key)
                if why:
                    reasons.setdefault(f"{label} {name}, {why}", []).append(label_of(c))
    return [f"{why}: {', '.join(cells)}." for why, cells in reasons.items()]


CELL_KEYS = ("model", "batch", "hidden", "length", "dtype")


def peer_markdown(report: dict, table: str) -> str:
    title, columns = PEER_TABLES[table]
    heads = ["model", "batch", "hidden", "length", "dtype", "jaxseq ms", *(h for h, _ in columns)]
    lines = header(report, title) + ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for c in report["cells"]:
        row = [str(c[k]) for k in CELL_KEYS] + [fmt(ms(c, "jaxseq"))] + [f(c) for _, f in columns]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + ["", *skipped_lines(report, TABLE_PEERS[table]), ""])


def summary_markdown(report: dict) -> str:
    names = [n for n in PEERS if n in report["peers"]]
    heads = [
        "model",
        "batch",
        "hidden",
        "length",
        "dtype",
        *(f"{n} ms" for n in names),
        "fastest other",
        "ratio",
        "load",
    ]
    lines = header(report, "every peer") + ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for c in report["cells"]:
        best = fastest_other(c)
        row = [str(c[k]) for k in CELL_KEYS] + [fmt(ms(c, n)) for n in names]
        row += [best or "-", ratio_text(ms(c, "jaxseq"), ms(c, best)), f"{c.get('load_average', 0):.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *verdict_lines(report)]
    return "\n".join(lines + [*skipped_lines(report, names), *floor_lines(report), ""])


MODEL_NAMES = {"lstm": "LSTM", "gru": "GRU", "lstm2": "LSTM, 2 layers", "bilstm": "LSTM, bidirectional"}


def ratios_markdown(report: dict) -> str:
    """The README's table: per cell, jaxseq's ms and each peer's ms / jaxseq's (> 1: jaxseq faster)."""
    t = "the faster of torch at 1 and 2 threads (its thread count in brackets)"
    lines = [
        f"`{report['command']}`, {report['date']}, {report['machine']}; median of {report['repeats']} "
        f"interleaved runs; ratio = peer ms / jaxseq ms, above 1: jaxseq faster; torch: {t}.",
        "",
        "| model | batch | hidden | length | dtype | jaxseq ms | vs Flax | vs plain scan | vs torch | "
        "vs torch.compile | rounds fastest |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["cells"]:
        j, torch = ms(c, "jaxseq"), best_torch(c)
        threads = "" if torch is None else f" ({1 if torch == ms(c, 'torch1') else 2})"
        row = [MODEL_NAMES[c["model"]], *(str(c[k]) for k in CELL_KEYS[1:]), fmt(j)]
        row += [ratio_text(j, ms(c, "flax")), ratio_text(j, ms(c, "scan")), ratio_text(j, torch) + threads]
        won, rounds = rounds_fastest(c)
        row += [ratio_text(j, ms(c, "compile")), f"{won}/{rounds}" if rounds else "-"]
        lines.append("| " + " | ".join(row).replace("**", "") + " |")
    lines += ["", *verdict_lines(report)]
    return "\n".join(lines + floor_lines(report)) + "\n"


def verdict_lines(report: dict) -> list[str]:
    """How many cells jaxseq is fastest in by the medians, and of the others, which are lost in every
    round (each round's times are paired) and which only in some."""
    lost = slower_cells(report)
    every, some = [], []
    for c, best in lost:
        paired = [b / j for b, j in zip(c["peers"][best]["all_ms"], c["peers"]["jaxseq"]["all_ms"], strict=True)]
        text = f"{label_of(c)} (to {best}: " + ", ".join(f"{r:.2f}x" for r in paired) + ")"
        (every if all(r < 1 for r in paired) else some).append(text)
    n = sum(1 for c in report["cells"] if ms(c, "jaxseq") is not None)
    lines = [f"jaxseq fastest in {n - len(lost)} of the {n} cells it ran in, by the medians."]
    if lost:
        lines.append(
            f"Slower in {len(lost)}; the fastest other peer's time / jaxseq's in each round, in brackets. "
            f"Slower in every round ({len(every)}): {'; '.join(every) or 'none'}. "
            f"Faster in at least one round ({len(some)}): {'; '.join(some) or 'none'}."
        )
    return lines


def fastest_other(cell: dict):
    """The peer other than jaxseq with the lowest ms in `cell` (None if none ran)."""
    others = {n: ms(cell, n) for n in PEERS if n != "jaxseq" and ms(cell, n) is not None}
    return min(others, key=others.get) if others else None


def rounds_fastest(cell: dict) -> tuple[int, int]:
    """(rounds in which jaxseq was faster than every other peer timed in that round, rounds): each
    round times every peer once, in turn, so a round's times are paired."""
    jaxseq = cell["peers"].get("jaxseq", {}).get("all_ms") or []
    others = [p["all_ms"] for n, p in cell["peers"].items() if n != "jaxseq" and p.get("all_ms")]
    return sum(all(o[r] > jaxseq[r] for o in others) for r in range(len(jaxseq))), len(jaxseq)


def slower_cells(report: dict) -> list[tuple[dict, str]]:
    """(cell, fastest other peer) for every cell where that peer beat jaxseq."""
    pairs = [(c, fastest_other(c)) for c in report["cells"]]
    return [(c, best) for c, best in pairs if best and ms(c, "jaxseq") and ms(c, best) < ms(c, "jaxseq")]


def label_of(cell: dict) -> str:
    return cell_label(tuple(cell[k] for k in CELL_KEYS))


def floor_lines(report: dict) -> list[str]:
    """For the cells whose floor was timed: jaxseq's step against XLA's floor (`seed.floor_seconds`),
    the same parts in torch (`seed.torch_floor_seconds`, its faster thread count), and the fastest
    other peer's whole step against XLA's floor (below 1x: that peer's step is shorter than XLA's
    products and Adam alone)."""
    rows = [c for c in report["cells"] if c.get("floor_ms")]
    if not rows:
        return []
    parts = list(rows[0]["floor_ms"])
    lines = [
        "",
        "Against the floor (`floor_seconds` in benchmarks/seed.py: the parts of an LSTM step this training "
        "cannot do without, each timed alone in the JAX worker, median of the repeats; torch floor: the same "
        "parts in torch, `torch_floor_seconds`, at its faster thread count), ms per step:",
        "",
        "| cell | " + " | ".join(parts) + " | XLA floor | torch floor (threads) | jaxseq | jaxseq / XLA floor | "
        "fastest other / jaxseq | fastest other / XLA floor |",
        "|---|" + "---:|" * (len(parts) + 6),
    ]
    for c in rows:
        floor = sum(c["floor_ms"].values())
        torch_floors = {t: sum(f.values()) for t, f in c.get("torch_floor_ms", {}).items()}
        torch_floor = min(torch_floors.items(), key=lambda tf: tf[1]) if torch_floors else None
        best = fastest_other(c)
        lines.append(
            f"| {label_of(c)} | "
            + " | ".join(fmt(v) for v in c["floor_ms"].values())
            + f" | {fmt(floor)} | "
            + ("-" if torch_floor is None else f"{fmt(torch_floor[1])} ({torch_floor[0]})")
            + f" | {fmt(ms(c, 'jaxseq'))} | {ms(c, 'jaxseq') / floor:.2f}x | "
            + ("-" if best is None else f"{ms(c, best) / ms(c, 'jaxseq'):.2f}x ({best}) | {ms(c, best) / floor:.2f}x")
            + " |"
        )
    failed = [f"{label_of(c)}: {c['floor_error']}" for c in report["cells"] if c.get("floor_error")]
    return lines + ([f"Floors not timed: {'; '.join(failed)}."] if failed else [])


def parse_cell(text: str) -> tuple:
    try:
        model, batch, hidden, length, dtype = text.split(",")
        if model not in MODELS or dtype not in DTYPES:
            raise ValueError
        return model, positive_int(batch), positive_int(hidden), positive_int(length), dtype
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"expected MODEL,B,H,T,DTYPE with MODEL in {', '.join(MODELS)}, B, H, T >= 1, DTYPE in "
            f"{', '.join(DTYPES)}; got {text!r}"
        ) from None


def parse_list(allowed, what):
    def parse(text: str) -> list[str]:
        items = text.split(",")
        bad = [i for i in items if i not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)}")
        return items

    return parse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument(
        "--cells",
        type=parse_list(tuple(GROUPS), "cell group"),
        default=["all"],
        help=f"cell groups, comma-separated: {', '.join(GROUPS)} (all: matrix + variants; default)",
    )
    p.add_argument(
        "--cell", action="append", type=parse_cell, metavar="MODEL,B,H,T,DTYPE", help="only this cell (repeatable)"
    )
    p.add_argument("--peers", type=parse_list(PEERS, "peer"), default=list(PEERS), help="peers to time (all)")
    p.add_argument("--repeats", type=positive_int, default=5, help="interleaved runs per cell (%(default)s)")
    p.add_argument("--seconds", type=float, default=1.0, help="target seconds per timed run (%(default)s)")
    p.add_argument("--quick", action="store_true", help="--cells seed,batch64 --repeats 3 --seconds 0.5")
    p.add_argument(
        "--floors",
        choices=("seed", "all", "none"),
        default="seed",
        help="cells whose floor is timed (in JAX and in torch): the seed's size (default), every "
        "one-layer LSTM cell, or none",
    )
    p.add_argument(
        "--compile-limit",
        type=float,
        default=240.0,
        help="seconds torch.compile's first steps may take: past it allow_rnn is dropped for the model, "
        "and past it without allow_rnn compile is skipped for the rest of the run (%(default)s)",
    )
    p.add_argument("--name", default=None, help="results file stem (peers; peers-<groups> for --cells, peers-cells)")
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.quick:
        args.cells, args.repeats, args.seconds = ["seed", "batch64"], 3, 0.5
    if "jaxseq" not in args.peers:
        args.peers.insert(0, "jaxseq")
    peers = [n for n in PEERS if n in args.peers]
    cells = args.cell or list(dict.fromkeys(c for g in args.cells for c in GROUPS[g]))
    name = args.name or (
        "peers-cells" if args.cell else "peers" if args.cells == ["all"] else "peers-" + "-".join(args.cells)
    )
    command = "python benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)

    start = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command.strip(),
        "machine": f"{platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"load average at start {os.getloadavg()[0]:.2f}",
        "peers": peers,
        "repeats": args.repeats,
        "seconds": args.seconds,
        "workers": {},
        "cells_planned": len(cells),
        "cells": [],
    }

    def write_results():
        report["wall_seconds"] = time.perf_counter() - start
        report["workers"].update({k: w.settings for k, w in sorted(workers.items())})
        for table, names in TABLE_PEERS.items():
            if any(n in peers for n in names):
                part = dict(
                    report,
                    cells=[
                        dict(c, peers={n: c["peers"][n] for n in ("jaxseq", *names) if n in c["peers"]})
                        for c in report["cells"]
                    ],
                )
                write_text(RESULTS / f"{name}-{table}.json", json.dumps(part, indent=1) + "\n")
                write_text(RESULTS / f"{name}-{table}.md", peer_markdown(report, table))
        write_text(RESULTS / f"{name}.json", json.dumps(report, indent=1) + "\n")
        write_text(RESULTS / f"{name}.md", summary_markdown(report))
        write_text(RESULTS / f"{name}-ratios.md", ratios_markdown(report))

    skip_compile = {}
    try:
        with Workers() as workers:
            for cell in cells:
                c = measure_cell(workers, cell, peers, args, skip_compile)
                report["cells"].append(c)
                write_results()
                print(
                    f"{cell_label(cell)}: "
                    + "  ".join(f"{n} {fmt(ms(c, n))}" for n in peers)
                    + f" ms/step ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    except KeyboardInterrupt:
        print(f"peers.py: interrupted after {len(report['cells'])} of {len(cells)} cells", file=sys.stderr)
        return 130
    print(f"wrote {RESULTS / name}*.md and .json ({report['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
