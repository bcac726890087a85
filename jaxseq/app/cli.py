"""The `jaxseq` command: argument parsing and printing over the importable pieces.

    jaxseq train    trains on the shifted-sequence task (or --data) and writes --out DIR
    jaxseq compare  trains the same model from the same weights in JAX and PyTorch
    jaxseq sweep    trains one model per seed and learning rate in one compiled program
    jaxseq predict  writes a trained model's predictions as CSV
    jaxseq export   writes a run's weights as .safetensors or .pt under PyTorch's names
    jaxseq check    trains your PyTorch model and its JAX version side by side

Options: `jaxseq.app.options`; the run plumbing shared with `torchseq`: `jaxseq.app.runs`; the
rule by which a command writes its --out directory: `jaxseq.app.outputs.RunDir`. Neither JAX nor
torch is imported before a command has checked its arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from jaxseq.app import outputs, runs
from jaxseq.app.options import (
    add_host_arguments,
    add_predict_arguments,
    add_run_arguments,
    from_args,
    positive_int,
    run_main,
)
from jaxseq.errors import Diverged, OptionError, torch_required


def use_compilation_cache(args: argparse.Namespace) -> None:
    """Keeps compiled programs on disk (`jaxseq.app.training.enable_compilation_cache`) unless --no-cache."""
    if args.cache:
        from jaxseq.app.training import enable_compilation_cache

        enable_compilation_cache()


def initial_model(inputs: runs.RunInputs):
    """The model --init-from names (read once, by `runs.read_inputs`), or None for `train` to build."""
    if inputs.weights is None:
        return None
    from jaxseq.port.convert import from_torch

    return from_torch(inputs.weights)


def train_command(args: argparse.Namespace) -> int:
    from jaxseq.app import checkpoint

    inputs, run_dir = runs.start_run(args, checkpoint.load, hosts=True)
    config = inputs.config
    import jax
    import numpy as np

    from jaxseq.app.training import train
    from jaxseq.port.weights import save_weights

    use_compilation_cache(args)
    sizes = (inputs.data.x.shape[-1], inputs.data.y.shape[-1])

    def save(out, losses, leaves):
        checkpoint.save(out, checkpoint.Checkpoint(config, losses, leaves, sizes))

    start = time.perf_counter()
    with run_dir as out:
        # every process fetches the state at checkpoints (a collective where it spans hosts); one writes
        model = initial_model(inputs)
        with runs.StopOnSignal("jaxseq train") as stop:
            result = runs.run_training(
                "jaxseq", train, inputs, out, model=model, progress=args.progress, save=save, stop=stop
            )
        if out is None:
            return runs.exit_status(result.losses, config, stop)
        summary = {
            "framework": "jax",
            "steps_run": len(result.losses) - result.first_step,
            "steps_per_second": result.steps_per_second,
            "wall_seconds": time.perf_counter() - start,
            "compile_seconds": result.compile_seconds,
            "run_seconds": result.run_seconds,
            "platform": result.platform,
            "devices": result.devices,
            "processes": jax.process_count(),
            "jax_version": jax.__version__,
        }
        return runs.finish_train(
            "jaxseq",
            out,
            inputs,
            result.losses,
            summary,
            predict=lambda x, lengths: np.asarray(result.model(x, lengths)),
            save_weights=lambda path: save_weights(result.model, path),
            stop=stop,
        )


def compare_command(args: argparse.Namespace) -> int:
    from jaxseq.app import compare

    inputs, out_dir = runs.start_run(args)  # the data and --init-from, checked before --out is made
    config = inputs.config
    use_compilation_cache(args)
    with out_dir as out:
        c = compare.compare(config, inputs.data, progress=args.progress, weights=inputs.weights)
        compare.plot(out / "loss_curves.png", c, config)
        outputs.write_summary(out, compare.summary(c, config))
    print(compare.table(c, config))
    print(f"wrote {out}/")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxseq.app.crossing import run_weights
    from jaxseq.port.convert import from_torch

    model = from_torch(run_weights(args.weights))
    batch = runs.predict_inputs(args, str(model.linear.weight[...].dtype), model.architecture.input_size)
    runs.finish_predict(runs.predictions_path(args), batch, np.asarray(model(batch.x, batch.lengths)))
    return 0


RUN_FORMATS = ("torch-run", "jax-run")  # a checkpointed run, resumable in the other framework


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="DIR", help="a run directory (its weights, else its checkpoint), or a weights file")
    p.add_argument(
        "--format",
        choices=("pt", "safetensors", *RUN_FORMATS),
        required=True,
        help="pt, safetensors: the weights; torch-run: a jaxseq run's checkpoint as torchseq's "
        "(torchseq train --resume), jax-run: a torchseq run's as jaxseq's (jaxseq train --resume)",
    )
    p.add_argument("--to", required=True, metavar="PATH", help="the file (pt, safetensors) or run directory to write")


def export_command(args: argparse.Namespace) -> int:
    from jaxseq.app.crossing import run_weights
    from jaxseq.files import atomic_write
    from jaxseq.port.weights import check_format, write_weights_file

    to = Path(args.to)
    if args.format == "pt" or args.format in RUN_FORMATS:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise torch_required(f"--format {args.format}") from None
    if args.format in RUN_FORMATS:
        return export_run(args.run, to, args.format)
    check_format(to, args.format)
    state_dict = run_weights(args.run)
    atomic_write(to, lambda tmp: write_weights_file(state_dict, tmp, args.format))
    print(f"wrote {to} ({args.format}, {len(state_dict)} tensors)")
    return 0


def export_run(run, to: Path, fmt: str) -> int:
    """A checkpointed run of one framework as a run directory of the other, resumable there."""
    from jaxseq.app import checkpoint, crossing

    if fmt == "torch-run":
        saved = checkpoint.load(run)
        data = runs.read_inputs(saved.config, resumed=True).data  # the model's sizes
        crossing.to_torch(run, to, data)
        resume = "torchseq"
    else:
        crossing.from_torch(run, to)
        resume = "jaxseq"
    print(f"wrote {to}/ (the run's checkpoint and history; continue it with: {resume} train --resume {to})")
    return 0


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, command="sweep")
    add_host_arguments(p)
    p.add_argument("--seeds", type=positive_int, default=4, help="seeds --seed, --seed+1, ... (%(default)s)")


def sweep_command(args: argparse.Namespace) -> int:
    from jaxseq.app import sweep

    lrs = args.lr
    inputs = runs.read_inputs(from_args(argparse.Namespace(**{**vars(args), "lr": lrs[0]})))
    config = inputs.config
    write = runs.join_hosts(args)
    runs.check_split(config, args.seeds * len(lrs), "models")
    out_dir = outputs.RunDir(args.out) if write else None
    use_compilation_cache(args)
    seeds = list(range(config.seed, config.seed + args.seeds))
    with runs.StopOnSignal("jaxseq sweep") as stop:
        result = sweep.sweep(config, seeds, lrs, inputs.data, progress=args.progress, stop=stop)
    if not write:
        return stop.exit_status
    with out_dir as out:
        sweep.plot(out / "sweep.png", result)
        outputs.write_summary(out, sweep.summary(result, config))
    print(sweep.table(result))
    if stop():
        print(f"jaxseq sweep: {stop.name} after {result.steps} of {config.steps} steps; wrote {out}/")
        return stop.exit_status
    print(f"wrote {out}/")
    if (result.diverged_at > 0).all():
        raise Diverged(f"every one of the {result.diverged_at.size} models diverged (see {out}/summary.json)")
    return 0


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file",
        metavar="FILE.py[:FUNCTION]",
        help="a Python file whose FUNCTION (default make) returns dict(model=..., optimizer=..., batches=...) "
        "and optionally loss, scheduler, clip_grad_norm, steps, jax_model (see jaxseq.parity.check)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="optimizer steps (default: the dict's steps, else 100 for one batch, one per batch for a list)",
    )
    p.add_argument(
        "--out", default="runs/check", metavar="DIR", help="where report.json and parity.png go (%(default)s)"
    )


def check_model_file(spec: str) -> None:
    """Refuses a FILE.py[:FUNCTION] whose file is missing or a directory, before torch or JAX is imported."""
    file, sep, function = spec.rpartition(":")
    path = Path(file if sep and function.isidentifier() and file else spec)
    if path.is_dir():
        raise OptionError(f"{path}: is a directory; give the Python file whose make() returns the model")
    if not path.is_file():
        raise OptionError(f"{path}: no such file")


def check_command(args: argparse.Namespace) -> int:
    check_model_file(args.file)
    run_dir = outputs.RunDir(args.out)
    from jaxseq import parity

    report = parity.check_file(args.file, steps=args.steps)  # every input checked before --out is made
    with run_dir as out:
        report.write(out)
    print(report.table())
    print(f"wrote {out}/")
    if not report.ok:
        # the verdict is the table's last line; this one says where to look, not the verdict again
        raise Diverged(f"{args.file}: torch and JAX differ (the DIFFERS line above; {out}/report.json)")
    return 0


COMMANDS = {
    "train": (
        "train the model on the task (or --data) and write the run into --out",
        lambda p: (add_run_arguments(p), add_host_arguments(p)),
        train_command,
    ),
    "compare": (
        "train the same model from the same weights in JAX and PyTorch, and compare",
        partial(add_run_arguments, command="compare"),
        compare_command,
    ),
    "sweep": (
        "train one model per seed and learning rate, all in one compiled program",
        add_sweep_arguments,
        sweep_command,
    ),
    "predict": (
        "write a trained model's predictions on the task (or --data) as CSV",
        add_predict_arguments,
        predict_command,
    ),
    "export": (
        "write a run's weights under PyTorch's names, as .safetensors or .pt",
        add_export_arguments,
        export_command,
    ),
    "check": (
        "train your PyTorch model and its JAX version side by side, and report where they part",
        add_check_arguments,
        check_command,
    ),
}


DESCRIPTION = """Train, compare and convert PyTorch-style recurrent models in JAX.

A command writing a directory (--out) writes it aside and puts it in --out's place once it has
something complete, so an earlier run's results stay whole until then (docs/cli.md)."""


def main(argv=None) -> int:
    return run_main("jaxseq", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
