"""The command line's options and its one-line errors, shared by `jaxseq` and `torchseq`.

One option per `TrainConfig` field (`add_arguments`), each checked by its argparse type where it
enters; an option left out parses as None (so `--resume` can tell what was given), and
`from_args` turns the parsed options into the config, with its defaults for the rest. `run_main`
runs a command and turns a `jaxseq.errors.UserError`, and only that, into one line on stderr,
`PROG COMMAND: error: ...`, and its exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import signal
import sys
import threading
from importlib import metadata

from jaxseq.app.config import CELLS, DTYPES, INITS, LOSSES, OPTIMIZERS, PLATFORMS, TASKS, TrainConfig
from jaxseq.errors import OptionError, UserError


def option_type(convert, ok, expected: str):
    """An argparse `type=` that converts, checks, and says what it expected on failure."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = option_type(int, lambda v: v > 0, "a positive integer")
_positive_float = option_type(float, lambda v: 0 < v < math.inf, "a positive number")
_finite_float = option_type(float, math.isfinite, "a finite number")
_int = option_type(int, lambda v: True, "an integer")
_seed32 = option_type(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2^32)")
_lr_list = option_type(
    lambda text: [float(v) for v in text.split(",")],
    lambda rates: all(0 < r < math.inf for r in rates),
    "positive numbers separated by commas",
)
SWEEP_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


# Which options each command honours (and so offers): name -> commands.
RUN_OPTIONS = {
    "--init-from": ("train", "compare"),
    "--checkpoint-every": ("train",),
    "--resume": ("train",),
    "--init": ("jax train", "jax sweep"),
    "--init-from-torch": ("jax train",),
    "--chunk": ("jax train", "jax compare", "jax sweep"),
    "--platform": ("jax train", "jax compare", "jax sweep"),
}


def offers(option: str, framework: str, command: str) -> bool:
    """Whether `framework`'s `command` ("train", "compare", "sweep") honours `option` (see RUN_OPTIONS)."""
    return any(c in (command, f"{framework} {command}") for c in RUN_OPTIONS[option])


def add_arguments(parser: argparse.ArgumentParser, *, framework: str = "jax", command: str = "train") -> None:
    """Adds one option per TrainConfig field that `framework`'s `command` honours (RUN_OPTIONS), each
    None when left out (TrainConfig's default applies; the help names it); `sweep` takes --lr as a
    comma-separated list."""
    d = TrainConfig()
    has = functools.partial(offers, framework=framework, command=command)
    parser.add_argument("--steps", type=positive_int, help=f"optimizer steps ({d.steps})")
    if command == "sweep":
        rates = ",".join(f"{r:g}" for r in SWEEP_LRS)
        parser.add_argument("--lr", type=_lr_list, default=list(SWEEP_LRS), help=f"learning rates ({rates})")
    else:
        parser.add_argument("--lr", type=_positive_float, help=f"learning rate ({d.lr:g})")
    add_optimizer_arguments(parser)
    parser.add_argument("--hidden", type=positive_int, help=f"hidden size ({d.hidden})")
    parser.add_argument("--cell", choices=CELLS, help=f"recurrent layer ({d.cell})")
    parser.add_argument("--layers", type=positive_int, help=f"stacked layers ({d.layers})")
    parser.add_argument("--bidirectional", action="store_true", help="forward and reverse directions in every layer")
    parser.add_argument("--seed", type=_int, help=f"initialisation seed ({d.seed}; each framework draws its own)")
    parser.add_argument("--dtype", choices=DTYPES, help=f"({d.dtype})")
    parser.add_argument("--loss", choices=LOSSES, help=f"per-step MSE summed or averaged over time ({d.loss})")
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=positive_int, metavar="B", help="sequences per step (all of them)")
    parser.add_argument(
        "--no-zero-grad",
        dest="zero_grad",
        action="store_false",
        help="never reset gradients, as the seed question's script did (the bug)",
    )
    if has("--init-from"):
        parser.add_argument(
            "--init-from", metavar="FILE", help="start from these weights (.safetensors, .pt, or a run directory)"
        )
    if has("--checkpoint-every"):
        parser.add_argument(
            "--checkpoint-every",
            type=positive_int,
            metavar="N",
            help="also write a checkpoint every N steps (one is written at the end)",
        )
    if has("--resume"):
        parser.add_argument(
            "--resume",
            metavar="DIR",
            help="continue the run in DIR with its recorded options, to its --steps or to a new --steps N",
        )
    if has("--init"):
        parser.add_argument("--init", choices=INITS, help=f"initialisers ({d.init})")
    if has("--init-from-torch"):
        parser.add_argument(
            "--init-from-torch",
            type=_int,
            metavar="SEED",
            help="start from the weights torchseq builds with this seed (needs torch)",
        )
    if has("--chunk"):
        parser.add_argument("--chunk", type=positive_int, help=f"steps per compiled chunk ({d.chunk})")
    if has("--platform"):
        parser.add_argument("--platform", choices=PLATFORMS, help="JAX platform (JAX's default)")


