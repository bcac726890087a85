"""The `torchseq` command: the PyTorch reference, with jaxseq's options and outputs.

torchseq train    trains on the shifted-sequence task (or --data) and writes --out DIR
torchseq predict  writes a trained model's predictions as CSV

Options: `jaxseq.app.options`; the run plumbing shared with `jaxseq`: `jaxseq.app.runs`; the rule
by which a run writes its --out directory: `jaxseq.app.outputs.RunDir`.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

from jaxseq.app import runs
from jaxseq.app.options import add_predict_arguments, add_run_arguments, run_main
from jaxseq.errors import torch_required


def _torch():
    try:
        import torch
    except ImportError:
        raise torch_required("torchseq") from None
    return torch


def train_command(args: argparse.Namespace) -> int:
    _torch()
    from torchseq.train import load_checkpoint

    inputs, out_dir = runs.start_run(args, load_checkpoint)
    config = inputs.config
    import torch

    from torchseq.model import from_state_dict
    from torchseq.train import save_checkpoint, train

    start = time.perf_counter()
    with out_dir as out:
        model = None if inputs.weights is None else from_state_dict(inputs.weights)
        save = partial(save_checkpoint, config=config)
        with runs.StopOnSignal("torchseq train") as stop:
            result = runs.run_training(
                "torchseq", train, inputs, out, model=model, progress=args.progress, save=save, stop=stop
            )
        summary = {
            "framework": "torch",
            "steps_run": len(result.losses) - result.first_step,
            "steps_per_second": result.steps_per_second,
            "wall_seconds": time.perf_counter() - start,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
        return runs.finish_train(
            "torchseq",
            out,
            inputs,
            result.losses,
            summary,
            predict=lambda x, lengths: predict(result.model, x, lengths),
            save_weights=lambda path: torch.save(result.model.state_dict(), path),
            stop=stop,
        )


def predict(model, x, lengths=None):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x), None if lengths is None else torch.from_numpy(lengths)).numpy()


def predict_command(args: argparse.Namespace) -> int:
    _torch()
    from jaxseq.app.crossing import run_weights
    from torchseq.model import from_state_dict

    model = from_state_dict(run_weights(args.weights))
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    batch = runs.predict_inputs(args, dtype, model.recurrent.input_size)
    runs.finish_predict(runs.predictions_path(args), batch, predict(model, batch.x, batch.lengths))
    return 0


COMMANDS = {
    "train": (
        "train the model with PyTorch on the task (or --data) and write the run into --out",
        partial(add_run_arguments, framework="torch"),
        train_command,
    ),
    "predict": (
        "write a trained model's predictions on the task (or --data) as CSV",
        add_predict_arguments,
        predict_command,
    ),
}


def main(argv=None) -> int:
    return run_main("torchseq", "The PyTorch reference trainer, with jaxseq's options and outputs.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
