"""The `jaxseq` command: a thin layer over `jaxseq.train` and `jaxseq.outputs`.

`jaxseq train [options]` trains on the shifted-sequence task and writes --out DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from jaxseq.config import add_arguments, from_args


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# Errors a user can cause: a bad option value, a bad file, an unwritable directory, a diverging run.
USER_ERRORS = (ValueError, OSError, FloatingPointError, ImportError)


def run_main(prog: str, commands: dict, argv=None) -> int:
    """Parses argv, runs the chosen command; a user error becomes one line on stderr and exit 1."""
    parser = Parser(prog=prog, description=__doc__.splitlines()[0] if prog == "jaxseq" else None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (add, _) in commands.items():
        add(sub.add_parser(name))
    args = parser.parse_args(argv)
    try:
        return commands[args.command][1](args) or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Train the LSTM on the shifted-sequence task with JAX."
    add_arguments(p, jax_options=True)
    p.add_argument("--out", default="runs/jaxseq", help="output directory (%(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def train_command(args: argparse.Namespace) -> int:
    config = from_args(args)  # validates before anything is imported or written
    from jaxseq import outputs

    out = outputs.prepare_out_dir(args.out)
    import jax
    import numpy as np

    from jaxseq.convert import save_weights
    from jaxseq.task import task_from_config
    from jaxseq.train import train

    start = time.perf_counter()
    result = train(config, progress=args.progress)
    wall = time.perf_counter() - start
    x, y = task_from_config(config)
    pred = np.asarray(result.model(x))
    summary = {
        "framework": "jax",
        "final_loss": float(result.losses[-1]),
        "steps": config.steps,
        "steps_per_second": result.steps_per_second,
        "wall_seconds": wall,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "platform": result.platform,
        "jax_version": jax.__version__,
        "config": dataclasses.asdict(config),
    }
    outputs.write_run(
        out,
        name="jaxseq",
        losses=result.losses,
        summary=summary,
        x_T=x[0, :, 0],
        y_T=y[0, :, 0],
        pred_T=pred[0, :, 0],
        weights_file="weights.safetensors",
        save_weights=lambda path: save_weights(result.model, path),
    )
    print(
        f"jaxseq: {config.steps} steps, final loss {result.losses[-1]:.3e}, "
        f"{result.steps_per_second:.0f} steps/s (compile {result.compile_seconds:.1f} s) "
        f"on {result.platform}; wrote {out}/"
    )
    return 0


COMMANDS = {"train": (add_train_arguments, train_command)}


def main(argv=None) -> int:
    return run_main("jaxseq", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
