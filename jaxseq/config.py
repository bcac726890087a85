"""One frozen configuration for a training run, shared by jaxseq and torchseq.

No framework is imported here: the PyTorch reference reads the same config.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "float64")
LOSSES = ("sum", "mean")
INITS = ("torch", "flax")
PLATFORMS = ("cpu", "gpu", "tpu")
CELLS = ("lstm", "gru", "rnn")  # torch.nn.LSTM, GRU, RNN (tanh)
TASKS = ("shifted", "windows", "sine", "running-sum")  # see jaxseq.task


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps, each on the whole data or one minibatch of it
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # "adam" or "sgd", PyTorch's defaults (betas 0.9/0.999, eps 1e-8)
    hidden: int = 100  # hidden size H of each recurrent layer
    cell: str = "lstm"  # the recurrent layer: "lstm", "gru" or "rnn" (tanh), as torch.nn's
    layers: int = 1  # stacked recurrent layers (torch's num_layers)
    bidirectional: bool = False  # a forward and a reverse direction per layer; the head sees both
    seed: int = 0  # seed of the framework's own initialisation
    dtype: str = "float64"  # "float32" or "float64" for parameters, data and arithmetic
    loss: str = "sum"  # per-step MSE "sum"med over time (the original script) or "mean"
    task: str = "shifted"  # built-in data: "shifted" (the seed's one sequence), "windows", "sine", "running-sum"
    sequences: int = 256  # task: sequences generated for windows, sine and running-sum
    length: int = 21  # task: sequence length T (the longest window for "windows")
    spacing: float = 0.05  # task: inputs x_t = t * spacing ("shifted", "windows")
    shift: float = 0.1  # task: targets y_t = x_t + shift ("shifted", "windows")
    data_seed: int = 0  # task: seed of the generated sequences and of the minibatch draws
    data: str | None = None  # the user's data file (CSV, .npy, .npz; see jaxseq.data) instead of the task
    batch_size: int | None = None  # sequences per step, drawn anew each step; None: all of them
    init_from: str | None = None  # start from this weights file (.safetensors or .pt, PyTorch's names)
    zero_grad: bool = True  # False reproduces the seed question's bug: gradients summed over all steps
    init: str = "torch"  # jaxseq only: "torch" (uniform in ±1/sqrt(H)) or "flax" initialisers
    init_from_torch: int | None = None  # jaxseq only: start from torchseq's weights for this seed
    checkpoint_every: int | None = None  # write a checkpoint every N steps (resumable with --resume)
    chunk: int = 100  # jaxseq only: steps per compiled chunk; the host wakes once per chunk
    platform: str | None = None  # jaxseq only: "cpu", "gpu" or "tpu"; None lets JAX choose

    def __post_init__(self):
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("dtype", DTYPES),
            ("loss", LOSSES),
            ("init", INITS),
            ("cell", CELLS),
            ("task", TASKS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.platform is not None and self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}; got {self.platform!r}")
        positive = ("steps", "hidden", "layers", "sequences", "length", "chunk") + tuple(
            name for name in ("checkpoint_every", "batch_size") if getattr(self, name) is not None
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise ValueError(f"lr must be a positive finite number; got {self.lr!r}")
        if not self.spacing > 0 or self.spacing == float("inf"):
            raise ValueError(f"spacing must be a positive finite number; got {self.spacing!r}")
        if not isinstance(self.data_seed, int) or not 0 <= self.data_seed < 2**32:
            raise ValueError(f"data_seed must be an integer in [0, 2^32); got {self.data_seed!r}")
        self._check_task_options()
        if self.init_from is not None and self.init_from_torch is not None:
            raise ValueError("give at most one of --init-from and --init-from-torch")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional must be true or false; got {self.bidirectional!r}")
        if self.init != "torch" and (self.cell, self.layers, self.bidirectional) != ("lstm", 1, False):
            raise ValueError("--init flax is for the single-layer, one-direction LSTM only")
        if self.shift != self.shift or abs(self.shift) == float("inf"):
            raise ValueError(f"shift must be a finite number; got {self.shift!r}")

    def _check_task_options(self) -> None:
        """Refuses a task option that the chosen data would ignore (set away from its default)."""
        d = TrainConfig.__dataclass_fields__
        if self.data is not None:
            unused = ("task", "sequences", "length", "spacing", "shift")
            source = "--data (the file decides)"
        elif self.task == "shifted":
            unused, source = ("sequences",), "--task shifted (one sequence)"
        elif self.task in ("sine", "running-sum"):
            unused, source = ("spacing", "shift"), f"--task {self.task}"
        else:
            unused = ()
        for name in unused:
            if getattr(self, name) != d[name].default:
                raise ValueError(f"--{name.replace('_', '-')} does not apply to {source}")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def checkpoint_due(self, steps_done: int) -> bool:
        """Whether a run writes a checkpoint after `steps_done` steps: every `checkpoint_every`, and at the end."""
        every = self.checkpoint_every
        return bool(every) and (steps_done % every == 0 or steps_done == self.steps)


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


def add_arguments(parser: argparse.ArgumentParser, *, jax_options: bool, lr_list: bool = False) -> None:
    """Adds one option per TrainConfig field (the jaxseq-only ones when `jax_options`;
    --lr as a comma-separated list when `lr_list`)."""
    d = TrainConfig()
    parser.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps (%(default)s)")
    if lr_list:  # `jaxseq sweep`: several rates
        parser.add_argument("--lr", type=_lr_list, default=list(SWEEP_LRS), help="learning rates, e.g. 1e-4,1e-3")
    else:
        parser.add_argument("--lr", type=_positive_float, default=d.lr, help="learning rate (%(default)s)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="(%(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=d.hidden, help="hidden size (%(default)s)")
    parser.add_argument("--cell", choices=CELLS, default=d.cell, help="recurrent layer (%(default)s)")
    parser.add_argument("--layers", type=positive_int, default=d.layers, help="stacked layers (%(default)s)")
    parser.add_argument("--bidirectional", action="store_true", help="forward and reverse directions in every layer")
    parser.add_argument("--seed", type=_int, default=d.seed, help="initialisation seed (%(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="(%(default)s)")
    parser.add_argument(
        "--loss", choices=LOSSES, default=d.loss, help="per-step MSE summed or averaged over time (%(default)s)"
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, metavar="B", help="sequences per step (all of them)"
    )
    parser.add_argument(
        "--init-from", default=None, metavar="FILE", help="start from these weights (.safetensors or .pt)"
    )
    parser.add_argument(
        "--checkpoint-every", type=positive_int, default=None, metavar="N", help="write a checkpoint every N steps"
    )
    parser.add_argument(
        "--resume", default=None, metavar="DIR", help="continue the run checkpointed in DIR, with its options"
    )
    parser.add_argument(
        "--no-zero-grad",
        dest="zero_grad",
        action="store_false",
        help="never reset gradients, as the seed question's script did (the bug)",
    )
    if jax_options:
        parser.add_argument("--init", choices=INITS, default=d.init, help="initialisers (%(default)s)")
        parser.add_argument(
            "--init-from-torch",
            type=_int,
            default=None,
            metavar="SEED",
            help="start from the weights torchseq builds with this seed (needs torch)",
        )
        parser.add_argument(
            "--chunk", type=positive_int, default=d.chunk, help="steps per compiled chunk (%(default)s)"
        )
        parser.add_argument("--platform", choices=PLATFORMS, default=None, help="JAX platform (JAX's default)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the data: --task and its sizes, --data-seed, or --data FILE."""
    d = TrainConfig()
    parser.add_argument("--task", choices=TASKS, default=d.task, help="built-in data (%(default)s; see jaxseq.task)")
    parser.add_argument(
        "--sequences", type=positive_int, default=d.sequences, help="task: sequences to generate (%(default)s)"
    )
    parser.add_argument("--length", type=positive_int, default=d.length, help="task: sequence length (%(default)s)")
    parser.add_argument("--spacing", type=_positive_float, default=d.spacing, help="task: input spacing (%(default)s)")
    parser.add_argument(
        "--shift", type=_finite_float, default=d.shift, help="task: target = input + shift (%(default)s)"
    )
    parser.add_argument(
        "--data-seed",
        type=_seed32,
        default=d.data_seed,
        help="seed of the data and the minibatches (%(default)s)",
    )
    parser.add_argument("--data", default=None, metavar="FILE", help="your CSV/.npy/.npz instead of the task")


def from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig named by parsed options; fields without an option keep their default."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def resumed_config(args: argparse.Namespace, recorded: TrainConfig) -> TrainConfig:
    """The recorded run's config; an option given now that differs from both it and its default is an error."""
    given, default = from_args(args), TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        now, then = getattr(given, f.name), getattr(recorded, f.name)
        if now != getattr(default, f.name) and now != then:
            flag = "--" + f.name.replace("_", "-")
            raise ValueError(f"--resume continues the recorded run with {flag} {then}; {flag} {now} conflicts")
    return recorded
