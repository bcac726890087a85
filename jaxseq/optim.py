"""torch.optim in optax, step for step: SGD, Adam, AdamW, RMSprop, Adagrad, their learning-rate
schedules, gradient clipping, and the optimizer state both ways.

A torch training step is `loss.backward(); clip_(...); optimizer.step(); scheduler.step()`. Here it
is one optax transformation, `chain(gradients, groups)`:

  gradients  torch's `clip_grad_norm_` then `clip_grad_value_` (identity where off); with
             zero_grad=False, first the running sum of all gradients (PyTorch without `zero_grad()`,
             where clipping rewrites the stored sum);
  groups     one chain per param group: [negate if maximize] [+ wd * p (coupled decay)] direction
             [+ wd * p (AdamW's decoupled decay)], then `-lr_t *`.

Every torch rule is `p <- p - lr_t * direction(g, state, p)` with a direction that does not depend on
the learning rate (AdamW's `p *= 1 - lr*wd` is `- lr * wd * p`; Adagrad's `lr / (1 + (t-1) lr_decay)`
moves the divisor into the direction), so the base learning rate is a value in the state
(`LearningRateState.base_lr`, set with `with_learning_rate`) and one compiled program serves every
rate (`jaxseq sweep` vmaps over it). lr_t = schedule(epoch, base_lr), epoch = count // steps_per_epoch.

Which pieces are optax's, which are written here, and why. Measured against torch in float64 on the
seed's task (200 steps of an 8-unit LSTM), where the parity tests hold the loss at every step to a
relative 1e-9 and the final parameters to 1e-10:

  optax's    where its formula is torch's and only the rounding differs (the order of operations,
             and XLA fusing `a * b + c` into one rounding where torch rounds twice: about half of
             the momentum-buffer elements differ in the last bit; 200 steps' losses agree to 1e-13
             relative, except where the run itself amplifies rounding, as torch does a 1-ulp change
             of one weight):
             `scale_by_adam` (Adam, AdamW: `m_hat / (sqrt(v_hat) + eps)` for torch's
             `(lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps)`; `b1 m + (1 - b1) g` for torch's lerp),
             `add_decayed_weights` (`g + wd * p`, and AdamW's decoupled form after the direction),
             `trace` (SGD and RMSprop momentum, `g + m * buf`), `scale_by_rms` and `scale_by_stddev`
             (RMSprop plain and centered, eps outside the root: `g * (1 / (sqrt(v) + eps))` for
             torch's `g / (sqrt(v) + eps)`), `clip` (`clip_grad_value_`), `scale(-1)` (maximize),
             `partition` (param groups), `inject_hyperparams` (OneCycleLR's cycled momentum or
             beta1), `set_to_zero` (parameters in no group).
  written    `scale_by_learning_rate_schedule`: the base rate lives in the state and the schedule
             takes it as an argument (optax's schedules close over a constant);
             `dampen`: SGD's dampening, which `optax.trace` lacks (torch's first buffer is `g`, later
             ones add `(1 - dampening) g`);
             `scale_by_torch_amsgrad`: torch keeps the maximum of the raw second moment and divides
             it by sqrt(bc2) each step; `optax.scale_by_amsgrad` keeps the maximum of the
             bias-corrected one, another algorithm (relative difference in the loss up to 6.7);
             `scale_by_torch_adagrad`: torch adds eps after the root (`sqrt(sum) + eps`), optax's
             `scale_by_rss` inside it (`rsqrt(sum + eps)`; 5e-7 relative in the loss), and optax
             has no `lr_decay`;
             `clip_by_total_norm`: torch scales by `min(max_norm / (norm + 1e-6), 1)`,
             `optax.clip_by_global_norm` by `max_norm / norm` (3e-6 relative in the loss);
             the schedules: torch's closed forms (`_get_closed_form_lr`) in jnp, with its order of
             operations and IEEE divisions (`_ieee_div`). torch steps them recursively in Python
             floats; the two agree to 3e-13 relative over 1000 steps.

>>> tx = build("adamw", 1e-3, schedule=parse_schedule("cosine", steps=1000), clip_grad_norm=1.0)
>>> opt_state = with_learning_rate(tx.init(params), 3e-4)
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.config import OPTIMIZER_OPTIONS
from jaxseq.errors import ConversionError, OptionError

# ---------------------------------------------------------------------------------------------
# Optimizers, framework-free

# Each optimizer's options and torch's default for each: `jaxseq.config.OPTIMIZER_OPTIONS`
# (framework-free, so the config can check them).
OPTIONS = OPTIMIZER_OPTIONS
TORCH_CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


@dataclass(frozen=True)
class Rule:
    """One param group's update rule: a torch.optim optimizer and its options, without torch.
    Options that do not apply to `name` keep their field default and are ignored."""

    name: str  # "sgd", "adam", "adamw", "rmsprop" or "adagrad"
    lr: float  # the base learning rate (torch's initial_lr; OneCycleLR's max_lr)
    weight_decay: float = 0.0  # L2 added to the gradient; AdamW: decoupled, p *= 1 - lr * wd
    momentum: float = 0.0  # SGD, RMSprop
    dampening: float = 0.0  # SGD: later gradients enter the buffer scaled by 1 - dampening
    nesterov: bool = False  # SGD
    betas: tuple[float, float] = (0.9, 0.999)  # Adam, AdamW: moment decay rates
    eps: float = 1e-8  # Adam, AdamW, RMSprop; Adagrad's default is 1e-10
    amsgrad: bool = False  # Adam, AdamW: divide by the running maximum of the second moment
    alpha: float = 0.99  # RMSprop: decay of the squared-gradient average
    centered: bool = False  # RMSprop: subtract the squared mean gradient
    lr_decay: float = 0.0  # Adagrad: lr / (1 + (t - 1) * lr_decay)
    initial_accumulator_value: float = 0.0  # Adagrad: the sum of squares starts here
    maximize: bool = False  # ascend instead of descend

    @property
    def torch_options(self) -> dict[str, Any]:
        """The keyword arguments of torch.optim.<Class> (besides params and lr)."""
        return {key: getattr(self, key) for key in OPTIONS[self.name]}


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
    if "betas" in values:
        values["betas"] = tuple(float(b) for b in values["betas"])
    r = Rule(name, float(lr), **values)
    _check_rule(r)
    return r


def _check_rule(r: Rule) -> None:
    """torch's own argument checks, raised where the option enters."""
    problems = [
        (r.lr < 0, f"lr must be >= 0; got {r.lr}"),
        (r.weight_decay < 0, f"weight_decay must be >= 0; got {r.weight_decay}"),
        (r.momentum < 0, f"momentum must be >= 0; got {r.momentum}"),
        (r.eps < 0, f"eps must be >= 0; got {r.eps}"),
        (not all(0 <= b < 1 for b in r.betas), f"betas must be in [0, 1); got {r.betas}"),
        (r.alpha < 0, f"alpha must be >= 0; got {r.alpha}"),
        (r.lr_decay < 0, f"lr_decay must be >= 0; got {r.lr_decay}"),
        (r.initial_accumulator_value < 0, f"initial_accumulator_value must be >= 0; got {r.initial_accumulator_value}"),
        (r.nesterov and (r.momentum <= 0 or r.dampening != 0), "nesterov needs momentum > 0 and dampening 0"),
    ]
    for bad, message in problems:
        if bad:
            raise OptionError(f"optimizer {r.name!r}: {message}")


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules, framework-free: one frozen dataclass per torch.optim.lr_scheduler class,
# with that class's constructor arguments (OneCycleLR's max_lr is the rule's lr).


