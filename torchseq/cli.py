"""The `torchseq` command: the PyTorch reference trainer, with jaxseq's options and outputs."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from jaxseq.cli import run_main
from jaxseq.config import add_arguments, from_args


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Train the LSTM on the shifted-sequence task with PyTorch."
    add_arguments(p, jax_options=False)
    p.add_argument("--out", default="runs/torchseq", help="output directory (%(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def train_command(args: argparse.Namespace) -> int:
    config = from_args(args)
    from jaxseq import outputs

    out = outputs.prepare_out_dir(args.out)
    import torch

    from jaxseq.task import task_from_config
    from torchseq.train import train

    start = time.perf_counter()
    result = train(config, progress=args.progress)
    wall = time.perf_counter() - start
    x, y = task_from_config(config)
    with torch.no_grad():
        pred = result.model(torch.from_numpy(x)).numpy()
    summary = {
        "framework": "torch",
        "final_loss": float(result.losses[-1]),
        "steps": config.steps,
        "steps_per_second": result.steps_per_second,
        "wall_seconds": wall,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "config": dataclasses.asdict(config),
    }
    outputs.write_run(
        out,
        name="torchseq",
        losses=result.losses,
        summary=summary,
        x_T=x[0, :, 0],
        y_T=y[0, :, 0],
        pred_T=pred[0, :, 0],
        weights_file="model.pt",
        save_weights=lambda path: torch.save(result.model.state_dict(), path),
    )
    print(
        f"torchseq: {config.steps} steps, final loss {result.losses[-1]:.3e}, "
        f"{result.steps_per_second:.0f} steps/s; wrote {out}/"
    )
    return 0


COMMANDS = {"train": (add_train_arguments, train_command)}


def main(argv=None) -> int:
    return run_main("torchseq", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
