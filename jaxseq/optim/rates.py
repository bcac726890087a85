"""The learning rate (and cycled momentum) torch's schedulers give at an optimizer step, in jnp, and
the rate's state inside a transformation.

torch steps its schedulers recursively in Python floats (`lr *= gamma`); here they are its closed
forms (`_get_closed_form_lr` where torch has one), with its order of operations and IEEE divisions
(`_ieee_div`): the two agree to 3e-13 relative over 1000 steps. ReduceLROnPlateau has no closed
form: it depends on the losses, so its rate is state (`PlateauState`), stepped with each loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.errors import ConversionError, OptionError
from jaxseq.optim import schedules as S


def _epoch(count, steps_per_epoch):
    return jnp.asarray(count) // steps_per_epoch


def _ieee_div(a, b):
    """a / b rounded as IEEE (and torch's Python floats) round it. XLA rewrites a division by a
    constant or by a broadcast scalar into a multiplication by its reciprocal, one ulp off; where the
    quotient meets a cancellation (1 + cos near pi, OneCycleLR's linear anneal near its end) that ulp
    grows to 1e-11 relative. `b + 0 * a` is neither, and XLA keeps `0 * a` (NaN-preserving)."""
    return a / (b + 0.0 * a)


def _table(values, index):
    """values[index] (a jnp table of Python floats), NaN past its end: a run longer than a tabulated
    schedule (LambdaLR, MultiplicativeLR, CyclicLR's scale_fn) fails at once instead of going on."""
    table = jnp.asarray(np.append(np.asarray(values, np.float64), np.nan), jnp.result_type(float))
    return table[jnp.minimum(index, len(values))]


def _lr(spec, epoch, base):
    """torch's rate of `spec` at integer `epoch` (jnp), from base rate `base`, with torch's order of
    operations (its `_get_closed_form_lr`, or `get_lr` where that is already closed)."""
    base = jnp.asarray(base, dtype=jnp.result_type(float))
    e = epoch.astype(base.dtype)
    if spec is None:
        return base * jnp.ones_like(e)
    if isinstance(spec, S.StepLR):
        return base * spec.gamma ** (epoch // spec.step_size).astype(base.dtype)
    if isinstance(spec, S.MultiStepLR):
        passed = sum((epoch >= m).astype(base.dtype) for m in sorted(spec.milestones))
        return base * spec.gamma**passed
    if isinstance(spec, S.ExponentialLR):
        return base * spec.gamma**e
    if isinstance(spec, S.CosineAnnealingLR):
        return spec.eta_min + (base - spec.eta_min) * (1 + jnp.cos(_ieee_div(math.pi * e, spec.T_max))) / 2
    if isinstance(spec, S.LinearLR):
        ramp = _ieee_div((spec.end_factor - spec.start_factor) * jnp.minimum(e, spec.total_iters), spec.total_iters)
        return base * (spec.start_factor + ramp)
    if isinstance(spec, S.ConstantLR):
        return base * (spec.factor + (epoch >= spec.total_iters) * (1 - spec.factor))
    if isinstance(spec, S.PolynomialLR):
        return base * (1.0 - _ieee_div(jnp.minimum(e, spec.total_iters), spec.total_iters)) ** spec.power
    if isinstance(spec, S.CosineAnnealingWarmRestarts):
        t_cur, t_i = _restarts(spec, epoch)
        cosine = 1 + jnp.cos(_ieee_div(math.pi * t_cur.astype(base.dtype), t_i.astype(base.dtype)))
        return spec.eta_min + (base - spec.eta_min) * cosine / 2
    if isinstance(spec, S.OneCycleLR):
        initial = base / spec.div_factor
        values = {"initial_lr": initial, "max_lr": base, "min_lr": initial / spec.final_div_factor}
        return _one_cycle(spec, e, values, lr=True)
    if isinstance(spec, S.CyclicLR):
        factor, scale = _cyclic(spec, epoch, base.dtype)
        return base + (spec.max_lr - base) * factor * scale
    if isinstance(spec, S.LambdaLR):
        return base * _table(spec.factors, epoch)
    if isinstance(spec, S.MultiplicativeLR):
        products = [1.0]
        for factor in spec.factors:
            products.append(products[-1] * factor)
        return base * _table(products, epoch)
    if isinstance(spec, S.SequentialLR):
        index = sum((epoch >= m).astype(jnp.int32) for m in spec.milestones)
        starts = (0, *spec.milestones)
        branches = [_lr(sub, epoch - start, base) for sub, start in zip(spec.schedulers, starts, strict=True)]
        return jnp.select([index == i for i in range(len(branches))], branches)
    if isinstance(spec, S.ChainedScheduler):
        rate = base
        for sub in spec.schedulers:
            rate = rate * _lr(sub, epoch, 1.0)
        return rate
    raise ConversionError(f"schedule {type(spec).__name__} has no closed form here")


def _restarts(spec: S.CosineAnnealingWarmRestarts, epoch):
    """(T_cur, T_i) at `epoch`: the epochs since the last restart and the current period, as torch's
    step() counts them (restarts at T_0, T_0 + T_0 T_mult, ...)."""
    if spec.T_mult == 1:
        return epoch % spec.T_0, jnp.full_like(epoch, spec.T_0)
    starts, periods, limit = [0], [spec.T_0], np.iinfo(np.int32).max
    while starts[-1] + periods[-1] < limit and periods[-1] * spec.T_mult < limit:
        starts.append(starts[-1] + periods[-1])
        periods.append(periods[-1] * spec.T_mult)
    restarts = sum((epoch >= s).astype(jnp.int32) for s in starts[1:])
    return epoch - jnp.asarray(starts, epoch.dtype)[restarts], jnp.asarray(periods, epoch.dtype)[restarts]


def _cyclic(spec: S.CyclicLR, epoch, dtype):
    """CyclicLR.get_lr's (scale_factor, scale_fn(...)) at `epoch`: the rate is base + (max - base) *
    scale_factor * scale, the momentum max - (max - base) * scale_factor * scale."""
    up = float(spec.step_size_up)
    total = up + float(spec.step_size_up if spec.step_size_down is None else spec.step_size_down)
    ratio = up / total
    e = epoch.astype(dtype)
    cycle = jnp.floor(1 + _ieee_div(e, total))
    x = 1.0 + _ieee_div(e, total) - cycle
    factor = jnp.where(x <= ratio, _ieee_div(x, ratio), _ieee_div(x - 1, ratio - 1))
    if spec.scales is not None:
        return factor, _table(spec.scales, epoch)
    if spec.mode == "triangular":
        return factor, 1.0
    if spec.mode == "triangular2":
        return factor, 1 / 2.0 ** (cycle - 1)
    return factor, spec.gamma**e


def _one_cycle(spec: S.OneCycleLR, step, values, *, lr: bool):
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


def rate_fn(schedule, base_lr: float, *, steps_per_epoch: int = 1) -> Callable:
    """optax schedule `count -> lr`: the rate torch's `schedule` (a Schedule, or None: constant) gives
    at optimizer step `count` (from 0) from `base_lr`, the scheduler stepping once every
    `steps_per_epoch` optimizer steps. (`schedule_fn` also reads torch schedulers.) ReduceLROnPlateau
    depends on the losses, not the step: it has no such function."""
    if isinstance(schedule, (S.ReduceLROnPlateau, S.PerGroup)):
        raise OptionError(f"{type(schedule).__name__} is not a function of the step")
    return lambda count: _lr(schedule, _epoch(count, steps_per_epoch), base_lr)


def momentum_fn(schedule, *, steps_per_epoch: int = 1) -> Callable | None:
    """OneCycleLR's or CyclicLR's cycled momentum (SGD, RMSprop) or beta1 (the Adams) as `count ->
    momentum`, what torch sets at optimizer step `count`; None where `schedule` leaves it alone."""
    if not (isinstance(schedule, (S.OneCycleLR, S.CyclicLR)) and schedule.cycle_momentum):
        return None
    dtype = jnp.result_type(float)
    if isinstance(schedule, S.CyclicLR):

        def cyclic(count):
            factor, scale = _cyclic(schedule, _epoch(count, steps_per_epoch), dtype)
            return schedule.max_momentum - (schedule.max_momentum - schedule.base_momentum) * factor * scale

        return cyclic
    values = {"base_momentum": schedule.base_momentum, "max_momentum": schedule.max_momentum}
    return lambda count: _one_cycle(schedule, _epoch(count, steps_per_epoch).astype(dtype), values, lr=False)


# ---------------------------------------------------------------------------------------------
# The rate inside a transformation's state: the step count and the base rate (which `with_learning_rate`
# sets, so one compiled program serves every rate), and ReduceLROnPlateau's own state.


class LearningRateState(NamedTuple):
    count: jax.Array  # optimizer steps taken (int32)
    base_lr: jax.Array  # the schedule's base rate (torch's initial_lr; OneCycleLR's max_lr)


class PlateauState(NamedTuple):
    """ReduceLROnPlateau's rate: base_lr until the first reduction, `lr` from then on."""

    count: jax.Array  # optimizer steps taken (int32)
    base_lr: jax.Array  # the rate before any reduction
    lr: jax.Array  # the rate after the last reduction (meaningful where `reduced`)
    reduced: jax.Array  # bool: whether the rate has been reduced
    best: jax.Array  # the best metric so far (torch's `best`; inf for mode min at first)
    num_bad_epochs: jax.Array  # int32
    cooldown_counter: jax.Array  # int32


def rate_init(base_lr, schedule) -> LearningRateState | PlateauState:
    """The rate's state before the first step."""
    base = jnp.asarray(base_lr, jnp.result_type(float))
    count = jnp.zeros([], jnp.int32)
    if not isinstance(schedule, S.ReduceLROnPlateau):
        return LearningRateState(count, base)
    worst = jnp.inf if schedule.mode == "min" else -jnp.inf
    zero = jnp.zeros([], jnp.int32)
    return PlateauState(count, base, base, jnp.asarray(False), jnp.asarray(worst, base.dtype), zero, zero)


def rate_now(state, schedule, steps_per_epoch: int):
    """The learning rate of the coming step (float64 where enabled)."""
    if isinstance(state, PlateauState):
        return jnp.where(state.reduced, state.lr, state.base_lr)
    return _lr(schedule, _epoch(state.count, steps_per_epoch), state.base_lr)


def rate_advance(state, schedule, steps_per_epoch: int, value=None):
    """The rate's state after a step; ReduceLROnPlateau steps at the end of each epoch with `value`,
    the step's loss."""
    count = optax.safe_increment(state.count)
    if not isinstance(state, PlateauState):
        return state._replace(count=count)
    if value is None:
        raise OptionError(
            "ReduceLROnPlateau reads each step's loss: call tx.update(grads, opt_state, params, value=loss)"
        )
    stepped = _plateau_step(state._replace(count=count), schedule, jnp.asarray(value, state.best.dtype))
    due = count % steps_per_epoch == 0
    return jax.tree.map(lambda new, old: jnp.where(due, new, old), stepped, state._replace(count=count))


def _plateau_step(state: PlateauState, spec: S.ReduceLROnPlateau, current) -> PlateauState:
    """ReduceLROnPlateau.step(current), torch's order of tests."""
    if spec.mode == "min" and spec.threshold_mode == "rel":
        better = current < state.best * (1.0 - spec.threshold)
    elif spec.mode == "min":
        better = current < state.best - spec.threshold
    elif spec.threshold_mode == "rel":
        better = current > state.best * (spec.threshold + 1.0)
    else:
        better = current > state.best + spec.threshold
    best = jnp.where(better, current, state.best)
    bad = jnp.where(better, 0, state.num_bad_epochs + 1)
    cooling = state.cooldown_counter > 0
    cooldown = jnp.where(cooling, state.cooldown_counter - 1, state.cooldown_counter)
    bad = jnp.where(cooling, 0, bad)
    reduce = bad > spec.patience
    old = jnp.where(state.reduced, state.lr, state.base_lr)
    new = jnp.maximum(old * spec.factor, spec.min_lr)
    lowered = reduce & (old - new > spec.eps)
    return state._replace(
        lr=jnp.where(lowered, new, state.lr),
        reduced=state.reduced | lowered,
        best=best,
        num_bad_epochs=jnp.where(reduce, 0, bad).astype(jnp.int32),
        cooldown_counter=jnp.where(reduce, spec.cooldown, cooldown).astype(jnp.int32),
    )


def is_rate_state(s) -> bool:
    """Whether `s` is a rate's state (it holds the base rate), also inside Rprop's and ASGD's."""
    return isinstance(s, (LearningRateState, PlateauState))