@dataclass(frozen=True)
class StepLR:
    """lr = base * gamma ** (epoch // step_size)."""

    step_size: int
    gamma: float = 0.1


@dataclass(frozen=True)
class MultiStepLR:
    """lr = base * gamma ** (number of milestones <= epoch)."""

    milestones: tuple[int, ...]
    gamma: float = 0.1


@dataclass(frozen=True)
class ExponentialLR:
    """lr = base * gamma ** epoch."""

    gamma: float


@dataclass(frozen=True)
class CosineAnnealingLR:
    """lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2 (periodic past T_max, as torch)."""

    T_max: int
    eta_min: float = 0.0


@dataclass(frozen=True)
class LinearLR:
    """lr = base * (start + (end - start) min(epoch, total_iters) / total_iters)."""

    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5


@dataclass(frozen=True)
class ConstantLR:
    """lr = base * factor before total_iters, base from then on."""

    factor: float = 1.0 / 3
    total_iters: int = 5


@dataclass(frozen=True)
class OneCycleLR:
    """Smith's one cycle: base/div_factor up to base (the max_lr) over pct_start of total_steps, then
    down to base/div_factor/final_div_factor; three_phase goes back to base/div_factor first. With
    cycle_momentum the momentum (SGD, RMSprop) or beta1 (Adam) moves the other way, between
    max_momentum and base_momentum. Past total_steps torch raises; here the last phase's formula
    goes on."""

    total_steps: int
    pct_start: float = 0.3
    anneal_strategy: str = "cos"  # "cos" or "linear"
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False


@dataclass(frozen=True)
class SequentialLR:
    """schedulers[i] from epoch milestones[i - 1] on, restarted there at its epoch 0."""

    schedulers: tuple
    milestones: tuple[int, ...]


SCHEDULES = (StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR, ConstantLR, OneCycleLR, SequentialLR)
Schedule = StepLR | MultiStepLR | ExponentialLR | CosineAnnealingLR | LinearLR | ConstantLR | OneCycleLR | SequentialLR


def check_schedule(spec) -> None:
    """Raises OptionError where torch's scheduler would refuse `spec` (or where it cannot be followed)."""
    if not isinstance(spec, SCHEDULES):
        raise OptionError(f"not a schedule: {spec!r}")
    problems = []
    if isinstance(spec, StepLR):
        problems.append((spec.step_size < 1, f"step_size must be >= 1; got {spec.step_size}"))
    elif isinstance(spec, MultiStepLR):
        problems.append((any(m < 0 for m in spec.milestones), f"milestones must be >= 0; got {spec.milestones}"))
    elif isinstance(spec, CosineAnnealingLR):
        problems.append((spec.T_max < 1, f"T_max must be >= 1; got {spec.T_max}"))
    elif isinstance(spec, LinearLR):
        problems += [
            (not 0 < spec.start_factor <= 1, f"start_factor must be in (0, 1]; got {spec.start_factor}"),
            (not 0 <= spec.end_factor <= 1, f"end_factor must be in [0, 1]; got {spec.end_factor}"),
            (spec.total_iters < 1, f"total_iters must be >= 1; got {spec.total_iters}"),
        ]
    elif isinstance(spec, ConstantLR):
        problems += [
            (not 0 <= spec.factor <= 1, f"factor must be in [0, 1]; got {spec.factor}"),
            (spec.total_iters < 0, f"total_iters must be >= 0; got {spec.total_iters}"),
        ]
    elif isinstance(spec, OneCycleLR):
        problems += [
            (spec.total_steps < 1, f"total_steps must be >= 1; got {spec.total_steps}"),
            (not 0 <= spec.pct_start <= 1, f"pct_start must be in [0, 1]; got {spec.pct_start}"),
            (spec.anneal_strategy not in ("cos", "linear"), f"anneal_strategy {spec.anneal_strategy!r}: cos or linear"),
        ]
    elif isinstance(spec, SequentialLR):
        milestones = list(spec.milestones)
        problems += [
            (len(milestones) != len(spec.schedulers) - 1, "needs one milestone fewer than schedulers"),
            (milestones != sorted(milestones) or any(m < 1 for m in milestones), "milestones must increase from 1"),
            (any(isinstance(s, OneCycleLR) for s in spec.schedulers), "OneCycleLR inside SequentialLR"),
        ]
        for sub in spec.schedulers:
            check_schedule(sub)
    for bad, message in problems:
        if bad:
            raise OptionError(f"{type(spec).__name__}: {message}")


SCHEDULE_SYNTAX = (
    "cosine[:ETA_MIN], step:SIZE[:GAMMA], multistep:M1,M2,...[:GAMMA], exponential:GAMMA, "
    "linear:START:END[:ITERS], constant:FACTOR:ITERS, onecycle[:PCT_START[:cos|linear[:three_phase]]], "
    "or several joined by + with each later one's first step: linear:0.1:1:100+cosine@100"
)


def parse_schedule(text: str, steps: int):
    """The schedule `text` names (the command line's --schedule), over a run of `steps` scheduler steps.

    `cosine` anneals to ETA_MIN (0) over its whole span, `onecycle` cycles over it, `linear` ramps
    over ITERS (default: its span); a span is the run, or in A+B@M, A's is M and B's the rest.
    Raises OptionError naming the text and the accepted forms.

    >>> parse_schedule("step:30:0.5", steps=1000)
    StepLR(step_size=30, gamma=0.5)
    >>> parse_schedule("linear:0.1:1:50+cosine@50", steps=1000).schedulers[1]
    CosineAnnealingLR(T_max=950, eta_min=0.0)
    """
    try:
        parts = text.split("+")
        starts = [0]
        for part in parts[1:]:
            if "@" not in part:
                raise ValueError(f"{part!r} needs @STEP, the step it starts at")
            starts.append(int(part.rsplit("@", 1)[1]))
        bodies = [parts[0]] + [part.rsplit("@", 1)[0] for part in parts[1:]]
        ends = starts[1:] + [steps]
        specs = tuple(_parse_one(body, end - start) for body, start, end in zip(bodies, starts, ends, strict=True))
        spec = specs[0] if len(specs) == 1 else SequentialLR(specs, tuple(starts[1:]))
        check_schedule(spec)
    except (ValueError, IndexError) as e:
        raise OptionError(f"schedule {text!r}: {e}; expected {SCHEDULE_SYNTAX}") from None
    return spec


