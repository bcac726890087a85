"""The plumbing of a command-line run, for `jaxseq` and `torchseq` alike: read and check every
input once, prepare --out (`outputs.RunDir`), stop cleanly on a signal, keep checkpoints and the
history, write the finished, diverged or interrupted run.

Framework-neutral: nothing here imports JAX or torch at module level, and each framework's
`cli.py` passes in what differs (how to load its checkpoint, save its weights, predict).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
from pathlib import Path
from typing import NamedTuple

from jaxseq.app import outputs
from jaxseq.app.config import TrainConfig
from jaxseq.app.options import from_args, resumed_config
from jaxseq.errors import DataError, Diverged, DivergenceError, OptionError
from jaxseq.files import write_text


class RunInputs(NamedTuple):
    config: TrainConfig  # the run's options (a resumed run's recorded ones, --steps as extended)
    data: object  # the run's Sequences, read and checked
    weights: dict | None  # --init-from's state_dict (NumPy), read and checked once; None otherwise
    checkpoint: object | None  # the checkpoint of --resume, or None


def read_inputs(config: TrainConfig, *, resumed: bool = False, checkpoint=None) -> RunInputs:
    """The run's data (`load_sequences`) and --init-from's weights, each read and checked once.
    A resumed run continues from its checkpoint's weights: --init-from's file is not read (it may be gone)."""
    from jaxseq.app.task import load_sequences

    data = load_sequences(config)
    from jaxseq.optim import from_config

    from_config(config)  # an OptionError naming a bad --schedule or combination, before anything runs
    weights = None
    if config.init_from is not None and not resumed:
        from jaxseq.app.crossing import run_weights
        from jaxseq.port.weights import check_weights_fit

        weights = run_weights(config.init_from)
        sizes = dict(input_size=data.x.shape[-1], output_size=data.y.shape[-1])
        check_weights_fit(weights, config, source=config.init_from, **sizes)
    return RunInputs(config, data, weights, checkpoint)


def start_run(args: argparse.Namespace, load_checkpoint=None, *, hosts: bool = False):
    """(RunInputs, out) for a train command: a new run into --out, or --resume DIR (into DIR).

    Every input is read and checked (NumPy only) before anything else: with `hosts`, before this
    process joins the others (`join_hosts`) and the data's split over all their devices is
    checked. `out` is a context manager: an `outputs.RunDir`; a process of a multi-host run other
    than process 0 writes nothing and gets None.
    """
    if getattr(args, "resume", None) is None:
        inputs = read_inputs(from_args(args))
    else:
        checkpoint = load_checkpoint(args.resume)
        config = resumed_config(args, checkpoint.config, len(checkpoint.losses))
        check_extension(checkpoint.config, config)
        inputs = read_inputs(config, resumed=True, checkpoint=checkpoint)
    target = out_directory(args)
    write = True
    if hosts:
        write = join_hosts(args)
        config = inputs.config
        check_split(config, config.batch_size or len(inputs.data.x), "sequences per step")
    return inputs, outputs.RunDir(target) if write else contextlib.nullcontext(None)


def out_directory(args: argparse.Namespace) -> Path:
    """Where a train command writes: --out; without it, the --resume run's own directory (the
    extended run replaces it), else the default (runs/jaxseq). `--resume A --out B` leaves A as it was."""
    if args.out is not None:
        return Path(args.out)
    resume = getattr(args, "resume", None)
    if resume is not None:
        return Path(resume) if Path(resume).is_dir() else Path(resume).parent
    return Path(args.default_out)


def check_extension(recorded: TrainConfig, config: TrainConfig) -> None:
    """Refuses to extend a run whose --schedule spans its --steps: its learning rates would change
    from the first step, so the run of more steps is another trajectory."""
    if config.steps == recorded.steps or config.schedule is None:
        return
    from jaxseq.optim import config_schedule

    if config_schedule(config) != config_schedule(recorded):
        raise OptionError(
            f"--schedule {config.schedule} spans the run's {recorded.steps} steps: over {config.steps} it is "
            "another schedule from the first step, so the run cannot be extended; start a new run"
        )


def join_hosts(args: argparse.Namespace) -> bool:
    """Calls `jax.distributed.initialize` when asked to; True if this process writes the outputs
    (process 0, or the only one). Must run before anything else uses JAX."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and given == (None, None, None):
        return True
    if None not in given[1:] and args.process_id >= args.num_processes:
        raise OptionError(f"--process-id {args.process_id} must be below --num-processes {args.num_processes}")
    from jaxseq.app import devices

    try:
        devices.initialize(*given)
    except Exception as e:  # JAX raises several kinds (ValueError, RuntimeError, XlaRuntimeError)
        first = str(e).splitlines()[0] if str(e) else repr(e)
        raise OptionError(f"jax.distributed.initialize failed: {first}") from None
    return devices.is_main_process()


def check_split(config: TrainConfig, items: int, what: str) -> None:
    """In a multi-host run, refuses `items` that do not split over every device (before anything is written)."""
    import jax

    from jaxseq.app import devices

    if jax.process_count() > 1:
        devices.usable_devices(devices.platform_devices(config.platform), items, what)


