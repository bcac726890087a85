"""Where one jaxseq training step's time goes, op by op, under the JAX profiler (CPU).

    python benchmarks/step_profile.py                                # the seed's size, float64
    python benchmarks/step_profile.py --cell lstm,1,256,21,float32   # MODEL,B,H,T,DTYPE as peers.py
    python benchmarks/step_profile.py --peer flax                    # a JAX peer of peers.py instead

Compiles `jaxseq.app.training.train_chunk` for one cell as benchmarks/peers.py does
(`peers.JaxseqPeer`; with --peer, that JAX peer's program), times it unprofiled (median of
--repeats runs of --steps steps, blocking on the losses), then runs the same steps under
`jax.profiler.trace`. XLA's CPU runtime records one event per executed thunk (a fusion, a dot,
a copy; a loop or conditional as one event around its thunks); this script sums them per op and
groups the ops:

- in the time loops: every op inside a `while` that runs per time step (the recurrences), split
  into the products with the recurrent weights (dots) and everything else (the gates'
  elementwise fusions, slices, updates of the stacked outputs), with the thunks per iteration;
- once per step: the rest (input projection, weight-gradient matmuls, head, loss, Adam);
- between thunks: the stretches in which no thunk but a loop or conditional was running (the
  dispatch from one thunk to the next, a loop's condition and iteration).

XLA runs a large dot as an asynchronous thunk: its event ends once the product is handed to the
thread pool, and the product's time shows as such a stretch before the first thunk that reads
its result. So a stretch before a thunk that reads a dot is added to that dot (the dot's time is
its event's and the wait for its result). Recorded times include the profiler's cost of
recording each event, so the report gives the unprofiled step beside them. The question it
answers: how much of a small step is arithmetic, and how much is the number of thunks each time
step runs (a count fixed by the compiled program). Writes
benchmarks/results/step-profile-[<peer>-]<cell>.md and .json.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matrix import RESULTS  # noqa: E402
from peers import MODELS, FlaxPeer, JaxseqPeer, ScanPeer, parse_cell  # noqa: E402

from jaxseq.app.options import option_type, positive_int  # noqa: E402
from jaxseq.files import write_text  # noqa: E402

# --steps: a time loop is told from the chunk's own loop by running at least once per step, which
# the chunk's loop also does when a call is one step
at_least_two = option_type(int, lambda v: v >= 2, "an integer of at least 2")


JAX_PEERS = {"jaxseq": JaxseqPeer, "flax": FlaxPeer, "scan": ScanPeer}
BETWEEN = "between thunks: dispatch, the loops' control (count: stretches)"
CONTAINERS = ("while", "cond", "conditional", "call")  # thunks that run other thunks


def thunk_events(trace_dir: str, module: str) -> list[dict]:
    """The trace's thunk events of HLO module `module` (each with its "name" and "ts", "dur" in us)."""
    paths = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
    if len(paths) != 1:
        raise RuntimeError(f"expected one trace file under {trace_dir}, found {len(paths)}")
    with gzip.open(paths[0]) as f:
        trace = json.load(f)["traceEvents"]
    return [e for e in trace if e.get("args", {}).get("hlo_module") == module]


def loop_of_op(hlo_text: str) -> dict[str, str]:
    """{op name: the `while` op whose body computation holds it} from a compiled program's HLO
    text (ops outside every loop body are not in it). Read from the program rather than from the
    trace's timing, since XLA may finish a loop's thunks on other threads after the loop's own
    event has ended."""
    ops_of: dict[str, list[str]] = collections.defaultdict(list)  # computation -> its ops
    body_of: dict[str, str] = {}  # while op -> its body computation
    computation = None
    for line in hlo_text.splitlines():
        if head := re.match(r"(?:ENTRY )?%(\S+) .*\{$", line):
            computation = head[1]
        elif op := re.match(r"\s+(?:ROOT )?%(\S+) = ", line):
            ops_of[computation].append(op[1])
            if body := re.search(r" while\(.*\bbody=%([^,\s]+)", line):
                body_of[op[1]] = body[1]
    if not body_of:
        raise RuntimeError("no while loop found in the compiled program's HLO text")
    return {op: loop for loop, body in body_of.items() for op in ops_of[body]}


