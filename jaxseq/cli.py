"""The `jaxseq` command: a thin layer over the importable pieces.

    jaxseq train    trains on the shifted-sequence task (or --data) and writes --out DIR
    jaxseq compare  trains the same model from the same weights in JAX and PyTorch
    jaxseq predict  writes a trained model's predictions as CSV
    jaxseq export   writes a run's weights as .safetensors or .pt under PyTorch's names
    jaxseq sweep    trains one model per seed and learning rate in one compiled program

The shared command-line machinery (one-line errors, the train outputs) lives here too;
`torchseq.cli` uses it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from jaxseq.config import TrainConfig, add_arguments, add_data_arguments, from_args, option_type, positive_int

_host_port = option_type(
    lambda text: text if text.rpartition(":")[0] and 0 < int(text.rpartition(":")[2]) < 65536 else None,
    lambda v: True,
    "HOST:PORT",
)
_index = option_type(int, lambda v: v >= 0, "a non-negative integer")


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# Errors a user can cause: a bad option value or file (ValueError: DataError, ConversionError),
# an unwritable directory (OSError), a diverging run (FloatingPointError), a missing torch.
USER_ERRORS = (ValueError, OSError, FloatingPointError, ImportError)


def run_main(prog: str, description: str, commands: dict, argv=None) -> int:
    """Parses argv, runs the chosen command; a user error becomes one line on stderr and exit 1."""
    parser = Parser(prog=prog, description=description)
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
        print(f"{prog}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1


def add_train_arguments(p: argparse.ArgumentParser, *, framework: str = "jax", lr_list: bool = False) -> None:
    engine = "JAX" if framework == "jax" else "PyTorch"
    p.description = f"Train the recurrent model (LSTM, GRU or RNN, then a linear head) with {engine}."
    add_arguments(p, jax_options=framework == "jax", lr_list=lr_list)
    p.add_argument("--out", default=f"runs/{framework}seq", help="output directory (%(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    if framework == "jax":
        p.add_argument(
            "--no-cache",
            dest="cache",
            action="store_false",
            help="don't keep compiled programs on disk ($JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxseq/xla)",
        )


def add_host_arguments(p: argparse.ArgumentParser) -> None:
    """Options to run one program over several processes (hosts) with `jax.distributed`."""
    hosts = p.add_argument_group("several hosts (jax.distributed; run the same command on every host)")
    hosts.add_argument(
        "--distributed", action="store_true", help="join a multi-host run (Slurm, Open MPI: detected by JAX)"
    )
    hosts.add_argument(
        "--coordinator", type=_host_port, metavar="HOST:PORT", help="process 0's address (implies --distributed)"
    )
    hosts.add_argument(
        "--num-processes", type=positive_int, metavar="N", help="processes in all (implies --distributed)"
    )
    hosts.add_argument("--process-id", type=_index, metavar="I", help="this process, 0..N-1 (implies --distributed)")


def join_hosts(args: argparse.Namespace) -> bool:
    """Calls `jax.distributed.initialize` when asked to; True if this process writes the outputs
    (process 0, or the only one). Must run before anything else uses JAX."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and given == (None, None, None):
        return True
    if None not in given[1:] and args.process_id >= args.num_processes:
        raise ValueError(f"--process-id {args.process_id} must be below --num-processes {args.num_processes}")
    from jaxseq import devices

    try:
        devices.initialize(*given)
    except Exception as e:  # JAX raises several kinds (ValueError, RuntimeError, XlaRuntimeError)
        raise ValueError(f"jax.distributed.initialize failed: {str(e).splitlines()[0] if str(e) else e!r}") from None
    return devices.is_main_process()


def finish_train(prog: str, out, config: TrainConfig, data, losses, summary: dict, predict, save_weights) -> None:
    """Writes a finished run into `out` (see jaxseq.outputs.write_run) and prints its summary line.

    `data` is the run's Sequences; `predict(x, lengths)` the trained model's outputs for them."""
    from jaxseq import outputs

    summary = {"final_loss": float(losses[-1]), "steps": config.steps, **summary}
    summary["config"] = dataclasses.asdict(config)
    pred = predict(data.x, data.lengths)
    outputs.write_run(out, name=prog, losses=losses, summary=summary, data=data, pred=pred, save_weights=save_weights)
    speed = f"{summary['steps_per_second']:.0f} steps/s"
    if "compile_seconds" in summary:
        speed += f" (compile {summary['compile_seconds']:.1f} s) on {summary['platform']}"
        if summary["devices"] > 1:
            speed += f" x {summary['devices']} devices"
    print(f"{prog}: {config.steps} steps, final loss {losses[-1]:.3e}, {speed}; wrote {out}/")


def load_inputs(config: TrainConfig, *, resumed: bool = False):
    """The run's data (`load_sequences`), with --init-from's weights checked against it (unless
    `resumed`: the run then continues from its checkpoint's weights, and the file may be gone)."""
    from jaxseq.task import load_sequences

    data = load_sequences(config)
    if config.init_from is not None and not resumed:
        from jaxseq.convert import check_weights_fit, read_weights_file

        sizes = dict(input_size=data.x.shape[-1], output_size=data.y.shape[-1])
        check_weights_fit(read_weights_file(config.init_from), config, source=config.init_from, **sizes)
    return data