class StopOnSignal:
    """While inside: the first SIGINT or SIGTERM asks the run to stop at the end of its current
    chunk of steps (calling the object says whether one came; `.signal` is which, `.name` its name);
    a second SIGINT stops at once (KeyboardInterrupt), writing nothing more. Outside, the handlers
    are as before. A signal the process was started ignoring (SIGINT, for a job a script started with
    `&`) stays ignored, as Python itself leaves it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, where: str):
        self.where = where  # "jaxseq train": who says it is stopping
        self.signal: int | None = None

    def __enter__(self) -> StopOnSignal:
        caught = [s for s in self.SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
        self._before = {s: signal.signal(s, self._handle) for s in caught}
        return self

    def __exit__(self, *exc) -> bool:
        for s, handler in self._before.items():
            signal.signal(s, handler)
        return False

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signal = signum
        name = signal.Signals(signum).name
        # os.write, not print: a handler may run in the middle of another write to stderr (the progress bar)
        note = f"\n{self.where}: {name}: stopping after the current steps, then saving (Ctrl-C again: stop now)\n"
        os.write(2, note.encode())

    def __call__(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        """The signal's name ("SIGINT"); only once one came."""
        return signal.Signals(self.signal).name

    @property
    def exit_status(self) -> int:
        """128 + the signal once one came (130 for SIGINT, 143 for SIGTERM), else 0."""
        return 0 if self.signal is None else 128 + self.signal


def checkpoint_writer(out, save):
    """The trainers' `on_checkpoint`: `save(out, losses, *state)`, then history.csv from the same
    losses; the first one makes the run's directory --out (`RunDir.publish`)."""

    def on_checkpoint(losses, *state):
        save(out, losses, *state)
        write_text(out / "history.csv", outputs.history_csv(losses))
        out.publish()

    return on_checkpoint


def run_training(prog: str, train, inputs: RunInputs, out, *, model, progress: bool, save, stop):
    """`train` (jaxseq's or torchseq's) on the run's inputs, checkpointing with `save(out, losses,
    *state)` into `out` (None: a process that writes nothing) and ending early where `stop()` says so.
    A diverged run's files (`outputs.write_diverged`) become --out, and it says so."""
    on_checkpoint = checkpoint_writer(out, save) if out is not None else (lambda *state: None)
    try:
        return train(
            inputs.config,
            model=model,
            batch=inputs.data,
            progress=progress,
            resume=inputs.checkpoint,
            on_checkpoint=on_checkpoint,
            stop=stop,
        )
    except DivergenceError as e:
        if out is None:
            raise
        summary = {
            "status": "diverged",
            "diverged_at_step": len(e.losses) + 1,
            "last_finite_loss": float(e.losses[-1]) if len(e.losses) else None,
            "steps": len(e.losses),
            "config": dataclasses.asdict(inputs.config),
        }
        outputs.write_diverged(out, name=prog, losses=e.losses, summary=summary)
        out.publish()
        raise Diverged(f"{e}; the run up to there in {out}/") from None


def resume_command(prog: str, out) -> str:
    return f"{prog} train --resume {shlex.quote(str(out))}"


def finish_train(prog: str, out, inputs: RunInputs, losses, summary: dict, predict, save_weights, stop) -> int:
    """Writes a finished or stopped run into `out` (see `outputs.write_run`), prints its summary
    line, and returns the exit status: 0, or 128 + the signal that stopped it (130 for SIGINT,
    143 for SIGTERM). `predict(x, lengths)`: the trained model's outputs for the run's data."""
    config, data = inputs.config, inputs.data
    stopped = len(losses) < config.steps
    status = "interrupted" if stopped else "finished"
    summary = {"status": status, "final_loss": float(losses[-1]), "steps": len(losses), **summary}
    if stopped:
        summary |= {"signal": stop.name, "resume": resume_command(prog, out)}
    summary["config"] = dataclasses.asdict(config)
    pred = predict(data.x, data.lengths)
    outputs.write_run(out, name=prog, losses=losses, summary=summary, data=data, pred=pred, save_weights=save_weights)
    if stopped:
        where = f"after {len(losses)} of {config.steps} steps, loss {losses[-1]:.3e}"
        print(f"{prog}: {summary['signal']} {where}; wrote {out}/")
        print(f"continue it with: {resume_command(prog, out)}")
        return stop.exit_status
    if summary.get("steps_run", config.steps) == 0:
        speed = "already finished: no step to run"
    else:
        speed = f"{summary['steps_per_second']:.0f} steps/s"
    if "compile_seconds" in summary:
        speed += f" (compile {summary['compile_seconds']:.1f} s) on {summary['platform']}"
        if summary["devices"] > 1:
            speed += f" x {summary['devices']} devices"
    print(f"{prog}: {config.steps} steps, final loss {losses[-1]:.3e}, {speed}; wrote {out}/")
    own = inputs.checkpoint is None and config.init_from is None and config.init_from_torch is None
    if own:
        print(INITIALISATION[prog].format(seed=config.seed))
    return 0


# Why `jaxseq train` and `torchseq train` with the same options end at different losses.
INITIALISATION = {
    "jaxseq": "(from jaxseq's own draw of the initial weights for --seed {seed}; torchseq train draws other "
    "weights, so it ends at another loss: --init-from-torch {seed} starts from torchseq's)",
    "torchseq": "(from torch's draw of the initial weights for --seed {seed}; jaxseq train draws other "
    "weights, so it ends at another loss: jaxseq train --init-from-torch {seed} starts from these)",
}


def exit_status(losses, config: TrainConfig, stop: StopOnSignal) -> int:
    """A run's exit status where it writes nothing (a multi-host run's other processes): as `finish_train`'s."""
    return stop.exit_status if len(losses) < config.steps else 0


def predict_inputs(args: argparse.Namespace, dtype: str, input_size: int):
    """The Sequences `predict` runs on, in the weights' dtype, checked against the model's input size."""
    from jaxseq.app.task import load_sequences

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
    write_text(out, outputs.predictions_csv(batch, pred))
    up_to = "" if batch.lengths is None else "up to "
    print(f"wrote {len(batch.x)} sequence(s) of {up_to}{batch.x.shape[1]} steps to {out}")