def operands_of(hlo_text: str) -> dict[str, list[str]]:
    """{op name: its operands' names} from a compiled program's HLO text."""
    ops = re.finditer(r"^\s+(?:ROOT )?%(\S+) = (?:\(.*?\)|\S+) [\w\-]+\(([^)]*)\)", hlo_text, re.MULTILINE)
    return {op[1]: re.findall(r"%([\w.\-]+)", op[2]) for op in ops}


def add_waits(events: list[dict], operands: dict[str, list[str]]) -> list[dict]:
    """Each stretch in which no thunk other than a loop or conditional was running, as an event:
    charged to the dot that the next thunk to start reads (the wait for an asynchronous dot's
    result; the dot started last, if it reads several), else to BETWEEN."""
    leaves = sorted((e for e in events if not is_container(e["name"])), key=lambda e: e["ts"])
    waits, end, started = [], None, {}
    for e in leaves:
        if end is not None and e["ts"] > end:
            dots = [name for name in operands.get(e["name"], []) if is_product(name) and name in started]
            dot = max(dots, key=started.get, default=None)
            waits.append({"name": dot or BETWEEN, "dur": e["ts"] - end, "wait": dot is not None})
        end = max(end, e["ts"] + e["dur"]) if end is not None else e["ts"] + e["dur"]
        started[e["name"]] = e["ts"]
    return waits


def is_container(name: str) -> bool:
    return name.split(".")[0] in CONTAINERS


def is_product(name: str) -> bool:
    return "dot" in name or name.startswith("ynn_fusion")  # XLA's dots, and its XNNPACK-fused dots


def summarize(events: list[dict], loop_of: dict[str, str], steps: int) -> dict:
    """Per-step totals: groups (calls, us), the time loops (iterations, thunks per iteration, us),
    and the top ops."""
    per_op = collections.defaultdict(lambda: {"calls": 0, "us": 0.0})
    for e in events:
        op = per_op[e["name"]]
        op["calls"] += 0 if e.get("wait") else 1  # a dot's wait is not a call of it
        op["us"] += e["dur"]
        op["loop"] = loop_of.get(e["name"])
    # a time loop runs at least once per training step (the chunk's own loop over steps runs once per call)
    time_loops = {name for name, op in per_op.items() if name.startswith("while") and op["calls"] >= steps}
    groups = collections.defaultdict(lambda: {"calls": 0.0, "us": 0.0})
    loops = collections.defaultdict(lambda: {"thunks": 0.0, "us": 0.0, "iterations": 0.0})
    for name, op in per_op.items():
        calls, us = op["calls"] / steps, op["us"] / steps
        if is_container(name):  # its time is the stretches between its thunks: in BETWEEN and the waits
            continue
        if name == BETWEEN:
            group = BETWEEN
        elif op["loop"] in time_loops:
            group = "in the time loops: " + ("products" if is_product(name) else "other")
            loop = loops[op["loop"]]
            loop["thunks"] += calls
            loop["us"] += us
            loop["iterations"] = max(loop["iterations"], calls)
        else:
            group = "once per step: " + ("products" if is_product(name) else "other")
        groups[group]["calls"] += calls
        groups[group]["us"] += us
    runs = {name: per_op[name]["calls"] / steps for name in loops}  # each time loop's runs per step
    return {
        "groups": dict(sorted(groups.items())),
        "loops": {
            name: dict(
                runs_per_step=runs[name],
                iterations=loop["iterations"] / runs[name],
                thunks_per_iteration=loop["thunks"] / loop["iterations"],
                us_per_iteration=loop["us"] / loop["iterations"],
            )
            for name, loop in sorted(loops.items())
        },
        "top": sorted(
            (
                {"op": n, "calls": o["calls"] / steps, "us": o["us"] / steps}
                for n, o in per_op.items()
                if not is_container(n)
            ),
            key=lambda o: -o["us"],
        )[:15],
    }