def check_split(config: TrainConfig, items: int, what: str) -> None:
    """In a multi-host run, refuses `items` that do not split over every device (before anything is written)."""
    import jax

    from jaxseq import devices

    if jax.process_count() > 1:
        devices.usable_devices(devices.platform_devices(config.platform), items, what)


def start_run(args: argparse.Namespace, load_checkpoint, *, hosts: bool = False):
    """(config, data, out, checkpoint or None) for a train command: a new run, or --resume DIR.

    Every input is read and checked (NumPy only) before anything else: with `hosts`, before this
    process joins the others (`join_hosts`) and the data's split over all their devices is
    checked. Then the output directory is created; a process of a multi-host run other than
    process 0 writes nothing and gets out=None.
    """
    from jaxseq import outputs
    from jaxseq.config import resumed_config

    if args.resume is None:
        config, out, checkpoint = from_args(args), args.out, None
    else:
        checkpoint = load_checkpoint(args.resume)
        config, out = resumed_config(args, checkpoint.config), args.resume
    data = load_inputs(config, resumed=checkpoint is not None)
    write = True
    if hosts:
        write = join_hosts(args)
        check_split(config, config.batch_size or len(data.x), "sequences per step")
    return config, data, outputs.prepare_out_dir(out) if write else None, checkpoint


def use_compilation_cache(args: argparse.Namespace) -> None:
    """Keeps compiled programs on disk (`jaxseq.training.enable_compilation_cache`) unless --no-cache."""
    if args.cache:
        from jaxseq.training import enable_compilation_cache

        enable_compilation_cache()


def checkpoint_writer(out, save):
    """The trainers' `on_checkpoint`: `save(out, losses, *state)`, then history.csv from the same losses."""
    from jaxseq import outputs

    def on_checkpoint(losses, *state):
        save(out, losses, *state)
        outputs.write_text(out / "history.csv", outputs.history_csv(losses))

    return on_checkpoint


def stop_on_divergence(out, error) -> None:
    """A diverged run keeps its finite history (and its last checkpoint), and says so."""
    from jaxseq import outputs

    outputs.write_text(out / "history.csv", outputs.history_csv(error.losses))
    raise FloatingPointError(f"{error}; history up to there in {out}/history.csv") from None


def train_command(args: argparse.Namespace) -> int:
    from jaxseq import checkpoint

    config, batch, out, resume = start_run(args, checkpoint.load, hosts=True)
    write = out is not None
    import jax
    import numpy as np

    from jaxseq.convert import save_weights
    from jaxseq.training import DivergenceError, train

    use_compilation_cache(args)

    def save(out, losses, leaves):
        checkpoint.save(out, checkpoint.Checkpoint(config, losses, leaves))

    start = time.perf_counter()
    try:
        # every process fetches the state at checkpoints (a collective where it spans hosts); one writes
        on_checkpoint = checkpoint_writer(out, save) if write else lambda *state: None
        result = train(config, batch=batch, progress=args.progress, resume=resume, on_checkpoint=on_checkpoint)
    except DivergenceError as e:
        if not write:
            raise FloatingPointError(str(e)) from None
        stop_on_divergence(out, e)
    if not write:
        return 0
    summary = {
        "framework": "jax",
        "steps_per_second": result.steps_per_second,
        "wall_seconds": time.perf_counter() - start,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "platform": result.platform,
        "devices": result.devices,
        "processes": jax.process_count(),
        "jax_version": jax.__version__,
    }
    finish_train(
        "jaxseq",
        out,
        config,
        batch,
        result.losses,
        summary,
        predict=lambda x, lengths: np.asarray(result.model(x, lengths)),
        save_weights=lambda path: save_weights(result.model, path),
    )
    return 0


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p)
    p.description = "Train the same model from the same weights in JAX and PyTorch, and compare."
    p.set_defaults(out="runs/compare")


def compare_command(args: argparse.Namespace) -> int:
    config = from_args(args)
    if config.init_from_torch is not None or config.init != "torch":
        raise ValueError("compare starts both frameworks from torchseq's weights for --seed (or --init-from)")
    if args.resume is not None or config.checkpoint_every is not None:
        raise ValueError("compare runs both frameworks start to finish; --resume and --checkpoint-every are for train")
    from jaxseq import compare, outputs

    data = load_inputs(config)  # checks the data and --init-from before the output directory is made
    out = outputs.prepare_out_dir(args.out)
    use_compilation_cache(args)
    c = compare.compare(config, data, progress=args.progress)

    def section(result, compile_seconds):
        return {
            "final_loss": float(result.losses[-1]),
            "steps_per_second": result.steps_per_second,
            "wall_seconds": compile_seconds + result.run_seconds,
        }

    summary = {
        "jax": {
            **section(c.jax, c.jax.compile_seconds),
            "compile_seconds": c.jax.compile_seconds,
            "platform": c.jax.platform,
        },
        "torch": section(c.torch, 0.0),
        "max_rel_loss_diff": c.max_rel_loss_diff,
        "max_abs_param_diff": c.max_abs_param_diff,
        "speed_ratio": c.jax.steps_per_second / c.torch.steps_per_second,
        "config": dataclasses.asdict(config),
    }
    compare.plot(out / "loss_curves.png", c, config)
    outputs.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(compare.table(c, config))
    print(f"wrote {out}/")
    return 0


