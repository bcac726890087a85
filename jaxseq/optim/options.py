"""Each torch.optim optimizer without any framework: its options and torch's default for each, and
`Rule`, one param group's optimizer with its options. `jaxseq.app.config` checks the command line's
options against this table, so nothing here imports JAX or torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxseq.errors import OptionError

# The optimizers that step as an optax transformation (one gradient in, one update out), their
# options and torch's default for each. The command line's --optimizer takes these names.
OPTIMIZER_OPTIONS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": False},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False, "maximize": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False, "maximize": False},
    "rmsprop": {
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
        "maximize": False,
    },
    "adagrad": {
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
        "maximize": False,
    },
    "nadam": {
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum_decay": 4e-3,
        "decoupled_weight_decay": False,
        "maximize": False,
    },
    "radam": {
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "decoupled_weight_decay": False,
        "maximize": False,
    },
    "adamax": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "maximize": False},
    "adadelta": {"rho": 0.9, "eps": 1e-6, "weight_decay": 0.0, "maximize": False},
    "rprop": {"etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0), "maximize": False},
    "asgd": {"lambd": 1e-4, "alpha": 0.75, "t0": 1e6, "weight_decay": 0.0, "maximize": False},
}
OPTIONS = OPTIMIZER_OPTIONS
TORCH_CLASSES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "nadam": "NAdam",
    "radam": "RAdam",
    "adamax": "Adamax",
    "adadelta": "Adadelta",
    "rprop": "Rprop",
    "asgd": "ASGD",
}
# The optimizers whose momentum (SGD, RMSprop) or beta1 (the Adams) OneCycleLR and CyclicLR cycle.
CYCLED_MOMENTUM = ("sgd", "rmsprop")
CYCLED_BETA1 = ("adam", "adamw", "nadam", "radam", "adamax")

# torch.optim.LBFGS's options besides lr, and torch's defaults (max_eval None: max_iter * 5 // 4).
# LBFGS calls its objective several times a step, so it is not a Rule (see jaxseq.optim.lbfgs).
LBFGS_OPTIONS: dict[str, Any] = {
    "max_iter": 20,
    "max_eval": None,
    "tolerance_grad": 1e-7,
    "tolerance_change": 1e-9,
    "history_size": 100,
    "line_search_fn": None,
}


@dataclass(frozen=True)
class Rule:
    """One param group's update rule: a torch.optim optimizer and its options, without torch.
    Options that do not apply to `name` keep their field default and are ignored."""

    name: str  # a key of OPTIMIZER_OPTIONS: "sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam", ...
    lr: float  # the base learning rate (torch's initial_lr; OneCycleLR's max_lr; CyclicLR's base_lr)
    weight_decay: float = 0.0  # L2 added to the gradient; AdamW (and decoupled_weight_decay): p *= 1 - lr * wd
    momentum: float = 0.0  # SGD, RMSprop
    dampening: float = 0.0  # SGD: later gradients enter the buffer scaled by 1 - dampening
    nesterov: bool = False  # SGD
    betas: tuple[float, float] = (0.9, 0.999)  # Adam, AdamW, NAdam, RAdam, Adamax: moment decay rates
    eps: float = 1e-8  # Adam(W), NAdam, RAdam, Adamax, RMSprop; Adagrad's default is 1e-10, Adadelta's 1e-6
    amsgrad: bool = False  # Adam, AdamW: divide by the running maximum of the second moment
    alpha: float = 0.99  # RMSprop: decay of the squared-gradient average; ASGD (0.75): the power of eta's decay
    centered: bool = False  # RMSprop: subtract the squared mean gradient
    lr_decay: float = 0.0  # Adagrad: lr / (1 + (t - 1) * lr_decay)
    initial_accumulator_value: float = 0.0  # Adagrad: the sum of squares starts here
    momentum_decay: float = 4e-3  # NAdam: mu_t = beta1 (1 - 0.96 ** (t * momentum_decay) / 2)
    decoupled_weight_decay: bool = False  # NAdam, RAdam: AdamW's decay instead of L2
    rho: float = 0.9  # Adadelta: decay of both running averages
    etas: tuple[float, float] = (0.5, 1.2)  # Rprop: step-size factors on a sign change / on the same sign
    step_sizes: tuple[float, float] = (1e-6, 50.0)  # Rprop: the step sizes' bounds
    lambd: float = 1e-4  # ASGD: decay term
    t0: float = 1e6  # ASGD: the step from which it averages
    maximize: bool = False  # ascend instead of descend

    @property
    def torch_options(self) -> dict[str, Any]:
        """The keyword arguments of torch.optim.<Class> (besides params and lr)."""
        return {key: getattr(self, key) for key in OPTIONS[self.name]}


PAIRS = ("betas", "etas", "step_sizes")  # the options that are two numbers


def rule(name: str, lr: float, **options) -> Rule:
    """The Rule for optimizer `name` with torch's defaults for the options not given (None = default).

    Raises OptionError for an unknown optimizer, an option it does not have, or a value torch refuses.
    """
    if name not in OPTIONS:
        raise OptionError(f"optimizer must be one of {', '.join(OPTIONS)}; got {name!r}")
    given = {key: value for key, value in options.items() if value is not None}
    foreign = sorted(set(given) - set(OPTIONS[name]))
    if foreign:
        raise OptionError(f"optimizer {name!r} has no option {', '.join(foreign)}")
    values = {**OPTIONS[name], **given}
    for key in PAIRS:
        if key in values:
            values[key] = tuple(float(b) for b in values[key])
    r = Rule(name, float(lr), **values)
    _check_rule(r)
    return r


def refuse(problems, prefix: str = "") -> None:
    """Raises OptionError(prefix + message) for the first (bad, message) pair whose `bad` holds."""
    for bad, message in problems:
        if bad:
            raise OptionError(prefix + message)


def _check_rule(r: Rule) -> None:
    """torch's own argument checks, raised where the option enters."""
    refuse(
        [
            (r.lr < 0, f"lr must be >= 0; got {r.lr}"),
            (r.weight_decay < 0, f"weight_decay must be >= 0; got {r.weight_decay}"),
            (r.momentum < 0, f"momentum must be >= 0; got {r.momentum}"),
            (r.eps < 0, f"eps must be >= 0; got {r.eps}"),
            (not all(0 <= b < 1 for b in r.betas), f"betas must be in [0, 1); got {r.betas}"),
            (r.alpha < 0, f"alpha must be >= 0; got {r.alpha}"),
            (r.lr_decay < 0, f"lr_decay must be >= 0; got {r.lr_decay}"),
            (
                r.initial_accumulator_value < 0,
                f"initial_accumulator_value must be >= 0; got {r.initial_accumulator_value}",
            ),
            (r.nesterov and (r.momentum <= 0 or r.dampening != 0), "nesterov needs momentum > 0 and dampening 0"),
            (r.momentum_decay < 0, f"momentum_decay must be >= 0; got {r.momentum_decay}"),
            (not 0 <= r.rho <= 1, f"rho must be in [0, 1]; got {r.rho}"),
            (not 0 < r.etas[0] < 1 < r.etas[1], f"etas must be 0 < etaminus < 1 < etaplus; got {r.etas}"),
            (not 0 <= r.step_sizes[0] <= r.step_sizes[1], f"step_sizes must be 0 <= min <= max; got {r.step_sizes}"),
        ],
        f"optimizer {r.name!r}: ",
    )