def markdown(report: dict) -> str:
    s = report["summary"]
    total = sum(g["us"] for g in s["groups"].values())
    lines = [
        f"# Where a training step's time goes: {report['cell']} ({report['date']})",
        "",
        f"`{report['command']}`; jax {report['jax']}, {report['nproc']} cores. Unprofiled: "
        f"**{report['unprofiled_us']:.1f} us per step** (median of {report['repeats']} runs of "
        f"{report['steps']} steps), {report['profiled_us']:.1f} us under the profiler; recorded there: "
        f"{total:.1f} us per step, each thunk's "
        "time (the profiler's cost of recording it included) and the stretches between thunks (a "
        "dot's row includes the wait for its result, as XLA runs large dots asynchronously); thunks "
        "running side by side on the pool's threads make this differ from the step's.",
        "",
        "| where | thunks per step | recorded us per step | share of recorded |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {g['calls']:.0f} | {g['us']:.1f} | {100 * g['us'] / total:.0f}% |"
            for name, g in s["groups"].items()
        ),
        "",
        "| time loop | runs per step | iterations | thunks per iteration | recorded us per iteration |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {lp['runs_per_step']:.0f} | {lp['iterations']:.0f} | {lp['thunks_per_iteration']:.1f} | "
            f"{lp['us_per_iteration']:.2f} |"
            for name, lp in s["loops"].items()
        ),
        "",
        "| op (top 15 by own time) | calls per step | recorded us per step |",
        "|---|---:|---:|",
        *(f"| {o['op']} | {o['calls']:.0f} | {o['us']:.1f} |" for o in s["top"]),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", type=parse_cell, default=("lstm", 1, 100, 21, "float64"), metavar="MODEL,B,H,T,DTYPE")
    p.add_argument("--steps", type=at_least_two, default=100, help="steps per call and per run, >= 2 (%(default)s)")
    p.add_argument("--repeats", type=positive_int, default=7, help="unprofiled runs (%(default)s)")
    p.add_argument("--peer", choices=JAX_PEERS, default="jaxseq", help="which JAX peer of peers.py (%(default)s)")
    args = p.parse_args(argv)
    import jax

    if jax.default_backend() != "cpu":
        print(
            "step_profile.py: profiles XLA's CPU runtime only; JAX's default device here is not the CPU",
            file=sys.stderr,
        )
        return 2
    model, batch, hidden, length, dtype = args.cell
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    peer = JAX_PEERS[args.peer](model, batch, hidden, length, dtype, args.steps)
    peer.run(2 * args.steps)  # warm up
    unprofiled = statistics.median(peer.run(args.steps) / args.steps for _ in range(args.repeats))
    hlo_text = peer.compiled.as_text()
    module = re.match(r"HloModule (\w+)", hlo_text)[1]
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            profiled = peer.run(args.steps)
        events = thunk_events(trace_dir, module)
    events += add_waits(events, operands_of(hlo_text))
    loop_of = loop_of_op(hlo_text)
    label = f"{model},{batch},{hidden},{length},{dtype}"
    report = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "command": " ".join(["python benchmarks/step_profile.py", *(sys.argv[1:] if argv is None else argv)]),
        "cell": f"{args.peer}, {MODELS[model][0].upper()} ({model}), batch {batch}, hidden {hidden}, "
        f"length {length}, {dtype}",
        "jax": jax.__version__,
        "nproc": os.cpu_count(),
        "steps": args.steps,
        "repeats": args.repeats,
        "unprofiled_us": unprofiled * 1e6,
        "profiled_us": profiled / args.steps * 1e6,
        "summary": summarize(events, loop_of, args.steps),
    }
    text = markdown(report)
    print(text)
    name = "step-profile-" + ("" if args.peer == "jaxseq" else f"{args.peer}-") + label.replace(",", "-")
    write_text(RESULTS / f"{name}.json", json.dumps(report, indent=1) + "\n")
    write_text(RESULTS / f"{name}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