def _parse_one(text: str, span: int):
    kind, *fields = text.strip().split(":")

    def number(i, default=None, kind=float):
        if i < len(fields) and fields[i] != "":
            return kind(fields[i])
        if default is None:
            raise ValueError(f"{text!r} needs field {i + 1}")
        return default

    arity = {"cosine": 1, "step": 2, "multistep": 2, "exponential": 1, "linear": 3, "constant": 2, "onecycle": 3}
    if kind not in arity:
        raise ValueError(f"unknown schedule {kind!r}")
    if len(fields) > arity[kind]:
        raise ValueError(f"{text!r} has {len(fields)} fields; {kind} takes at most {arity[kind]}")
    if kind == "cosine":
        return CosineAnnealingLR(T_max=span, eta_min=number(0, 0.0))
    if kind == "step":
        return StepLR(step_size=number(0, kind=int), gamma=number(1, 0.1))
    if kind == "multistep":
        milestones = tuple(int(m) for m in number(0, kind=str).split(","))
        return MultiStepLR(milestones=milestones, gamma=number(1, 0.1))
    if kind == "exponential":
        return ExponentialLR(gamma=number(0))
    if kind == "linear":
        return LinearLR(start_factor=number(0), end_factor=number(1), total_iters=number(2, span, int))
    if kind == "constant":
        return ConstantLR(factor=number(0), total_iters=number(1, kind=int))
    three = number(2, "", str)
    if three not in ("", "three_phase"):
        raise ValueError(f"onecycle's third field is three_phase; got {three!r}")
    return OneCycleLR(
        total_steps=span, pct_start=number(0, 0.3), anneal_strategy=number(1, "cos", str), three_phase=bool(three)
    )


def schedule_fn(schedule, base_lr=None, *, steps_per_epoch: int = 1) -> Callable:
    """optax schedule `count -> lr`: the rate torch's `schedule` gives at optimizer step `count`
    (from 0), the scheduler stepping once every `steps_per_epoch` optimizer steps.

    `schedule`: a Schedule, a torch scheduler (read by `schedule_from_torch`), or None (constant).
    `base_lr`: the rate it starts from (OneCycleLR: its max_lr); by default the torch scheduler's
    first param group's.
    """
    if schedule is not None and not isinstance(schedule, SCHEDULES):
        if base_lr is None:
            base_lr = _base_lrs(schedule.optimizer, schedule)[0]
        schedule = schedule_from_torch(schedule)
    if base_lr is None:
        raise OptionError("schedule_fn needs base_lr for a framework-free schedule")
    return lambda count: _lr(schedule, _epoch(count, steps_per_epoch), base_lr)


def _epoch(count, steps_per_epoch):
    return jnp.asarray(count) // steps_per_epoch


def _ieee_div(a, b):
    """a / b rounded as IEEE (and torch's Python floats) round it. XLA rewrites a division by a
    constant or by a broadcast scalar into a multiplication by its reciprocal, one ulp off; where the
    quotient meets a cancellation (1 + cos near pi, OneCycleLR's linear anneal near its end) that ulp
    grows to 1e-11 relative. `b + 0 * a` is neither, and XLA keeps `0 * a` (NaN-preserving)."""
    return a / (b + 0.0 * a)


