"""One frozen configuration for a training run, shared by jaxseq and torchseq.

No framework is imported here: the PyTorch reference reads the same config. The command-line
options that fill it are in `jaxseq.app.options`; the model a run trains is
`jaxseq.nn.model.Architecture.of_run(config, input_size, output_size)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jaxseq.errors import OptionError
from jaxseq.optim.options import OPTIMIZER_OPTIONS

# Each optimizer, its options and torch's default for each: jaxseq.optim.options (framework-free).
OPTIMIZERS = tuple(OPTIMIZER_OPTIONS)
DTYPES = ("float32", "float64")
LOSSES = ("sum", "mean")
INITS = ("torch", "flax")
PLATFORMS = ("cpu", "gpu", "tpu")
CELLS = ("lstm", "gru", "rnn")  # torch.nn.LSTM, GRU, RNN (tanh)
TASKS = ("shifted", "windows", "sine", "running-sum")  # see jaxseq.app.task


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # optimizer steps, each on the whole data or one minibatch of it
    lr: float = 1e-3  # learning rate
    optimizer: str = "adam"  # "adam", "adamw", "sgd", "rmsprop" or "adagrad": torch.optim's, its defaults
    weight_decay: float | None = None  # None: the optimizer's torch default (AdamW 1e-2, the others 0)
    momentum: float | None = None  # sgd, rmsprop (None: 0)
    nesterov: bool = False  # sgd, with momentum
    betas: tuple[float, float] | None = None  # adam, adamw (None: 0.9, 0.999)
    eps: float | None = None  # adam, adamw, rmsprop, adagrad (None: torch's, 1e-8; Adagrad's 1e-10)
    amsgrad: bool = False  # adam, adamw
    schedule: str | None = None  # learning-rate schedule, stepped every step (jaxseq.optim.parse_schedule)
    clip_grad_norm: float | None = None  # clip the gradients' total 2-norm to this, as torch's clip_grad_norm_
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
    data: str | None = None  # the user's data file (CSV, .npy, .npz; see jaxseq.app.data) instead of the task
    batch_size: int | None = None  # sequences per step, drawn anew each step; None: all of them
    init_from: str | None = None  # start from this weights file (.safetensors or .pt, PyTorch's names)
    zero_grad: bool = True  # False reproduces the seed question's bug: gradients summed over all steps
    init: str = "torch"  # jaxseq only: "torch" (uniform in ±1/sqrt(H)) or "flax" initialisers
    init_from_torch: int | None = None  # jaxseq only: start from torchseq's weights for this seed
    checkpoint_every: int | None = None  # also write a checkpoint every N steps (one is written at the end)
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
                raise OptionError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.platform is not None and self.platform not in PLATFORMS:
            raise OptionError(f"platform must be one of {', '.join(PLATFORMS)}; got {self.platform!r}")
        positive = ("steps", "hidden", "layers", "sequences", "length", "chunk") + tuple(
            name for name in ("checkpoint_every", "batch_size") if getattr(self, name) is not None
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise OptionError(f"{name} must be a positive integer; got {value!r}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise OptionError(f"lr must be a positive finite number; got {self.lr!r}")
        if not self.spacing > 0 or self.spacing == float("inf"):
            raise OptionError(f"spacing must be a positive finite number; got {self.spacing!r}")
        if not isinstance(self.data_seed, int) or not 0 <= self.data_seed < 2**32:
            raise OptionError(f"data_seed must be an integer in [0, 2^32); got {self.data_seed!r}")
        self._check_task_options()
        self._check_optimizer_options()
        if self.init_from is not None and self.init_from_torch is not None:
            raise OptionError("give at most one of --init-from and --init-from-torch")
        if self.init != "torch" and (self.init_from, self.init_from_torch) != (None, None):
            raise OptionError("--init flax draws new weights; it cannot go with --init-from or --init-from-torch")
        if not isinstance(self.bidirectional, bool):
            raise OptionError(f"bidirectional must be true or false; got {self.bidirectional!r}")
        if self.init != "torch" and (self.cell, self.layers, self.bidirectional) != ("lstm", 1, False):
            raise OptionError("--init flax is for the single-layer, one-direction LSTM only")
        if self.shift != self.shift or abs(self.shift) == float("inf"):
            raise OptionError(f"shift must be a finite number; got {self.shift!r}")

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
                raise OptionError(f"--{name.replace('_', '-')} does not apply to {source}")

    def optimizer_options(self) -> dict:
        """The optimizer options this config sets (those left unset take torch's defaults)."""
        given = {
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "nesterov": self.nesterov or None,
            "betas": self.betas,
            "eps": self.eps,
            "amsgrad": self.amsgrad or None,
        }
        return {name: value for name, value in given.items() if value is not None}

    def _check_optimizer_options(self) -> None:
        """Refuses an optimizer option the --optimizer lacks, or a value torch.optim would refuse."""
        if self.betas is not None:
            object.__setattr__(self, "betas", tuple(self.betas))  # a list, read back from JSON
        for name in self.optimizer_options():
            if name not in OPTIMIZER_OPTIONS[self.optimizer]:
                raise OptionError(f"--{name.replace('_', '-')} does not apply to --optimizer {self.optimizer}")
        for name in ("weight_decay", "momentum", "eps"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < float("inf"):
                raise OptionError(f"--{name.replace('_', '-')} must be a finite number >= 0; got {value!r}")
        if self.betas is not None and (len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)):
            raise OptionError(f"--betas must be two numbers in [0, 1); got {self.betas!r}")
        if self.nesterov and not self.momentum:
            raise OptionError("--nesterov needs --momentum above 0 (as torch.optim.SGD)")
        if self.clip_grad_norm is not None and not 0 < self.clip_grad_norm < float("inf"):
            raise OptionError(f"--clip-grad-norm must be a positive number; got {self.clip_grad_norm!r}")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def checkpoint_due(self, steps_done: int) -> bool:
        """Whether a run writes a checkpoint after `steps_done` steps: at the end, and every `checkpoint_every`."""
        every = self.checkpoint_every
        return steps_done == self.steps or (bool(every) and steps_done % every == 0)
