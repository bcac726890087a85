"""Sweep throughput: many models in one program vs one after another, and over simulated devices.

    python benchmarks/sweep.py [--steps 300] [--repeats 3]

At the seed's size (hidden 100, length 21, float64, Adam), model-steps per second of:
  - `jaxseq.app.sweep` with M = 1, 8, 64 models (vmapped, one compiled program);
  - torchseq training one model (a sequence of M torchseq runs has the same rate);
  - the 64-model sweep with its model axis sharded over 1, 2 and 4 simulated CPU devices
    (XLA_FLAGS=--xla_force_host_platform_device_count=N, each in its own process).
Medians of --repeats runs, timed after compilation. Prints ratios; writes benchmarks/results/sweep.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from jaxseq.app.options import option_type, positive_int

RESULTS = Path(__file__).resolve().parent / "results"

WORKER = """
import json, sys
from jaxseq.app.config import TrainConfig
from jaxseq.app.sweep import sweep
models, steps, repeats = (int(a) for a in sys.argv[1:4])
seeds, lrs = list(range(max(1, models // 8))), [1e-3 * (1 + k / 10) for k in range(min(models, 8))]
config = TrainConfig(steps=steps, chunk=steps)
rates = [sweep(config, seeds, lrs).model_steps_per_second for _ in range(repeats)]
print(json.dumps(rates))
"""

TORCH_WORKER = """
import json, sys
from jaxseq.app.config import TrainConfig
import torchseq
steps, repeats = (int(a) for a in sys.argv[1:3])
print(json.dumps([torchseq.train(TrainConfig(steps=steps)).steps_per_second for _ in range(repeats)]))
"""


def run(code: str, *args, devices: int = 1) -> float:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr)
    return statistics.median(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=option_type(int, lambda v: v >= 3, "an integer >= 3"), default=300)
    p.add_argument("--repeats", type=positive_int, default=3)
    args = p.parse_args(argv)
    rows = {}
    rows["torchseq, 1 model"] = run(TORCH_WORKER, args.steps // 3, args.repeats)
    print(f"torchseq 1 model: {rows['torchseq, 1 model']:.0f} model-steps/s", flush=True)
    for models in (1, 8, 64):
        rows[f"jaxseq sweep, {models} models, 1 device"] = run(WORKER, models, args.steps, args.repeats)
        print(
            f"jaxseq {models} models: {rows[f'jaxseq sweep, {models} models, 1 device']:.0f} model-steps/s", flush=True
        )
    for devices in (2, 4):
        name = f"jaxseq sweep, 64 models, {devices} simulated devices"
        rows[name] = run(WORKER, 64, args.steps, args.repeats, devices=devices)
        print(f"{name}: {rows[name]:.0f} model-steps/s", flush=True)
    torch_rate = rows["torchseq, 1 model"]
    lines = [
        f"# Sweep throughput ({datetime.datetime.now().isoformat(timespec='seconds')})",
        "",
        f"Command: `python benchmarks/sweep.py --steps {args.steps} --repeats {args.repeats}`; nproc {os.cpu_count()}; "
        "hidden 100, length 21, float64, Adam; medians; torch with its default threads.",
        "",
        "| what | model-steps/s | vs torchseq one after another |",
        "|:---|---:|---:|",
        *(f"| {name} | {rate:.0f} | {rate / torch_rate:.1f}x |" for name, rate in rows.items()),
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
