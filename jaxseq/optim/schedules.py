"""torch.optim.lr_scheduler without any framework: one frozen dataclass per scheduler class, with that
class's constructor arguments, their checks, and the command line's --schedule syntax.

The rule's lr is the schedule's base rate: torch's initial_lr, OneCycleLR's max_lr, CyclicLR's
base_lr. The rates themselves (jnp, inside the compiled step) are in `jaxseq.optim.rates`.

A scheduler that calls the user's Python function (LambdaLR, MultiplicativeLR, CyclicLR's scale_fn)
holds that function's values, evaluated on the host once per epoch before training (`tabulate`), as
a table the compiled step indexes: a Python function cannot be traced in general (`min(1, e / 10)`
is not jnp). Past the table the rate is NaN, so a run longer than its table fails at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxseq.errors import OptionError
from jaxseq.optim.options import refuse


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
class PolynomialLR:
    """lr = base * (1 - min(epoch, total_iters) / total_iters) ** power."""

    total_iters: int = 5
    power: float = 1.0


@dataclass(frozen=True)
class CosineAnnealingWarmRestarts:
    """SGDR: lr = eta_min + (base - eta_min) (1 + cos(pi T_cur / T_i)) / 2, T_cur the epochs since the
    last restart, T_i = T_0 * T_mult ** (restarts so far)."""

    T_0: int
    T_mult: int = 1
    eta_min: float = 0.0


@dataclass(frozen=True)
class OneCycleLR:
    """Smith's one cycle: base/div_factor up to base (the max_lr) over pct_start of total_steps, then
    down to base/div_factor/final_div_factor; three_phase goes back to base/div_factor first. With
    cycle_momentum the momentum (SGD, RMSprop) or beta1 (the Adams) moves the other way, between
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
class CyclicLR:
    """Smith's cyclical rate: from base (torch's base_lr) up to max_lr over step_size_up epochs and
    back over step_size_down, the amplitude times scale(cycle) ("triangular": 1, "triangular2":
    1/2 ** (cycle - 1)) or scale(epoch) ("exp_range": gamma ** epoch), or a custom scale_fn's values
    (`scales`). With cycle_momentum the momentum or beta1 moves the other way, max_momentum to
    base_momentum."""

    max_lr: float
    step_size_up: int = 2000
    step_size_down: int | None = None  # None: step_size_up
    mode: str = "triangular"  # "triangular", "triangular2" or "exp_range"; ignored with scales
    gamma: float = 1.0  # exp_range
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    scales: tuple[float, ...] | None = None  # a custom scale_fn's value at each epoch (`tabulate`)

    @staticmethod
    def tabulate(scale_fn: Callable, scale_mode: str, epochs: int, step_size_up: int, step_size_down=None):
        """The `scales` of torch's custom `scale_fn` over `epochs` epochs: scale_fn(cycle) or, with
        scale_mode "iterations", scale_fn(epoch), as torch's CyclicLR.get_lr calls it."""
        total = float(step_size_up) + float(step_size_up if step_size_down is None else step_size_down)
        if scale_mode == "cycle":
            return tuple(float(scale_fn(int(1 + e / total))) for e in range(epochs))
        return tuple(float(scale_fn(e)) for e in range(epochs))


@dataclass(frozen=True)
class LambdaLR:
    """lr = base * factors[epoch]: the user's function, tabulated (module docstring)."""

    factors: tuple[float, ...]

    @classmethod
    def tabulate(cls, lr_lambda: Callable[[int], float], epochs: int) -> LambdaLR:
        """LambdaLR(lr_lambda) over `epochs` epochs: lr_lambda(0), ..., lr_lambda(epochs - 1)."""
        return cls(tuple(float(lr_lambda(e)) for e in range(epochs)))


@dataclass(frozen=True)
class MultiplicativeLR:
    """lr = base * factors[0] * ... * factors[epoch - 1]: each epoch multiplies the rate by the user's
    function at that epoch (from epoch 1 on, as torch), tabulated (module docstring)."""

    factors: tuple[float, ...]

    @classmethod
    def tabulate(cls, lr_lambda: Callable[[int], float], epochs: int) -> MultiplicativeLR:
        """MultiplicativeLR(lr_lambda) over `epochs` epochs: lr_lambda(1), ..., lr_lambda(epochs - 1)."""
        return cls(tuple(float(lr_lambda(e)) for e in range(1, epochs)))


@dataclass(frozen=True)
class SequentialLR:
    """schedulers[i] from epoch milestones[i - 1] on, restarted there at its epoch 0."""

    schedulers: tuple
    milestones: tuple[int, ...]


@dataclass(frozen=True)
class ChainedScheduler:
    """Every scheduler stepped at every epoch, each multiplying the rate by its own factor: lr = base *
    the product of each one's rate from base 1. Members: the schedules whose torch step multiplies the
    current rate (CHAINABLE)."""

    schedulers: tuple


@dataclass(frozen=True)
class ReduceLROnPlateau:
    """The rate times factor (not below min_lr, and only where it falls by more than eps) once the
    metric, each epoch's loss, has not improved on its best (by threshold, relative or absolute) for
    more than `patience` epochs; then `cooldown` epochs without counting. It reads the loss: the
    transformation's update takes it as `value=loss`."""

    mode: str = "min"  # "min" or "max"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"  # "rel" or "abs"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8


@dataclass(frozen=True)
class PerGroup:
    """A different schedule of one kind per param group (torch's per-group lr_lambda, max_lr, min_lr,
    momenta): group i follows schedules[i]."""

    schedules: tuple