def add_predict_arguments(p: argparse.ArgumentParser, *, framework: str = "jax") -> None:
    p.description = "Write a trained model's predictions on the task (or --data) as CSV."
    p.add_argument("--weights", required=True, help="a run directory, or a .safetensors / .pt file")
    add_data_arguments(p)
    p.add_argument("--out", default="predictions.csv", help="CSV file to write (%(default)s)")


def predict_batch(args: argparse.Namespace, dtype: str):
    """The (x, y) that `predict` runs on, in the weights' dtype."""
    from jaxseq.task import load_sequences

    return load_sequences(from_args(args).replace(dtype=dtype))


def finish_predict(out, batch, pred) -> None:
    from pathlib import Path

    from jaxseq import outputs

    outputs.write_text(Path(out), outputs.predictions_csv(batch, pred))
    up_to = "" if batch.lengths is None else "up to "
    print(f"wrote {len(batch.x)} sequence(s) of {up_to}{batch.x.shape[1]} steps to {out}")


def predict_command(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxseq.convert import load_weights

    model = load_weights(args.weights)
    batch = predict_batch(args, str(model.linear.kernel[...].dtype))
    if batch.x.shape[-1] != model.input_size:
        raise ValueError(f"--data has {batch.x.shape[-1]} input features; the weights take {model.input_size}")
    finish_predict(args.out, batch, np.asarray(model(batch.x, batch.lengths)))
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Write a run's weights under PyTorch's names, as .safetensors or .pt."
    p.add_argument("run", metavar="DIR", help="a run directory (or a weights file)")
    p.add_argument("--format", choices=("pt", "safetensors"), required=True)
    p.add_argument("--to", required=True, metavar="FILE", help="the file to write")


def export_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jaxseq import outputs
    from jaxseq.convert import read_weights_file, write_weights_file

    state_dict = read_weights_file(args.run)
    to = Path(args.to)
    if not to.parent.is_dir():
        raise OSError(f"cannot write {to}: no directory {str(to.parent)!r}")
    outputs.atomic_write(to, lambda tmp: write_weights_file(state_dict, tmp, args.format))
    print(f"wrote {to} ({args.format}, {len(state_dict)} tensors)")
    return 0


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p, lr_list=True)
    add_host_arguments(p)
    p.description = "Train one model per seed and learning rate, all in one compiled program."
    p.add_argument("--seeds", type=positive_int, default=4, help="seeds --seed, --seed+1, ... (%(default)s)")
    p.set_defaults(out="runs/sweep")


def sweep_command(args: argparse.Namespace) -> int:
    lrs = args.lr
    args.lr = lrs[0]
    config = from_args(args)
    starts = (args.resume, config.checkpoint_every, config.init_from, config.init_from_torch)
    if starts != (None,) * len(starts):
        raise ValueError(
            "sweep trains from each seed's own initialisation; "
            "no --resume, --checkpoint-every, --init-from, --init-from-torch"
        )
    from jaxseq import outputs, sweep

    data = load_inputs(config)  # checks the data before joining the other hosts and making --out
    write = join_hosts(args)
    check_split(config, args.seeds * len(lrs), "models")
    out = outputs.prepare_out_dir(args.out) if write else None
    use_compilation_cache(args)
    import jax

    seeds = list(range(config.seed, config.seed + args.seeds))
    result = sweep.sweep(config, seeds, lrs, data, progress=args.progress)
    runs = [
        {"seed": seed, "lr": lr, "final_loss": float(result.losses[i, j, -1])}
        for i, seed in enumerate(seeds)
        for j, lr in enumerate(lrs)
    ]
    if not write:
        return 0
    summary = {
        "runs": runs,
        "devices": result.devices,
        "processes": jax.process_count(),
        "model_steps_per_second": result.model_steps_per_second,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "config": dataclasses.asdict(config) | {"lr": lrs},
    }
    sweep.plot(out / "sweep.png", result)
    outputs.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(sweep.table(result))
    print(f"wrote {out}/")
    return 0


COMMANDS = {
    "train": (lambda p: (add_train_arguments(p), add_host_arguments(p)), train_command),
    "compare": (add_compare_arguments, compare_command),
    "predict": (add_predict_arguments, predict_command),
    "export": (add_export_arguments, export_command),
    "sweep": (add_sweep_arguments, sweep_command),
}


def main(argv=None) -> int:
    return run_main("jaxseq", "Train, compare and convert PyTorch-style LSTMs in JAX.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
