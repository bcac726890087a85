"""How well each framework fits the task from its own initialisation: final loss per seed.

    python benchmarks/fit.py [--seeds 8] [--steps 1000]

float64, Adam, lr 1e-3, hidden 100 (the defaults). Prints one row per seed and the medians;
these are the numbers behind the bounds in parity_tests/test_native.py.
"""

from __future__ import annotations

import argparse

import numpy as np

import jaxseq
import torchseq
from jaxseq.app.config import TrainConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=1000)
    args = p.parse_args(argv)
    finals = {"jaxseq": [], "torchseq": []}
    print(f"{'seed':>4} {'jaxseq':>12} {'torchseq':>12}   (final loss after {args.steps} Adam steps, float64)")
    for seed in range(args.seeds):
        config = TrainConfig(seed=seed, steps=args.steps)
        finals["jaxseq"].append(jaxseq.train(config).losses[-1])
        finals["torchseq"].append(torchseq.train(config).losses[-1])
        print(f"{seed:>4} {finals['jaxseq'][-1]:>12.3e} {finals['torchseq'][-1]:>12.3e}", flush=True)
    for name, values in finals.items():
        v = np.array(values)
        print(
            f"{name}: median {np.median(v):.3e}, min {v.min():.3e}, max {v.max():.3e}, "
            f"sd of log10 {np.std(np.log10(v)):.2f}, runs below 1e-3: {(v < 1e-3).sum()}/{len(v)}"
        )
    ratio = np.median(finals["jaxseq"]) / np.median(finals["torchseq"])
    print(f"median ratio jaxseq/torchseq: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
