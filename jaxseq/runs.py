"""The plumbing of a command-line run, for `jaxseq` and `torchseq` alike: read and check every
input once, prepare --out, keep checkpoints and the history, write the finished run.

Framework-neutral: nothing here imports JAX or torch at module level, and each framework's
`cli.py` passes in what differs (how to load its checkpoint, save its weights, predict).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import NamedTuple

from jaxseq import outputs
from jaxseq.config import TrainConfig
from jaxseq.errors import DataError, Diverged, DivergenceError, OptionError
from jaxseq.options import from_args, resumed_config


class RunInputs(NamedTuple):
    config: TrainConfig  # the run's options (a resumed run's recorded ones)
    data: object  # the run's Sequences, read and checked
    weights: dict | None  # --init-from's state_dict (NumPy), read and checked once; None otherwise
    checkpoint: object | None  # the checkpoint of --resume, or None


def read_inputs(config: TrainConfig, *, resumed: bool = False, checkpoint=None) -> RunInputs:
    """The run's data (`load_sequences`) and --init-from's weights, each read and checked once.
    A resumed run continues from its checkpoint's weights: --init-from's file is not read (it may be gone)."""
    from jaxseq.task import load_sequences

    data = load_sequences(config)
    from jaxseq.optim import from_config

    from_config(config)  # an OptionError naming a bad --schedule or combination, before anything runs
    weights = None
    if config.init_from is not None and not resumed:
        from jaxseq.port.weights import check_weights_fit, read_weights_file

        weights = read_weights_file(config.init_from)
        sizes = dict(input_size=data.x.shape[-1], output_size=data.y.shape[-1])
        check_weights_fit(weights, config, source=config.init_from, **sizes)
    return RunInputs(config, data, weights, checkpoint)


def start_run(args: argparse.Namespace, load_checkpoint=None, *, hosts: bool = False):
    """(RunInputs, out) for a train command: a new run, or --resume DIR.

    Every input is read and checked (NumPy only) before anything else: with `hosts`, before this
    process joins the others (`join_hosts`) and the data's split over all their devices is
    checked. Then --out is prepared (a context manager: see `outputs.new_run_dir`; a resumed run
    keeps its directory); a process of a multi-host run other than process 0 writes nothing and
    gets out=None.
    """
    if getattr(args, "resume", None) is None:
        inputs = read_inputs(from_args(args))
        out = args.out
    else:
        checkpoint = load_checkpoint(args.resume)
        inputs = read_inputs(resumed_config(args, checkpoint.config), resumed=True, checkpoint=checkpoint)
        out = args.resume
    write = True
    if hosts:
        write = join_hosts(args)
        config = inputs.config
        check_split(config, config.batch_size or len(inputs.data.x), "sequences per step")
    if not write:
        return inputs, contextlib.nullcontext(None)
    if inputs.checkpoint is not None:
        return inputs, contextlib.nullcontext(outputs.prepare_out_dir(out))
    return inputs, outputs.new_run_dir(out)


def join_hosts(args: argparse.Namespace) -> bool:
    """Calls `jax.distributed.initialize` when asked to; True if this process writes the outputs
    (process 0, or the only one). Must run before anything else uses JAX."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and given == (None, None, None):
        return True
    if None not in given[1:] and args.process_id >= args.num_processes:
        raise OptionError(f"--process-id {args.process_id} must be below --num-processes {args.num_processes}")
    from jaxseq import devices

    try:
        devices.initialize(*given)
    except Exception as e:  # JAX raises several kinds (ValueError, RuntimeError, XlaRuntimeError)
        first = str(e).splitlines()[0] if str(e) else repr(e)
        raise OptionError(f"jax.distributed.initialize failed: {first}") from None
    return devices.is_main_process()


def check_split(config: TrainConfig, items: int, what: str) -> None:
    """In a multi-host run, refuses `items` that do not split over every device (before anything is written)."""
    import jax

    from jaxseq import devices

    if jax.process_count() > 1:
        devices.usable_devices(devices.platform_devices(config.platform), items, what)


def checkpoint_writer(out, save):
    """The trainers' `on_checkpoint`: `save(out, losses, *state)`, then history.csv from the same losses."""

    def on_checkpoint(losses, *state):
        save(out, losses, *state)
        outputs.write_text(out / "history.csv", outputs.history_csv(losses))

    return on_checkpoint


def run_training(train, inputs: RunInputs, out, *, model, progress: bool, save):
    """`train` (jaxseq's or torchseq's) on the run's inputs, checkpointing with `save(out, losses,
    *state)` into `out` (None: a process that writes nothing). A diverged run keeps its finite
    history (and its last checkpoint) in `out`, and says so."""
    on_checkpoint = checkpoint_writer(out, save) if out is not None else (lambda *state: None)
    try:
        return train(
            inputs.config,
            model=model,
            batch=inputs.data,
            progress=progress,
            resume=inputs.checkpoint,
            on_checkpoint=on_checkpoint,
        )
    except DivergenceError as e:
        if out is None:
            raise
        outputs.write_text(out / "history.csv", outputs.history_csv(e.losses))
        raise Diverged(f"{e}; history up to there in {out}/history.csv") from None


def finish_train(prog: str, out, config: TrainConfig, data, losses, summary: dict, predict, save_weights) -> None:
    """Writes a finished run into `out` (see jaxseq.outputs.write_run) and prints its summary line.

    `data` is the run's Sequences; `predict(x, lengths)` the trained model's outputs for them."""
    summary = {"final_loss": float(losses[-1]), "steps": config.steps, **summary}
    summary["config"] = dataclasses.asdict(config)
    pred = predict(data.x, data.lengths)
    outputs.write_run(out, name=prog, losses=losses, summary=summary, data=data, pred=pred, save_weights=save_weights)
    if summary.get("steps_run", config.steps) == 0:
        speed = "already finished: no step to run"
    else:
        speed = f"{summary['steps_per_second']:.0f} steps/s"
    if "compile_seconds" in summary:
        speed += f" (compile {summary['compile_seconds']:.1f} s) on {summary['platform']}"
        if summary["devices"] > 1:
            speed += f" x {summary['devices']} devices"
    print(f"{prog}: {config.steps} steps, final loss {losses[-1]:.3e}, {speed}; wrote {out}/")


def predict_inputs(args: argparse.Namespace, dtype: str, input_size: int):
    """The Sequences `predict` runs on, in the weights' dtype, checked against the model's input size."""
    from jaxseq.task import load_sequences

    batch = load_sequences(from_args(args).replace(dtype=dtype))
    if batch.x.shape[-1] != input_size:
        raise DataError(f"--data has {batch.x.shape[-1]} input features; the weights take {input_size}")
    return batch


def predictions_path(args: argparse.Namespace) -> Path:
    """--out, by default predictions.csv in the --weights run directory (beside a weights file)."""
    if args.out is not None:
        return Path(args.out)
    weights = Path(args.weights)
    return (weights if weights.is_dir() else weights.parent) / "predictions.csv"


def finish_predict(out: Path, batch, pred) -> None:
    outputs.write_text(out, outputs.predictions_csv(batch, pred))
    up_to = "" if batch.lengths is None else "up to "
    print(f"wrote {len(batch.x)} sequence(s) of {up_to}{batch.x.shape[1]} steps to {out}")
