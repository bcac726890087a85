"""The `torchseq` command: the PyTorch reference, with jaxseq's options and outputs.

torchseq train    trains on the shifted-sequence task (or --data) and writes --out DIR
torchseq predict  writes a trained model's predictions as CSV
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

from jaxseq.cli import (
    add_predict_arguments,
    add_train_arguments,
    checkpoint_writer,
    finish_predict,
    finish_train,
    predict_batch,
    run_main,
    start_run,
    stop_on_divergence,
)


def train_command(args: argparse.Namespace) -> int:
    from torchseq.train import load_checkpoint

    config, batch, out, resume = start_run(args, load_checkpoint)
    import torch

    from torchseq.train import DivergenceError, save_checkpoint, train

    start = time.perf_counter()
    try:
        on_checkpoint = checkpoint_writer(out, partial(save_checkpoint, config=config))
        result = train(config, batch=batch, progress=args.progress, resume=resume, on_checkpoint=on_checkpoint)
    except DivergenceError as e:
        stop_on_divergence(out, e)
    summary = {
        "framework": "torch",
        "steps_per_second": result.steps_per_second,
        "wall_seconds": time.perf_counter() - start,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    finish_train(
        "torchseq",
        out,
        config,
        batch,
        result.losses,
        summary,
        predict=lambda x, lengths: predict(result.model, x, lengths),
        save_weights=lambda path: torch.save(result.model.state_dict(), path),
    )
    return 0


def predict(model, x, lengths=None):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x), None if lengths is None else torch.from_numpy(lengths)).numpy()


def predict_command(args: argparse.Namespace) -> int:
    from torchseq.model import load_model

    model = load_model(args.weights)
    batch = predict_batch(args, str(next(model.parameters()).dtype).removeprefix("torch."))
    if batch.x.shape[-1] != model.recurrent.input_size:
        features = model.recurrent.input_size
        raise ValueError(f"--data has {batch.x.shape[-1]} input features; the weights take {features}")
    finish_predict(args.out, batch, predict(model, batch.x, batch.lengths))
    return 0


COMMANDS = {
    "train": (partial(add_train_arguments, framework="torch"), train_command),
    "predict": (add_predict_arguments, predict_command),
}


def main(argv=None) -> int:
    return run_main("torchseq", "The PyTorch reference trainer, with jaxseq's options and outputs.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