_non_negative = option_type(float, lambda v: 0 <= v < math.inf, "a number >= 0")
_betas = option_type(
    lambda text: tuple(float(v) for v in text.split(",")),
    lambda b: len(b) == 2 and all(0 <= v < 1 for v in b),
    "two numbers in [0, 1), e.g. 0.9,0.999",
)


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """--optimizer and its options (jaxseq.optim), each defaulting to torch.optim's for that optimizer."""
    d = TrainConfig()
    g = parser.add_argument_group("optimizer (torch.optim's; an option left out takes its default)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"({d.optimizer})")
    g.add_argument("--weight-decay", type=_non_negative, metavar="WD", help="(AdamW 1e-2, the others 0)")
    g.add_argument("--momentum", type=_non_negative, metavar="M", help="sgd, rmsprop (0)")
    g.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    g.add_argument("--betas", type=_betas, metavar="B1,B2", help="adam, adamw (0.9,0.999)")
    g.add_argument("--eps", type=_non_negative, help="adam, adamw, rmsprop (1e-8), adagrad (1e-10)")
    g.add_argument("--amsgrad", action="store_true", help="adam, adamw")
    g.add_argument(
        "--schedule",
        metavar="SPEC",
        help="learning-rate schedule, stepped every step: cosine[:ETA_MIN], step:SIZE[:GAMMA], "
        "multistep:M1,M2[:GAMMA], exponential:GAMMA, linear:START:END[:ITERS], constant:FACTOR:ITERS, "
        "onecycle[:PCT[:cos|linear]], A+B@STEP (one after the other)",
    )
    g.add_argument("--clip-grad-norm", type=_positive_float, metavar="MAX", help="clip the gradients' total 2-norm")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the data: --task and its sizes, --data-seed, or --data FILE."""
    d = TrainConfig()
    parser.add_argument("--task", choices=TASKS, help=f"built-in data ({d.task}; see jaxseq.app.task)")
    parser.add_argument("--sequences", type=positive_int, help=f"task: sequences to generate ({d.sequences})")
    parser.add_argument("--length", type=positive_int, help=f"task: sequence length ({d.length})")
    parser.add_argument("--spacing", type=_positive_float, help=f"task: input spacing ({d.spacing})")
    parser.add_argument("--shift", type=_finite_float, help=f"task: target = input + shift ({d.shift})")
    parser.add_argument("--data-seed", type=_seed32, help=f"seed of the data and the minibatches ({d.data_seed})")
    parser.add_argument("--data", metavar="FILE", help="your CSV/.npy/.npz instead of the task")


def given_options(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the command line set: {field: value}. An option left out parses as
    None; a switch (--bidirectional, --no-zero-grad) counts where it is on."""
    default = TrainConfig()
    given = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None and (not isinstance(value, bool) or value != getattr(default, f.name)):
            given[f.name] = value
    return given


def from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig named by parsed options; fields without an option keep their default."""
    return TrainConfig(**given_options(args))


# What --resume lets a command line change: how far the run goes, and how often it is saved.
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


def resumed_config(args: argparse.Namespace, recorded: TrainConfig, steps_done: int) -> TrainConfig:
    """The recorded run's config, with --steps N (extending the run) and --checkpoint-every where
    given; any other option given now that differs from the recorded one is an OptionError."""
    given = given_options(args)
    for name, now in given.items():
        then = getattr(recorded, name)
        if name not in RESUMABLE_CHANGES and now != then:
            flag = "--" + name.replace("_", "-")
            raise OptionError(f"--resume continues the recorded run with {flag} {then}; {flag} {now} conflicts")
    config = recorded.replace(**{name: given[name] for name in RESUMABLE_CHANGES if name in given})
    if config.steps < steps_done:
        raise OptionError(f"--resume: the run has done {steps_done} steps already; --steps {config.steps} is fewer")
    return config


def add_run_arguments(p: argparse.ArgumentParser, *, framework: str = "jax", command: str = "train") -> None:
    """A run command's options: the config's (`add_arguments`), --out, --no-progress, and for JAX --no-cache."""
    add_arguments(p, framework=framework, command=command)
    default = f"runs/{framework}seq" if command == "train" else f"runs/{command}"
    resumed = "; with --resume, the resumed run's directory" if command == "train" else ""
    p.add_argument(
        "--out",
        default=None if command == "train" else default,  # train: None until `out_directory` says which
        metavar="DIR",
        help=f"output directory ({default}{resumed}); new, empty or a run's, which the run replaces whole "
        "once it has its own results (see docs/cli.md)",
    )
    p.set_defaults(default_out=default)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    if framework == "jax":
        p.add_argument(
            "--no-cache",
            dest="cache",
            action="store_false",
            help="don't keep compiled programs on disk ($JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxseq/xla)",
        )


_host_port = option_type(
    lambda text: text if text.rpartition(":")[0] and 0 < int(text.rpartition(":")[2]) < 65536 else None,
    lambda v: True,
    "HOST:PORT",
)
_index = option_type(int, lambda v: v >= 0, "a non-negative integer")


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


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        required=True,
        help="a run directory (its weights, else its checkpoint), or a .safetensors / .pt file",
    )
    add_data_arguments(p)
    p.add_argument(
        "--out", default=None, metavar="FILE", help="CSV file to write (predictions.csv in the --weights run directory)"
    )


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors reported as one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def version() -> str:
    try:
        return metadata.version("jaxseq")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def run_main(prog: str, description: str, commands: dict, argv=None) -> int:
    """Parses argv and runs the chosen command. `commands`: name -> (one-line help, add_arguments,
    run). Without a command, prints the commands and returns 2. A `UserError` (bad input: an
    option, a file, a diverging run) becomes one line on stderr, `PROG COMMAND: error: ...`, and
    its exit status (2 for an option, 1 otherwise); anything else is a bug and keeps its traceback."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version()}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    for name, (summary, add, _) in commands.items():
        p = sub.add_parser(name, help=summary, description=summary)
        add(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    where = f"{prog} {args.command}"
    try:
        with terminate_as_interrupt():
            return commands[args.command][2](args) or 0
    except (KeyboardInterrupt, Terminated) as e:
        name, signum = ("SIGTERM", signal.SIGTERM) if isinstance(e, Terminated) else ("interrupted", signal.SIGINT)
        print(f"{where}: {name}; nothing more written", file=sys.stderr)
        return 128 + signum
    except UserError as e:
        print(f"{where}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return e.exit_code


class Terminated(BaseException):
    """SIGTERM, raised where the program is, as Ctrl-C raises KeyboardInterrupt: `with` blocks
    unwind (a half-written --out is removed, an earlier run's stays) and the command exits 143.
    A train or sweep command catches the signal itself and stops after its current chunk instead
    (`jaxseq.app.runs.StopOnSignal`). A process started with SIGTERM ignored keeps ignoring it."""


@contextlib.contextmanager
def terminate_as_interrupt():
    # only the main thread may set handlers; an ignored SIGTERM stays ignored
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        yield
        return

    def terminate(signum, frame):
        raise Terminated

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