def _lr(spec, epoch, base):
    """torch's `_get_closed_form_lr` of `spec` at integer `epoch` (jnp), from base rate `base`,
    with torch's order of operations."""
    base = jnp.asarray(base, dtype=jnp.result_type(float))
    e = epoch.astype(base.dtype)
    if spec is None:
        return base * jnp.ones_like(e)
    if isinstance(spec, StepLR):
        return base * spec.gamma ** (epoch // spec.step_size).astype(base.dtype)
    if isinstance(spec, MultiStepLR):
        passed = sum((epoch >= m).astype(base.dtype) for m in sorted(spec.milestones))
        return base * spec.gamma**passed
    if isinstance(spec, ExponentialLR):
        return base * spec.gamma**e
    if isinstance(spec, CosineAnnealingLR):
        return spec.eta_min + (base - spec.eta_min) * (1 + jnp.cos(_ieee_div(math.pi * e, spec.T_max))) / 2
    if isinstance(spec, LinearLR):
        ramp = _ieee_div((spec.end_factor - spec.start_factor) * jnp.minimum(e, spec.total_iters), spec.total_iters)
        return base * (spec.start_factor + ramp)
    if isinstance(spec, ConstantLR):
        return base * (spec.factor + (epoch >= spec.total_iters) * (1 - spec.factor))
    if isinstance(spec, OneCycleLR):
        initial = base / spec.div_factor
        values = {"initial_lr": initial, "max_lr": base, "min_lr": initial / spec.final_div_factor}
        return _one_cycle(spec, e, values, lr=True)
    if isinstance(spec, SequentialLR):
        index = sum((epoch >= m).astype(jnp.int32) for m in spec.milestones)
        starts = (0, *spec.milestones)
        branches = [_lr(sub, epoch - start, base) for sub, start in zip(spec.schedulers, starts, strict=True)]
        return jnp.select([index == i for i in range(len(branches))], branches)
    raise ConversionError(f"schedule {type(spec).__name__} is not supported")


def _one_cycle(spec: OneCycleLR, step, values, *, lr: bool):
    """OneCycleLR.get_lr (lr=True) or its momentum (lr=False) at float `step`, as torch computes them."""
    total = spec.total_steps
    if spec.three_phase:
        phases = [
            (float(spec.pct_start * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (float(2 * spec.pct_start * total) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
            (total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
        ]
    else:
        phases = [
            (float(spec.pct_start * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
            (total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
        ]
    conditions, results, start_step = [], [], 0.0
    for end_step, start_lr, end_lr, start_momentum, end_momentum in phases:
        pct = _ieee_div(step - start_step, end_step - start_step)
        start, end = (values[start_lr], values[end_lr]) if lr else (values[start_momentum], values[end_momentum])
        if spec.anneal_strategy == "cos":
            results.append(end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1))
        else:
            results.append((end - start) * pct + start)
        conditions.append(step <= end_step)
        start_step = end_step
    return jnp.select(conditions[:-1], results[:-1], results[-1])


def momentum_fn(schedule, *, steps_per_epoch: int = 1) -> Callable | None:
    """OneCycleLR's cycled momentum (SGD, RMSprop) or beta1 (Adam) as `count -> momentum`, what
    torch sets at optimizer step `count`; None where `schedule` leaves the momentum alone."""
    if not (isinstance(schedule, OneCycleLR) and schedule.cycle_momentum):
        return None
    values = {"base_momentum": schedule.base_momentum, "max_momentum": schedule.max_momentum}
    dtype = jnp.result_type(float)
    return lambda count: _one_cycle(schedule, _epoch(count, steps_per_epoch).astype(dtype), values, lr=False)


# ---------------------------------------------------------------------------------------------
# The pieces written here (see the module docstring for why optax's do not serve).


class LearningRateState(NamedTuple):
    count: jax.Array  # optimizer steps taken (int32)
    base_lr: jax.Array  # the schedule's base rate (torch's initial_lr; OneCycleLR's max_lr)


def scale_by_learning_rate_schedule(
    base_lr: float, schedule=None, steps_per_epoch: int = 1
) -> optax.GradientTransformation:
    """updates * -lr_t, lr_t = `schedule` (a Schedule, None: constant) at epoch count // steps_per_epoch
    from `base_lr`, which is kept in the state (`with_learning_rate` sets it; a sweep vmaps over it).
    lr_t is computed in float64 where enabled and cast to each update's dtype, as torch's Python
    float `alpha=-lr` is cast to the parameter's."""

    def init(params):
        del params
        return LearningRateState(jnp.zeros([], jnp.int32), jnp.asarray(base_lr, jnp.result_type(float)))

    def update(updates, state, params=None):
        del params
        lr = _lr(schedule, _epoch(state.count, steps_per_epoch), state.base_lr)
        updates = jax.tree.map(lambda u: (-lr).astype(u.dtype) * u, updates)
        return updates, state._replace(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


class DampenState(NamedTuple):
    count: jax.Array  # updates seen (int32)


def dampen(dampening: float) -> optax.GradientTransformation:
    """The first gradient as is, every later one times (1 - dampening): chained before
    `optax.trace(momentum)` this is torch's SGD buffer, `buf = g` then `buf = m buf + (1 - d) g`."""

    def init(params):
        del params
        return DampenState(jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        first = state.count == 0
        updates = jax.tree.map(lambda g: jnp.where(first, g, (1 - dampening) * g), updates)
        return updates, DampenState(optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


class TorchAmsgradState(NamedTuple):
    count: jax.Array  # torch's `step` (int32)
    mu: optax.Updates  # exp_avg
    nu: optax.Updates  # exp_avg_sq
    nu_max: optax.Updates  # max_exp_avg_sq


def scale_by_torch_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """torch.optim.Adam(amsgrad=True)'s direction (lr 1):

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  v_max = max(v_max, v)
        d = m / bc1 / (sqrt(v_max) / sqrt(bc2) + eps),  bc_i = 1 - b_i^t

    The maximum is of the raw v; `optax.scale_by_amsgrad` takes it of v / bc2 instead."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return TorchAmsgradState(jnp.zeros([], jnp.int32), zeros, zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        bc1, bc2 = 1 - b1**count, 1 - b2**count
        updates = jax.tree.map(lambda m, v: m / bc1 / (jnp.sqrt(v) / jnp.sqrt(bc2) + eps), mu, nu_max)
        return updates, TorchAmsgradState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


class TorchAdagradState(NamedTuple):
    count: jax.Array  # torch's `step` (int32)
    sum: optax.Updates  # torch's `sum`: initial_accumulator_value plus every g^2


def scale_by_torch_adagrad(
    lr_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> optax.GradientTransformation:
    """torch.optim.Adagrad's direction (lr 1): s += g^2;  d = g / (sqrt(s) + eps) / (1 + (t - 1) lr_decay).

    optax's `scale_by_rss` puts eps inside the root (`rsqrt(s + eps)`) and has no lr_decay."""

    def init(params):
        total = jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params)
        return TorchAdagradState(jnp.zeros([], jnp.int32), total)

    def update(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        total = jax.tree.map(lambda s, g: s + g * g, state.sum, updates)
        decay = 1 + (count - 1) * lr_decay
        updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps) / decay, updates, total)
        return updates, TorchAdagradState(count, total)

    return optax.GradientTransformation(init, update)


def clip_by_total_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_: the norm of all gradients together (the norm of the
    per-tensor norms), then every gradient times min(max_norm / (norm + 1e-6), 1).
    norm_type: any p > 0, or math.inf for the largest |g|."""
    norm_type = float(norm_type)

    def norm(x):
        if norm_type == math.inf:
            return jnp.max(jnp.abs(x))
        if norm_type == 2.0:
            return jnp.sqrt(jnp.sum(x * x))
        return jnp.sum(jnp.abs(x) ** norm_type) ** (1 / norm_type)

    def update(updates, state, params=None):
        del params
        leaves = jax.tree.leaves(updates)
        if not leaves:
            return updates, state
        total = norm(jnp.stack([norm(g) for g in leaves]))
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


class AccumulateState(NamedTuple):
    total: optax.Updates  # the sum of every gradient seen so far (after `then`)


def accumulate_gradients(then: optax.GradientTransformation | None = None) -> optax.GradientTransformation:
    """Replaces each gradient by the running sum of all gradients so far.

    This is what PyTorch computes when `optimizer.zero_grad()` is never called: `.grad` keeps every
    earlier backward pass's contribution. `then` (stateless: clipping) rewrites the sum before it is
    stored, as `clip_grad_norm_` rewrites `.grad` in place. Chained before an optimizer, it
    reproduces the seed question's bug.
    """
    then = then or optax.identity()

    def init(params):
        return AccumulateState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        total, _ = then.update(jax.tree.map(jnp.add, state.total, updates), then.init(updates), params)
        return total, AccumulateState(total)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# Building the transformation


def rule_transformation(r: Rule, schedule=None, steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """One param group's update: `r`'s torch rule, then -lr_t (see the module docstring)."""
    momentum = momentum_fn(schedule, steps_per_epoch=steps_per_epoch)
    if momentum is not None and r.name == "adagrad":
        raise OptionError("OneCycleLR with cycle_momentum needs an optimizer with momentum or betas, not adagrad")
    pieces = [optax.scale(-1.0)] if r.maximize else []
    decoupled = r.name == "adamw"
    if r.weight_decay != 0 and not decoupled:
        pieces.append(optax.add_decayed_weights(r.weight_decay))
    if r.name == "sgd":
        if r.dampening != 0:
            pieces.append(dampen(r.dampening))
        if momentum is not None:
            pieces.append(_cycled(optax.trace, "decay", momentum, nesterov=r.nesterov))
        elif r.momentum != 0:
            pieces.append(optax.trace(r.momentum, nesterov=r.nesterov))
    elif r.name in ("adam", "adamw"):
        adam = scale_by_torch_amsgrad if r.amsgrad else optax.scale_by_adam
        b1 = momentum if momentum is not None else r.betas[0]
        pieces.append(_cycled(adam, "b1", b1, b2=r.betas[1], eps=r.eps))
    elif r.name == "rmsprop":
        rms = optax.scale_by_stddev if r.centered else optax.scale_by_rms
        pieces.append(rms(decay=r.alpha, eps=r.eps, initial_scale=0.0, eps_in_sqrt=False))
        if momentum is not None:
            pieces.append(_cycled(optax.trace, "decay", momentum))
        elif r.momentum != 0:
            pieces.append(optax.trace(r.momentum))
    elif r.name == "adagrad":
        pieces.append(scale_by_torch_adagrad(r.lr_decay, r.initial_accumulator_value, r.eps))
    if r.weight_decay != 0 and decoupled:
        pieces.append(optax.add_decayed_weights(r.weight_decay))
    pieces.append(scale_by_learning_rate_schedule(r.lr, schedule, steps_per_epoch))
    return optax.chain(*pieces)


def _cycled(factory, name: str, value, **static) -> optax.GradientTransformation:
    """`factory(name=value, **static)`; where `value` is a schedule (OneCycleLR's momentum),
    through optax.inject_hyperparams so it follows the step count."""
    if not callable(value):
        return factory(**{name: value}, **static)
    return optax.inject_hyperparams(factory, static_args=tuple(static))(**{name: value}, **static)


FROZEN = "frozen"  # the partition label of parameters in no param group: torch leaves them as they are


def transformation(
    groups: Sequence[tuple[Rule, Sequence[str] | None]],
    *,
    schedule=None,
    steps_per_epoch: int | None = None,
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    zero_grad: bool = True,
) -> optax.GradientTransformation:
    """The whole torch step: `chain(gradients, groups)` (module docstring).

    groups: (rule, parameter names) per param group; names None (one group only): every parameter.
    Names are `param_names` of the parameter pytree; parameters in no group are left unchanged.
    """
    if schedule is not None:
        check_schedule(schedule)
    spe = 1 if steps_per_epoch is None else steps_per_epoch
    problems = [
        (not isinstance(spe, int) or spe < 1, f"steps_per_epoch must be an integer >= 1; got {steps_per_epoch}"),
        (clip_grad_norm is not None and clip_grad_norm < 0, f"clip_grad_norm must be >= 0; got {clip_grad_norm}"),
        (clip_grad_value is not None and clip_grad_value < 0, f"clip_grad_value must be >= 0; got {clip_grad_value}"),
    ]
    for bad, message in problems:
        if bad:
            raise OptionError(message)
    clip = optax.chain(
        optax.identity() if clip_grad_norm is None else clip_by_total_norm(clip_grad_norm, clip_norm_type),
        optax.identity() if clip_grad_value is None else optax.clip(clip_grad_value),
    )
    gradients = clip if zero_grad else accumulate_gradients(clip)
    if len(groups) == 1 and groups[0][1] is None:
        return optax.chain(gradients, rule_transformation(groups[0][0], schedule, spe))
    if any(names is None for _, names in groups):
        raise ConversionError(f"{len(groups)} param groups need their parameters' names")
    label_of = {name: f"group{i}" for i, (_, names) in enumerate(groups) for name in names}
    transforms = {f"group{i}": rule_transformation(r, schedule, spe) for i, (r, _) in enumerate(groups)}
    transforms[FROZEN] = optax.set_to_zero()

    def labels(tree):
        return jax.tree.unflatten(jax.tree.structure(tree), [label_of.get(n, FROZEN) for n in param_names(tree)])

    return optax.chain(gradients, optax.partition(transforms, labels))


def build(
    name: str,
    lr: float,
    *,
    weight_decay: float | None = None,
    momentum: float | None = None,
    dampening: float | None = None,
    nesterov: bool | None = None,
    betas: tuple[float, float] | None = None,
    eps: float | None = None,
    amsgrad: bool | None = None,
    alpha: float | None = None,
    centered: bool | None = None,
    lr_decay: float | None = None,
    initial_accumulator_value: float | None = None,
    maximize: bool | None = None,
    schedule=None,
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    steps_per_epoch: int | None = None,
    zero_grad: bool = True,
) -> optax.GradientTransformation:
    """torch.optim.<name>(params, lr, **options) with `schedule` (a Schedule) and clipping, as one
    optax transformation over every parameter. An option left None takes torch's default for
    `name`; one that `name` lacks raises OptionError. zero_grad=False sums the gradients over all
    steps first, as PyTorch does without `optimizer.zero_grad()`.

    >>> tx = build("sgd", 0.1, momentum=0.9, nesterov=True, schedule=StepLR(30), clip_grad_value=1.0)
    """
    options = dict(
        weight_decay=weight_decay,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        betas=betas,
        eps=eps,
        amsgrad=amsgrad,
        alpha=alpha,
        centered=centered,
        lr_decay=lr_decay,
        initial_accumulator_value=initial_accumulator_value,
        maximize=maximize,
    )
    return transformation(
        [(rule(name, lr, **options), None)],
        schedule=schedule,
        steps_per_epoch=steps_per_epoch,
        clip_grad_norm=clip_grad_norm,
        clip_norm_type=clip_norm_type,
        clip_grad_value=clip_grad_value,
        zero_grad=zero_grad,
    )


def make_optimizer(name: str, lr: float, zero_grad: bool = True) -> optax.GradientTransformation:
    """The trainer's optimizer: `build(name, lr)` with torch's defaults (Adam: betas 0.9/0.999, eps 1e-8).

    The learning rate is kept in the optimizer state (see `with_learning_rate`).
    zero_grad=False first sums the gradients over all steps, as PyTorch does without `zero_grad()`.
    """
    return build(name, lr, zero_grad=zero_grad)


# The run's optimizer from a TrainConfig (its --optimizer, options, --schedule, --clip-grad-norm), for
# both trainers: `from_config` for jaxseq, `torch_from_config` for torchseq.


def config_schedule(config):
    """The Schedule of --schedule over the run's steps, or None."""
    return None if config.schedule is None else parse_schedule(config.schedule, config.steps)


def from_config(config) -> optax.GradientTransformation:
    """The optax transformation of a run: `build` with the config's optimizer, options, schedule,
    --clip-grad-norm and --no-zero-grad."""
    return build(
        config.optimizer,
        config.lr,
        **config.optimizer_options(),
        schedule=config_schedule(config),
        clip_grad_norm=config.clip_grad_norm,
        zero_grad=config.zero_grad,
    )


def torch_from_config(config, params):
    """(torch optimizer, torch scheduler or None) of a run, for `params`: what `from_config` follows."""
    optimizer = torch_optimizer(config.optimizer, params, config.lr, **config.optimizer_options())
    schedule = config_schedule(config)
    return optimizer, None if schedule is None else torch_scheduler(schedule, optimizer)


def _groups_state(opt_state):
    """{label: the group's chain state} of a `transformation`'s state ("group0" alone if unpartitioned)."""
    state = opt_state[-1]
    if isinstance(state, optax.PartitionState):
        return {label: s.inner_state for label, s in state.inner_states.items() if label != FROZEN}
    return {"group0": state}


def _with_groups_state(opt_state, groups: dict):
    state = opt_state[-1]
    if isinstance(state, optax.PartitionState):
        inner = {
            label: s._replace(inner_state=groups[label]) if label in groups else s
            for label, s in state.inner_states.items()
        }
        state = optax.PartitionState(inner)
    else:
        state = groups["group0"]
    return (*opt_state[:-1], state)


def _map_pieces(node, fn):
    """`node` (a group's chain state) with fn applied to every piece's state, inner ones included
    (partition's, masked's and inject_hyperparams' inner states and schedule counters)."""
    node = fn(node)
    if type(node) is tuple:
        return tuple(_map_pieces(s, fn) for s in node)
    if isinstance(node, dict):
        return {k: _map_pieces(s, fn) for k, s in node.items()}
    if hasattr(node, "_fields"):
        inner = ("inner_state", "inner_states", "hyperparams_states")
        return node._replace(**{f: _map_pieces(getattr(node, f), fn) for f in inner if f in node._fields})
    return node


def _pieces(node) -> list:
    found = []
    _map_pieces(node, lambda s: found.append(s) or s)
    return found


def with_learning_rate(opt_state, lr):
    """`opt_state` (of a transformation built here) with its base learning rate set to `lr`: one
    value for every param group, or a sequence with one per group.

    The rate lives in the state, so one compiled program serves every rate, and `jaxseq sweep` can
    vmap over it.
    """
    groups = _groups_state(opt_state)
    rates = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(groups)
    if len(rates) != len(groups):
        raise OptionError(f"{len(rates)} learning rates for {len(groups)} param groups")

    def set_rate(rate):
        def fn(s):
            if isinstance(s, LearningRateState):
                return s._replace(base_lr=jnp.asarray(rate, s.base_lr.dtype))
            return s

        return fn

    labels = sorted(groups, key=lambda label: int(label[len("group") :]))
    new = {label: _map_pieces(groups[label], set_rate(rate)) for label, rate in zip(labels, rates, strict=True)}
    return _with_groups_state(opt_state, new)


def param_names(tree) -> list[str]:
    """The torch name of each leaf of a parameter pytree, in leaf order: its key path joined by "."
    (a dict's keys, attributes, sequence indices), without nnx.Variable's trailing `value`.

    >>> param_names({"lstm": {"weight_ih_l0": 0.0, "bias_ih_l0": 0.0}})
    ['lstm.bias_ih_l0', 'lstm.weight_ih_l0']
    """
    return [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _path_name(path) -> str:
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    return ".".join(_key_name(k) for k in path)


def _key_name(key) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    return str(getattr(key, "key", key))


# ---------------------------------------------------------------------------------------------
# PyTorch: reading optimizers and schedulers, building them, and the state both ways.
# torch is imported inside these functions only.


def _optimizer_name(optimizer) -> str:
    """The rule name of a torch optimizer of exactly one of the supported classes."""
    import torch

    for name, cls in TORCH_CLASSES.items():
        if type(optimizer) is getattr(torch.optim, cls):
            return name
    supported = ", ".join(f"torch.optim.{cls}" for cls in TORCH_CLASSES.values())
    raise ConversionError(f"optimizer {type(optimizer).__name__} is not supported (only {supported})")


def _rule_from_group(optimizer, group: dict, index: int, base_lr: float) -> Rule:
    import torch

    name = _optimizer_name(optimizer)
    if name == "adam" and group.get("decoupled_weight_decay"):
        name = "adamw"  # Adam(decoupled_weight_decay=True) is AdamW
    for key, value in group.items():
        values = value if isinstance(value, tuple) else (value,)
        if key != "params" and any(isinstance(v, torch.Tensor) for v in values):
            raise ConversionError(f"param group {index}: {key} is a tensor; only Python numbers convert")
    for key in ("differentiable", "fused"):
        if group.get(key):
            raise ConversionError(f"param group {index}: {key}=True is not supported (only the single-tensor step)")
    try:
        return rule(name, base_lr, **{key: group[key] for key in OPTIONS[name]})
    except OptionError as e:
        raise ConversionError(f"param group {index}: {e}") from None


def _base_lrs(optimizer, scheduler) -> list[float]:
    """Each group's base rate: the lr before any scheduler (initial_lr), OneCycleLR's max_lr."""
    if scheduler is not None and type(scheduler).__name__ == "OneCycleLR":
        return [float(g["max_lr"]) for g in optimizer.param_groups]
    key = "lr" if scheduler is None else "initial_lr"
    return [float(g[key]) for g in optimizer.param_groups]


def _group_names(optimizer, model) -> list[list[str] | None]:
    """Each param group's parameter names: the group's own `param_names` (torch.optim given
    `named_parameters()`), else `model.named_parameters()`'s, else None for a single group."""
    groups = optimizer.param_groups
    by_id = None if model is None else {id(p): name for name, p in model.named_parameters()}
    names = []
    for i, group in enumerate(groups):
        if "param_names" in group:
            names.append(list(group["param_names"]))
        elif by_id is not None:
            missing = [j for j, p in enumerate(group["params"]) if id(p) not in by_id]
            if missing:
                raise ConversionError(f"param group {i}: parameter {missing[0]} is not among model.named_parameters()")
            names.append([by_id[id(p)] for p in group["params"]])
        elif len(groups) == 1:
            names.append(None)
        else:
            raise ConversionError(f"{len(groups)} param groups: pass model= to name their parameters")
    return names


def from_torch(
    optimizer,
    scheduler=None,
    *,
    model=None,
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    steps_per_epoch: int | None = None,
) -> optax.GradientTransformation:
    """The optax transformation that steps as `optimizer` (torch.optim.SGD, Adam, AdamW, RMSprop or
    Adagrad, any options, one rule per param group) with `scheduler` (stepped once every
    `steps_per_epoch` optimizer steps) and torch's clip_grad_norm_ / clip_grad_value_ before each step.

    model: the torch module, to name the parameters of several param groups (not needed where the
    groups hold `param_names`). The parameter pytree's `param_names` must be those names.
    Anything else raises ConversionError naming it.
    """
    schedule = None if scheduler is None else schedule_from_torch(scheduler)
    names = _group_names(optimizer, model)
    bases = _base_lrs(optimizer, scheduler)
    rules = [_rule_from_group(optimizer, g, i, bases[i]) for i, g in enumerate(optimizer.param_groups)]
    return transformation(
        list(zip(rules, names, strict=True)),
        schedule=schedule,
        steps_per_epoch=steps_per_epoch,
        clip_grad_norm=clip_grad_norm,
        clip_norm_type=clip_norm_type,
        clip_grad_value=clip_grad_value,
    )


def schedule_from_torch(scheduler):
    """The Schedule of a torch.optim.lr_scheduler instance; ConversionError for other kinds."""
    from torch.optim import lr_scheduler

    kind = type(scheduler).__name__
    if type(scheduler) is not getattr(lr_scheduler, kind, None) or kind not in {c.__name__ for c in SCHEDULES}:
        raise ConversionError(
            f"scheduler {kind} is not supported (only StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, "
            "LinearLR, ConstantLR, OneCycleLR and SequentialLR of these)"
        )
    if kind == "MultiStepLR":
        return _checked(MultiStepLR(tuple(sorted(scheduler.milestones.elements())), scheduler.gamma))
    if kind == "SequentialLR":
        subs = tuple(schedule_from_torch(s) for s in scheduler._schedulers)
        return _checked(SequentialLR(subs, tuple(scheduler._milestones)))
    if kind == "OneCycleLR":
        groups = scheduler.optimizer.param_groups
        momenta = ("max_momentum", "base_momentum") if scheduler.cycle_momentum else ()
        for key in momenta:
            if len({g[key] for g in groups}) > 1:
                raise ConversionError(f"scheduler OneCycleLR: {key} differs between param groups")
        first, phases = groups[0], scheduler._schedule_phases
        return _checked(
            OneCycleLR(
                total_steps=scheduler.total_steps,
                pct_start=(phases[0]["end_step"] + 1) / scheduler.total_steps,
                anneal_strategy=scheduler._anneal_func_type,
                cycle_momentum=scheduler.cycle_momentum,
                base_momentum=first.get("base_momentum", 0.85),
                max_momentum=first.get("max_momentum", 0.95),
                div_factor=first["max_lr"] / first["initial_lr"],
                final_div_factor=first["initial_lr"] / first["min_lr"],
                three_phase=len(phases) == 3,
            )
        )
    cls = globals()[kind]
    return _checked(cls(**{f.name: getattr(scheduler, f.name) for f in dataclasses.fields(cls)}))


def _checked(spec):
    try:
        check_schedule(spec)
    except OptionError as e:
        raise ConversionError(f"scheduler {e}") from None
    return spec


def torch_optimizer(name: str, params, lr: float, **options):
    """torch.optim.<name>(params, lr, **options), options as `rule` takes them (None: torch's
    default), on the single-tensor code path (foreach=False) that this module follows."""
    import torch

    r = rule(name, lr, **options)
    return getattr(torch.optim, TORCH_CLASSES[name])(params, lr=lr, foreach=False, **r.torch_options)


def torch_scheduler(spec, optimizer):
    """The torch.optim.lr_scheduler for Schedule `spec` on `optimizer` (OneCycleLR's max_lr: each
    group's lr)."""
    from torch.optim import lr_scheduler

    check_schedule(spec)
    if isinstance(spec, SequentialLR):
        subs = [torch_scheduler(s, optimizer) for s in spec.schedulers]
        return lr_scheduler.SequentialLR(optimizer, subs, list(spec.milestones))
    kwargs = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    if isinstance(spec, MultiStepLR):
        kwargs["milestones"] = list(spec.milestones)
    if isinstance(spec, OneCycleLR):
        kwargs["max_lr"] = [g["lr"] for g in optimizer.param_groups]
    return getattr(lr_scheduler, type(spec).__name__)(optimizer, **kwargs)


# Which field of which optax state holds which torch per-parameter state (state_dict()["state"]).
STATE_KEYS: dict[type, dict[str, str]] = {
    optax.ScaleByAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq"},
    TorchAmsgradState: {"mu": "exp_avg", "nu": "exp_avg_sq", "nu_max": "max_exp_avg_sq"},
    optax.TraceState: {"trace": "momentum_buffer"},
    optax.ScaleByRmsState: {"nu": "square_avg"},
    optax.ScaleByRStdDevState: {"mu": "grad_avg", "nu": "square_avg"},
    TorchAdagradState: {"sum": "sum"},
}
STEPPED = ("adam", "adamw", "rmsprop", "adagrad")  # the optimizers whose torch state holds `step`


def _torch_groups(optimizer, model):
    """[(rule, names or None, [torch parameters])] per param group."""
    names = _group_names(optimizer, model)
    rules = [_rule_from_group(optimizer, g, i, float(g["lr"])) for i, g in enumerate(optimizer.param_groups)]
    return [(r, n, list(g["params"])) for r, n, g in zip(rules, names, optimizer.param_groups, strict=True)]


def _torch_count(optimizer, index: int, tensors, scheduler, steps_per_epoch: int, step: int | None) -> int:
    """Optimizer steps group `index` has taken: its `step` state; else `step`; else the scheduler's
    epoch times steps_per_epoch; else 0. At least 1 where it holds state (SGD's momentum buffer)."""
    states = [optimizer.state.get(p, {}) for p in tensors]
    if any(states) and not all(states):
        raise ConversionError(f"param group {index}: some parameters have optimizer state and some have none")
    steps = {int(s["step"]) for s in states if "step" in s}
    if len(steps) > 1:
        raise ConversionError(f"param group {index}: its parameters have taken different numbers of steps {steps}")
    if steps and step is not None and steps != {step}:
        raise ConversionError(f"param group {index} has taken {steps.pop()} steps, not step={step}")
    epoch = None if scheduler is None else scheduler.last_epoch
    if steps:
        count = steps.pop()
    elif step is not None:
        count = step
    else:
        count = max(0 if epoch is None else epoch * steps_per_epoch, int(any(states)))
    if epoch is not None and epoch != count // steps_per_epoch:
        raise ConversionError(
            f"scheduler at epoch {epoch} but param group {index} at step {count} ({steps_per_epoch} steps per epoch)"
        )
    return count


def state_from_torch(
    optimizer, scheduler=None, *, params, model=None, steps_per_epoch: int | None = None, step: int | None = None
):
    """The optax state of `from_torch(optimizer, scheduler, model=model)` that continues where
    `optimizer` and `scheduler` are: every param group's step count, base rate and per-parameter
    buffers (Adam's exp_avg, exp_avg_sq, max_exp_avg_sq; SGD's momentum_buffer; RMSprop's
    square_avg, momentum_buffer, grad_avg; Adagrad's sum), each checked against its parameter's shape.

    params: the JAX parameter pytree (structure and names). A torch optimizer that has not stepped
    yet has no state: the result is then `init(params)`'s. SGD records no step count: pass `step`
    (the optimizer steps taken) where the scheduler's epoch does not tell it (steps_per_epoch > 1,
    mid-epoch) and dampening or a schedule depends on it.
    """
    spe = 1 if steps_per_epoch is None else steps_per_epoch
    tx = from_torch(optimizer, scheduler, model=model, steps_per_epoch=spe)
    opt_state = tx.init(params)
    groups = _groups_state(opt_state)
    new = {}
    for i, (r, names, tensors) in enumerate(_torch_groups(optimizer, model)):
        count = _torch_count(optimizer, i, tensors, scheduler, spe, step)
        states = [optimizer.state.get(p, {}) for p in tensors]
        if names is None and any(states):
            raise ConversionError("the optimizer has per-parameter state: pass model= to name its parameters")
        by_name = {} if names is None else dict(zip(names, states, strict=True))
        new[f"group{i}"] = _map_pieces(groups[f"group{i}"], _filler(count, by_name, r))
    return _with_groups_state(opt_state, new)


def _filler(count: int, by_name: dict, r: Rule):
    def fill(s):
        if not hasattr(s, "_fields"):
            return s
        if "count" in s._fields:
            s = s._replace(count=jnp.asarray(count, s.count.dtype))
        for field, key in STATE_KEYS.get(type(s), {}).items():
            s = s._replace(**{field: _fill_tree(getattr(s, field), by_name, key, count, r)})
        return s

    return fill


def _fill_tree(tree, by_name: dict, key: str, count: int, r: Rule):
    def put(path, leaf):
        name = _path_name(path)
        state = by_name.get(name, {})  # {}: torch has not stepped (or one unnamed group without state)
        if key not in state:
            if state:
                raise ConversionError(f"{name}: the torch state has no {key!r} (optimizer {r.name}, step {count})")
            return leaf
        # a copy: jnp.asarray of a tensor's NumPy view may share its memory on the CPU, and torch's
        # optimizer updates its state in place (Adagrad's `sum` exists from construction on)
        value = np.array(state[key].detach().cpu().numpy(), copy=True)
        if value.shape != leaf.shape:
            raise ConversionError(f"{name}: torch {key} has shape {value.shape}, the parameter {leaf.shape}")
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(put, tree)


def _tree_by_name(tree) -> dict:
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def state_to_torch(opt_state, optimizer, scheduler=None, *, model=None, steps_per_epoch: int | None = None) -> None:
    """Loads `opt_state` (of `from_torch(optimizer, scheduler, model=model)`, or `build` with the same
    rule) into `optimizer` and `scheduler` through their `load_state_dict`, so that torch continues
    where JAX stopped: per-parameter buffers and `step`, each group's lr (and OneCycleLR's momentum)
    at that step, its base rate, and the scheduler's epoch counters. (zero_grad=False's gradient
    sum is torch's `.grad`, not optimizer state, and is not carried over.)"""
    import torch

    spe = 1 if steps_per_epoch is None else steps_per_epoch
    schedule = None if scheduler is None else schedule_from_torch(scheduler)
    momentum = momentum_fn(schedule, steps_per_epoch=spe)
    groups = _groups_state(opt_state)
    sd = optimizer.state_dict()
    sd["state"] = {}
    step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    for i, (r, names, _) in enumerate(_torch_groups(optimizer, model)):
        pieces = _pieces(groups[f"group{i}"])
        lr_state = next(s for s in pieces if isinstance(s, LearningRateState))
        count, base = int(lr_state.count), float(lr_state.base_lr)
        buffers = {  # torch key -> {parameter name -> array}
            key: _tree_by_name(getattr(s, field)) for s in pieces for field, key in STATE_KEYS.get(type(s), {}).items()
        }
        if count > 0 and (buffers or r.name in STEPPED):
            if names is None:
                raise ConversionError("the optimizer state has per-parameter buffers: pass model= to name them")
            for name, index in zip(names, sd["param_groups"][i]["params"], strict=True):
                missing = [key for key, by_name in buffers.items() if name not in by_name]
                if missing:
                    raise ConversionError(f"{name}: no {missing[0]} in the JAX optimizer state")
                entry = {key: torch.tensor(jax.device_get(by_name[name])) for key, by_name in buffers.items()}
                if r.name in STEPPED:
                    entry["step"] = torch.tensor(float(count), dtype=step_dtype)
                sd["state"][index] = entry
        group = sd["param_groups"][i]
        group["lr"] = float(_lr(schedule, jnp.asarray(count // spe), base))
        if isinstance(schedule, OneCycleLR):
            group["max_lr"], group["initial_lr"] = base, base / schedule.div_factor
            group["min_lr"] = group["initial_lr"] / schedule.final_div_factor
        elif scheduler is not None:
            group["initial_lr"] = base
        if momentum is not None and "betas" in group:
            group["betas"] = (float(momentum(count)), *group["betas"][1:])
        elif momentum is not None:
            group["momentum"] = float(momentum(count))
    optimizer.load_state_dict(sd)
    if scheduler is not None:
        count = int(next(s for s in _pieces(groups["group0"]) if isinstance(s, LearningRateState)).count)
        scheduler.load_state_dict(_scheduler_state(scheduler, count // spe, optimizer))


def _scheduler_state(scheduler, epoch: int, optimizer) -> dict:
    """`scheduler.state_dict()` as after `epoch` steps, with the optimizer's current rates."""
    sd = scheduler.state_dict()
    last_lr = [g["lr"] for g in optimizer.param_groups]
    base = [g["initial_lr"] for g in optimizer.param_groups]

    def at(state: dict, e: int):
        state.update(last_epoch=e, _step_count=max(e, 0) + 1, _is_initial=False, _get_lr_called_within_step=False)
        if "base_lrs" in state:
            state["base_lrs"] = list(base)
        state["_last_lr"] = list(last_lr)

    at(sd, epoch)
    if "_schedulers" in sd:
        milestones = list(sd["_milestones"])
        active = bisect.bisect_right(milestones, epoch)
        starts = [0, *milestones]
        for j, sub in enumerate(sd["_schedulers"]):
            if j < active:
                at(sub, starts[j + 1] - starts[j] - 1)
            elif j == active:
                at(sub, epoch - starts[j])
            else:
                at(sub, -1)
    return sd