SCHEDULES = (
    StepLR,
    MultiStepLR,
    ExponentialLR,
    CosineAnnealingLR,
    LinearLR,
    ConstantLR,
    PolynomialLR,
    CosineAnnealingWarmRestarts,
    OneCycleLR,
    CyclicLR,
    LambdaLR,
    MultiplicativeLR,
    SequentialLR,
    ChainedScheduler,
    ReduceLROnPlateau,
    PerGroup,
)
Schedule = (
    StepLR
    | MultiStepLR
    | ExponentialLR
    | CosineAnnealingLR
    | LinearLR
    | ConstantLR
    | PolynomialLR
    | CosineAnnealingWarmRestarts
    | OneCycleLR
    | CyclicLR
    | LambdaLR
    | MultiplicativeLR
    | SequentialLR
    | ChainedScheduler
    | ReduceLROnPlateau
    | PerGroup
)
# The schedules whose torch step multiplies the current rate by a factor of the epoch alone, so that
# chained they multiply (torch's ChainedScheduler steps them one after the other on the same rate).
CHAINABLE = (StepLR, MultiStepLR, ExponentialLR, ConstantLR, LinearLR, PolynomialLR, MultiplicativeLR)
# The schedules that may follow another in a SequentialLR: their rate restarts from base at the milestone.
SEQUENTIAL = (
    StepLR,
    MultiStepLR,
    ExponentialLR,
    CosineAnnealingLR,
    LinearLR,
    ConstantLR,
    PolynomialLR,
    CosineAnnealingWarmRestarts,
    LambdaLR,
)


def for_group(spec, index: int):
    """The schedule param group `index` follows: PerGroup's schedules[index], any other `spec` itself."""
    return spec.schedules[index] if isinstance(spec, PerGroup) else spec


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
    elif isinstance(spec, PolynomialLR):
        problems.append((spec.total_iters < 1, f"total_iters must be >= 1; got {spec.total_iters}"))
    elif isinstance(spec, CosineAnnealingWarmRestarts):
        problems += [
            (not isinstance(spec.T_0, int) or spec.T_0 < 1, f"T_0 must be an integer >= 1; got {spec.T_0}"),
            (not isinstance(spec.T_mult, int) or spec.T_mult < 1, f"T_mult must be an integer >= 1; got {spec.T_mult}"),
        ]
    elif isinstance(spec, OneCycleLR):
        problems += [
            (spec.total_steps < 1, f"total_steps must be >= 1; got {spec.total_steps}"),
            (not 0 <= spec.pct_start <= 1, f"pct_start must be in [0, 1]; got {spec.pct_start}"),
            (spec.anneal_strategy not in ("cos", "linear"), f"anneal_strategy {spec.anneal_strategy!r}: cos or linear"),
        ]
    elif isinstance(spec, CyclicLR):
        down = spec.step_size_up if spec.step_size_down is None else spec.step_size_down
        problems += [
            (spec.step_size_up + down <= 0, f"step sizes must add up to > 0; got {spec.step_size_up}, {down}"),
            (
                spec.scales is None and spec.mode not in ("triangular", "triangular2", "exp_range"),
                f"mode {spec.mode!r}: triangular, triangular2 or exp_range",
            ),
        ]
    elif isinstance(spec, (LambdaLR, MultiplicativeLR)):
        problems.append((not spec.factors and isinstance(spec, LambdaLR), "needs at least one epoch's factor"))
    elif isinstance(spec, SequentialLR):
        milestones, first = list(spec.milestones), (spec.schedulers or (None,))[0]
        problems += [
            (len(milestones) != len(spec.schedulers) - 1, "needs one milestone fewer than schedulers"),
            (milestones != sorted(milestones) or any(m < 1 for m in milestones), "milestones must increase from 1"),
            (not isinstance(first, (*SEQUENTIAL, MultiplicativeLR)), f"{type(first).__name__} cannot start it"),
            (
                not all(isinstance(s, SEQUENTIAL) for s in spec.schedulers[1:]),
                f"only {', '.join(c.__name__ for c in SEQUENTIAL)} restart at a milestone",
            ),
        ]
        for sub in spec.schedulers:
            check_schedule(sub)
    elif isinstance(spec, ChainedScheduler):
        problems += [
            (not spec.schedulers, "needs at least one scheduler"),
            (
                not all(isinstance(s, CHAINABLE) for s in spec.schedulers),
                f"only {', '.join(c.__name__ for c in CHAINABLE)} chain",
            ),
        ]
        for sub in spec.schedulers:
            check_schedule(sub)
    elif isinstance(spec, ReduceLROnPlateau):
        problems += [
            (spec.mode not in ("min", "max"), f"mode {spec.mode!r}: min or max"),
            (spec.threshold_mode not in ("rel", "abs"), f"threshold_mode {spec.threshold_mode!r}: rel or abs"),
            (not spec.factor < 1.0, f"factor must be < 1; got {spec.factor}"),
        ]
    elif isinstance(spec, PerGroup):
        problems += [
            (not spec.schedules, "needs one schedule per param group"),
            (len({type(s) for s in spec.schedules}) > 1, "its schedules must be of one kind"),
            (any(isinstance(s, PerGroup) for s in spec.schedules), "PerGroup inside PerGroup"),
        ]
        for sub in spec.schedules:
            check_schedule(sub)
    refuse(problems, f"{type(spec).__name__}: ")


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
