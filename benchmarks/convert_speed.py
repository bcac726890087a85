"""Does a converted model train as fast as the same model built from jaxseq's layers?

The seed question's model (LSTM(1, hidden) + Linear, float64), once as `jaxseq.Model` and once
converted from torch by `jaxseq.from_torch(torch_model, x)` (torch.export, the LSTM kept whole as
`aten.lstm.input` on the same kernel). Both train with the same jitted step (optax Adam, MSE),
`--steps` steps per compiled call (a `lax.scan`), timed in paired rounds: each round runs both
once, in alternating order; the verdict is the median of the per-round ratios (under 5%: a tie).

    python benchmarks/convert_speed.py [--hidden 100] [--batch 1] [--length 21] [--rounds 15]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

import jaxseq
from jaxseq.nn.model import Architecture


def compiled_training(model, x, y, steps: int):
    """A jitted function running `steps` Adam steps on (x, y) from the model's parameters."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)

    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p, rest, copy=True)(x) - y) ** 2)

    def step(carry, _):
        p, s = carry
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = tx.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), value

    @jax.jit
    def run(p, s):
        return jax.lax.scan(step, (p, s), None, length=steps)

    state = (params, tx.init(params))
    jax.block_until_ready(run(*state))  # compile
    return lambda: jax.block_until_ready(run(*state))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--length", type=int, default=21)
    parser.add_argument("--steps", type=int, default=200, help="steps per compiled call")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)

    jax.config.update("jax_enable_x64", True)
    arch = Architecture("lstm", 1, args.hidden, 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.length, 1))
    y = x + 0.1

    native = arch.build(dtype="float64", seed=0)
    class Seed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(1, args.hidden, batch_first=True)
            self.linear = torch.nn.Linear(args.hidden, 1)

        def forward(self, x):
            return self.linear(self.lstm(x)[0])

    torch_model = Seed().double()  # the same architecture in torch, with the native model's weights
    torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in jaxseq.to_torch_state_dict(native).items()})
    converted = jaxseq.from_torch(torch_model, torch.from_numpy(x))

    runs = {"jaxseq.Model": compiled_training(native, x, y, args.steps),
            "converted": compiled_training(converted, x, y, args.steps)}
    seconds = {name: [] for name in runs}
    for r in range(args.rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            start = time.perf_counter()
            runs[name]()
            seconds[name].append((time.perf_counter() - start) / args.steps)
    native_s, converted_s = np.array(seconds["jaxseq.Model"]), np.array(seconds["converted"])
    ratios = native_s / converted_s  # > 1: the converted model is faster
    print(f"seed model, hidden {args.hidden}, batch {args.batch}, length {args.length}, float64; "
          f"{args.rounds} paired rounds of {args.steps} steps")
    print(f"  jaxseq.Model  median {np.median(native_s) * 1e3:.3f} ms/step")
    print(f"  converted     median {np.median(converted_s) * 1e3:.3f} ms/step")
    verdict = "tie (under 5%)" if abs(np.median(ratios) - 1) < 0.05 else (
        "converted faster" if np.median(ratios) > 1 else "converted slower")
    print(f"  speed of converted / jaxseq.Model: median {np.median(ratios):.3f}x "
          f"(rounds: min {ratios.min():.3f}x, max {ratios.max():.3f}x): {verdict}")


if __name__ == "__main__":
    main()
