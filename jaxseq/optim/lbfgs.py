"""torch.optim.LBFGS in JAX: one compiled step that evaluates the objective as often as torch's
`LBFGS.step(closure)` calls its closure, and takes the same iterates (float64).

torch's step is a loop of up to max_iter iterations: a direction from the L-BFGS memory (the
two-loop recursion over the last history_size pairs s = t d, y = g_new - g_old with y.s > 1e-10,
scaled by y.s / y.y), a step length (min(1, 1 / |g|_1) lr at the very first iteration, lr after),
then either a fixed step and one evaluation (line_search_fn None, none at the last iteration) or
More and Thuente's strong Wolfe line search (c1 1e-4, c2 0.9, cubic interpolation, at most
max_eval - evaluations so far), and its stopping tests (|g|_inf <= tolerance_grad, g.d >
-tolerance_change, |t d|_inf <= tolerance_change, |f - f_prev| < tolerance_change, max_iter,
max_eval). Here the loop is a `lax.while_loop` whose body holds the one evaluation of an iteration;
the line search is a `lax.while_loop` too (bracketing, then zoom: one evaluation per pass), and
the memory a ring of history_size rows. Every test and formula is torch's, in its order
(torch/optim/lbfgs.py); only reductions (dot products, sums) add in another order. optax has no
L-BFGS that evaluates the objective itself this way (`optax.lbfgs` is a GradientTransformation
taking one gradient per update, with a zoom line search of its own).

>>> opt = LBFGS(lr=1.0, max_iter=5, line_search_fn="strong_wolfe")
>>> step = jax.jit(functools.partial(opt.step, jax.value_and_grad(loss_fn)))
>>> state = opt.init(params)
>>> params, state, loss, grads = step(params, state)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from jaxseq.errors import ConversionError
from jaxseq.optim.options import LBFGS_OPTIONS, refuse
from jaxseq.optim.rates import LearningRateState, PlateauState, rate_advance, rate_init, rate_now
from jaxseq.optim.schedules import check_schedule, for_group
from jaxseq.optim.state import param_names

C1, C2 = 1e-4, 0.9  # torch's _strong_wolfe: sufficient decrease, curvature


class ClosureOptimizer:
    """An optimizer that evaluates the objective itself, as often as it needs in a step (torch's
    `optimizer.step(closure)`), instead of transforming one gradient per step as an optax
    GradientTransformation does. A trainer tells the two apart with `isinstance(tx, ClosureOptimizer)`.

        state = opt.init(params)
        params, state, loss, grads = opt.step(value_and_grad, params, state)

    `value_and_grad(params) -> (loss, grads)` is the objective (the closure); `loss` and `grads`
    returned are those of the step's first evaluation, at the parameters it started from (what
    torch's `step(closure)` returns, what a training loop logs). A trainer that has already
    evaluated the objective there passes `first=(loss, grads)`, and the step does not evaluate it
    again. `step` is traceable: jit it with value_and_grad fixed."""

    def init(self, params):
        raise NotImplementedError

    def step(self, value_and_grad, params, state, first=None):
        raise NotImplementedError


class LBFGSState(NamedTuple):
    rate: LearningRateState | PlateauState  # optimizer steps taken (`count`) and the base rate
    func_evals: jax.Array  # torch's func_evals: objective evaluations, all steps (int32)
    n_iter: jax.Array  # torch's n_iter: iterations, all steps (int32); 0 before the first
    d_N: jax.Array  # torch's d: the last direction, flat (N parameters, in leaf order)
    t: jax.Array  # torch's t: the last step length
    old_dirs_HxN: jax.Array  # torch's old_dirs (the y's), a ring of history_size rows
    old_stps_HxN: jax.Array  # torch's old_stps (the s's)
    ro_H: jax.Array  # torch's ro: 1 / y.s
    first: jax.Array  # the ring's oldest row (int32)
    num_old: jax.Array  # rows in use (int32)
    H_diag: jax.Array  # torch's H_diag: y.s / y.y of the newest pair (1 before any)
    prev_flat_grad_N: jax.Array  # torch's prev_flat_grad
    prev_loss: jax.Array  # torch's prev_loss


@dataclass(frozen=True)
class LBFGS(ClosureOptimizer):
    """torch.optim.LBFGS(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change,
    history_size, line_search_fn), one param group, with a learning-rate schedule (any but
    PerGroup) stepped every `steps_per_epoch` steps."""

    lr: float = 1.0  # the base rate: the step length (times min(1, 1 / |g|_1) at the first iteration)
    max_iter: int = 20  # iterations per step
    max_eval: int | None = None  # objective evaluations per step; None: max_iter * 5 // 4, as torch
    tolerance_grad: float = 1e-7  # stop where |g|_inf <= this
    tolerance_change: float = 1e-9  # stop where the loss, the step or g.d change by less
    history_size: int = 100  # the (s, y) pairs kept
    line_search_fn: str | None = None  # None (a fixed step) or "strong_wolfe"
    schedule: Any = None  # a Schedule of the learning rate
    steps_per_epoch: int = 1  # optimizer steps per scheduler step

    def __post_init__(self):
        if self.max_eval is None:
            object.__setattr__(self, "max_eval", self.max_iter * 5 // 4)
        refuse(
            [
                (not self.lr >= 0, f"lr must be >= 0; got {self.lr}"),
                (self.max_iter < 1, f"max_iter must be >= 1; got {self.max_iter}"),
                (self.max_eval < 1, f"max_eval must be >= 1; got {self.max_eval}"),
                (self.history_size < 1, f"history_size must be >= 1; got {self.history_size}"),
                (
                    self.line_search_fn not in (None, "strong_wolfe"),
                    f"line_search_fn must be None or 'strong_wolfe'; got {self.line_search_fn!r}",
                ),
                (self.steps_per_epoch < 1, f"steps_per_epoch must be >= 1; got {self.steps_per_epoch}"),
            ],
            "LBFGS: ",
        )
        if self.schedule is not None:
            check_schedule(self.schedule)

    def init(self, params) -> LBFGSState:
        flat_N, _ = ravel_pytree(params)
        n, dtype = flat_N.size, flat_N.dtype
        zero, int0 = jnp.zeros([], dtype), jnp.zeros([], jnp.int32)
        history = jnp.zeros((self.history_size, n), dtype)
        return LBFGSState(
            rate=rate_init(self.lr, self.schedule),
            func_evals=int0,
            n_iter=int0,
            d_N=jnp.zeros(n, dtype),
            t=zero,
            old_dirs_HxN=history,
            old_stps_HxN=history,
            ro_H=jnp.zeros(self.history_size, dtype),
            first=int0,
            num_old=int0,
            H_diag=jnp.ones([], dtype),
            prev_flat_grad_N=jnp.zeros(n, dtype),
            prev_loss=zero,
        )

    def step(self, value_and_grad, params, state: LBFGSState, first=None):
        """One torch `LBFGS.step(closure)`: (params, state, loss, grads), loss and grads of the first
        evaluation, `first` where given (ClosureOptimizer)."""
        flat_N, unravel = ravel_pytree(params)
        dtype = flat_N.dtype

        def evaluate(x_N):
            loss, grads = value_and_grad(unravel(x_N))
            return jnp.asarray(loss, dtype), ravel_pytree(grads)[0].astype(dtype)

        loss0, grads0 = value_and_grad(params) if first is None else first
        loss, g_N = jnp.asarray(loss0, dtype), ravel_pytree(grads0)[0].astype(dtype)
        lr = rate_now(state.rate, self.schedule, self.steps_per_epoch).astype(dtype)
        start = _Iteration(
            x_N=flat_N,
            loss=loss,
            g_N=g_N,
            state=state._replace(func_evals=state.func_evals + 1),
            n_iter=jnp.zeros([], jnp.int32),
            current_evals=jnp.ones([], jnp.int32),
            opt_cond=jnp.max(jnp.abs(g_N)) <= self.tolerance_grad,
            done=jnp.max(jnp.abs(g_N)) <= self.tolerance_grad,  # optimal already: torch returns at once
        )
        end = lax.while_loop(
            lambda it: ~it.done & (it.n_iter < self.max_iter),
            lambda it: self._iteration(it, lr, evaluate),
            start,
        )
        rate = rate_advance(state.rate, self.schedule, self.steps_per_epoch, loss0)
        return unravel(end.x_N), end.state._replace(rate=rate), loss0, grads0

    def _iteration(self, it: _Iteration, lr, evaluate) -> _Iteration:
        """One pass of torch's `while n_iter < max_iter` loop."""
        s = it.state
        n_iter, total_iter = it.n_iter + 1, s.n_iter + 1
        s = lax.cond(total_iter == 1, _steepest, self._lbfgs_direction, s, it.g_N)
        s = s._replace(n_iter=total_iter, prev_flat_grad_N=it.g_N, prev_loss=it.loss)
        grad_sum = jnp.sum(jnp.abs(it.g_N))
        t = jnp.where(total_iter == 1, jnp.minimum(1.0, 1.0 / grad_sum) * lr, lr)
        s = s._replace(t=t)
        gtd = jnp.dot(it.g_N, s.d_N)
        it = it._replace(state=s, n_iter=n_iter)
        return lax.cond(
            gtd > -self.tolerance_change, lambda: it._replace(done=True), lambda: self._move(it, gtd, evaluate)
        )

    def _lbfgs_direction(self, s: LBFGSState, g_N) -> LBFGSState:
        """The memory updated with the last step's pair (where y.s > 1e-10), then -H g."""
        y_N = g_N - s.prev_flat_grad_N
        s_N = s.d_N * s.t
        ys = jnp.dot(y_N, s_N)
        full = s.num_old == self.history_size
        slot = jnp.where(full, s.first, (s.first + s.num_old) % self.history_size)
        pushed = s._replace(
            old_dirs_HxN=s.old_dirs_HxN.at[slot].set(y_N),
            old_stps_HxN=s.old_stps_HxN.at[slot].set(s_N),
            ro_H=s.ro_H.at[slot].set(1.0 / ys),
            first=jnp.where(full, (s.first + 1) % self.history_size, s.first),
            num_old=jnp.where(full, s.num_old, s.num_old + 1),
            H_diag=ys / jnp.dot(y_N, y_N),
        )
        s = jax.tree.map(lambda new, old: jnp.where(ys > 1e-10, new, old), pushed, s)
        return s._replace(d_N=self._two_loop(s, g_N))

    def _two_loop(self, s: LBFGSState, g_N):
        """torch's two-loop recursion over the memory, oldest pair first: d = -H g."""

        def row(i):
            return (s.first + i) % self.history_size

        def backward(k, carry):
            q_N, al_H = carry
            i = s.num_old - 1 - k
            al = jnp.dot(s.old_stps_HxN[row(i)], q_N) * s.ro_H[row(i)]
            return q_N + (-al) * s.old_dirs_HxN[row(i)], al_H.at[i].set(al)

        q_N, al_H = lax.fori_loop(0, s.num_old, backward, (-g_N, jnp.zeros_like(s.ro_H)))

        def forward(i, r_N):
            be = jnp.dot(s.old_dirs_HxN[row(i)], r_N) * s.ro_H[row(i)]
            return r_N + (al_H[i] - be) * s.old_stps_HxN[row(i)]

        return lax.fori_loop(0, s.num_old, forward, q_N * s.H_diag)

    def _move(self, it: _Iteration, gtd, evaluate) -> _Iteration:
        """The step along d (line search or fixed), then torch's stopping tests."""
        s = it.state
        d_N, t = s.d_N, s.t
        if self.line_search_fn == "strong_wolfe":
            max_ls = self.max_eval - it.current_evals
            loss, g_N, t, evals = _strong_wolfe(
                evaluate, it.x_N, t, d_N, it.loss, it.g_N, gtd, self.tolerance_change, max_ls
            )
            opt_cond = jnp.max(jnp.abs(g_N)) <= self.tolerance_grad
        else:

            def again():
                loss, g_N = evaluate(it.x_N + t * d_N)
                return loss, g_N, jnp.max(jnp.abs(g_N)) <= self.tolerance_grad, jnp.ones([], jnp.int32)

            def last():
                return it.loss, it.g_N, it.opt_cond, jnp.zeros([], jnp.int32)

            loss, g_N, opt_cond, evals = lax.cond(it.n_iter != self.max_iter, again, last)
        x_N = it.x_N + t * d_N
        current_evals = it.current_evals + evals
        done = (
            (it.n_iter == self.max_iter)
            | (current_evals >= self.max_eval)
            | opt_cond
            | (jnp.max(jnp.abs(d_N * t)) <= self.tolerance_change)
            | (jnp.abs(loss - s.prev_loss) < self.tolerance_change)
        )
        s = s._replace(t=t, func_evals=s.func_evals + evals)
        return it._replace(
            x_N=x_N, loss=loss, g_N=g_N, state=s, current_evals=current_evals, opt_cond=opt_cond, done=done
        )


class _Iteration(NamedTuple):
    """The carry of torch's iteration loop within one step."""

    x_N: jax.Array  # the parameters, flat
    loss: jax.Array  # the loss at x (torch's `loss`)
    g_N: jax.Array  # the gradient at x (torch's `flat_grad`)
    state: LBFGSState
    n_iter: jax.Array  # iterations in this step (int32)
    current_evals: jax.Array  # evaluations in this step (int32)
    opt_cond: jax.Array  # |g|_inf <= tolerance_grad
    done: jax.Array  # a stopping test has fired


def _steepest(s: LBFGSState, g_N) -> LBFGSState:
    """The very first iteration: d = -g, an empty memory, H_diag 1."""
    return s._replace(
        d_N=-g_N, first=jnp.zeros_like(s.first), num_old=jnp.zeros_like(s.num_old), H_diag=jnp.ones_like(s.H_diag)
    )


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's _cubic_interpolate: the minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2),
    clamped to `bounds` (default: between x1 and x2); their middle where the cubic has none."""
    if bounds is None:
        xmin_bound, xmax_bound = jnp.where(x1 <= x2, x1, x2), jnp.where(x1 <= x2, x2, x1)
    else:
        xmin_bound, xmax_bound = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    d2 = jnp.sqrt(jnp.where(d2_square >= 0, d2_square, 0.0))
    min_pos = jnp.where(
        x1 <= x2,
        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)),
    )
    return jnp.where(
        d2_square >= 0, jnp.minimum(jnp.maximum(min_pos, xmin_bound), xmax_bound), (xmin_bound + xmax_bound) / 2.0
    )


BRACKET, ZOOM, FINISHED = 0, 1, 2  # the line search's phases


class _Search(NamedTuple):
    """The carry of the strong Wolfe line search: the point to evaluate next (t), the bracketing
    phase's previous point, the bracket, and the counters."""

    phase: jax.Array  # BRACKET, ZOOM or FINISHED (int32)
    t: jax.Array  # the step length evaluated next (the result's, when FINISHED)
    ls_iter: jax.Array  # torch's ls_iter (int32)
    evals: jax.Array  # torch's ls_func_evals (int32)
    t_prev: jax.Array
    f_prev: jax.Array
    g_prev_N: jax.Array
    gtd_prev: jax.Array
    b_2: jax.Array  # torch's bracket (two step lengths; a point that satisfies Wolfe twice)
    f_2: jax.Array  # bracket_f
    g_2xN: jax.Array  # bracket_g
    gtd_2: jax.Array  # bracket_gtd
    low: jax.Array  # torch's low_pos (int32; high_pos = 1 - low)
    insuf_progress: jax.Array
    done: jax.Array  # the Wolfe conditions hold at bracket[low]


def _strong_wolfe(evaluate, x_N, t, d_N, f, g_N, gtd, tolerance_change, max_ls):
    """torch's _strong_wolfe(obj_func, x, t, d, f, g, gtd, max_ls=max_ls): (f_new, g_new, t, evals)."""
    d_norm = jnp.max(jnp.abs(d_N))
    i0 = jnp.zeros([], jnp.int32)
    pair = jnp.stack([t, t])
    start = _Search(
        phase=i0 + BRACKET,
        t=t,
        ls_iter=i0,
        evals=i0,
        t_prev=jnp.zeros_like(t),
        f_prev=f,
        g_prev_N=g_N,
        gtd_prev=gtd,
        b_2=pair,
        f_2=jnp.stack([f, f]),
        g_2xN=jnp.stack([g_N, g_N]),
        gtd_2=jnp.stack([gtd, gtd]),
        low=i0,
        insuf_progress=jnp.asarray(False),
        done=jnp.asarray(False),
    )

    def body(ls: _Search) -> _Search:
        f_new, g_new_N = evaluate(x_N + ls.t * d_N)
        gtd_new = jnp.dot(g_new_N, d_N)
        ls = ls._replace(evals=ls.evals + 1)
        new = (ls.t, f_new, g_new_N, gtd_new)
        ls = lax.cond(ls.phase == BRACKET, _bracket_step, _zoom_step, ls, new, f, g_N, gtd, max_ls)
        return lax.cond(ls.phase == ZOOM, _zoom_next, lambda ls, *_: ls, ls, d_norm, tolerance_change, max_ls)

    end = lax.while_loop(lambda ls: ls.phase != FINISHED, body, start)
    return end.f_2[end.low], end.g_2xN[end.low], end.b_2[end.low], end.evals


def _bracket(ls: _Search, points, phase, done=False) -> _Search:
    """The bracket set to two (t, f, g, gtd) points, low_pos as torch picks it after bracketing."""
    (ta, fa, ga, gtda), (tb, fb, gb, gtdb) = points
    f_2 = jnp.stack([fa, fb])
    return ls._replace(
        phase=jnp.asarray(phase, jnp.int32),
        b_2=jnp.stack([ta, tb]),
        f_2=f_2,
        g_2xN=jnp.stack([ga, gb]),
        gtd_2=jnp.stack([gtda, gtdb]),
        low=jnp.where(f_2[0] <= f_2[1], 0, 1).astype(jnp.int32),
        done=jnp.asarray(done),
    )


def _bracket_step(ls: _Search, new, f, g_N, gtd, max_ls) -> _Search:
    """After an evaluation while bracketing: torch's tests at the top of its first loop, in order."""
    t, f_new, g_new_N, gtd_new = new
    previous = (ls.t_prev, ls.f_prev, ls.g_prev_N, ls.gtd_prev)
    out_of_evals = ls.ls_iter >= max_ls
    armijo_fails = (f_new > f + C1 * t * gtd) | ((ls.ls_iter > 1) & (f_new >= ls.f_prev))
    wolfe = jnp.abs(gtd_new) <= -C2 * gtd
    rising = gtd_new >= 0
    min_step = t + 0.01 * (t - ls.t_prev)
    max_step = t * 10
    onward = ls._replace(
        t=_cubic_interpolate(ls.t_prev, ls.f_prev, ls.gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)),
        t_prev=t,
        f_prev=f_new,
        g_prev_N=g_new_N,
        gtd_prev=gtd_new,
        ls_iter=ls.ls_iter + 1,
    )
    branches = [
        _bracket(ls, ((jnp.zeros_like(t), f, g_N, gtd), new), FINISHED),
        _bracket(ls, (previous, new), ZOOM),
        _bracket(ls, (new, new), FINISHED, done=True),
        onward,
    ]
    which = jnp.select([out_of_evals, armijo_fails | (~wolfe & rising), wolfe], [0, 1, 2], 3)
    return jax.tree.map(lambda *xs: jnp.stack(xs)[which], *branches)


def _set(ls: _Search, at, point) -> _Search:
    """bracket[at], bracket_f[at], bracket_g[at], bracket_gtd[at] = point."""
    t, f, g_N, gtd = point
    return ls._replace(
        b_2=ls.b_2.at[at].set(t),
        f_2=ls.f_2.at[at].set(f),
        g_2xN=ls.g_2xN.at[at].set(g_N),
        gtd_2=ls.gtd_2.at[at].set(gtd),
    )


def _choose(condition, a, b):
    return jax.tree.map(lambda x, y: jnp.where(condition, x, y), a, b)


def _zoom_step(ls: _Search, new, f, g_N, gtd, max_ls) -> _Search:
    """After an evaluation while zooming: the bracket updated as torch's second loop does."""
    del g_N, max_ls
    t, f_new, _, gtd_new = new
    low, high = ls.low, 1 - ls.low
    worse = (f_new > f + C1 * t * gtd) | (f_new >= ls.f_2[low])
    as_high = _set(ls, high, new)
    as_high = as_high._replace(low=jnp.where(as_high.f_2[0] <= as_high.f_2[1], 0, 1).astype(jnp.int32))
    wolfe = jnp.abs(gtd_new) <= -C2 * gtd
    flip = ~wolfe & (gtd_new * (ls.b_2[high] - ls.b_2[low]) >= 0)
    old_low = (ls.b_2[low], ls.f_2[low], ls.g_2xN[low], ls.gtd_2[low])
    as_low = _set(_choose(flip, _set(ls, high, old_low), ls), low, new)._replace(done=wolfe)
    return _choose(worse, as_high, as_low)


def _zoom_next(ls: _Search, d_norm, tolerance_change, max_ls) -> _Search:
    """The top of torch's zoom loop: stop, or the next trial step (cubic, kept 0.1 of the bracket
    away from its ends where progress is insufficient)."""
    b0, b1 = ls.b_2[0], ls.b_2[1]
    stop = ls.done | (ls.ls_iter >= max_ls) | (jnp.abs(b1 - b0) * d_norm < tolerance_change)
    t = _cubic_interpolate(b0, ls.f_2[0], ls.gtd_2[0], b1, ls.f_2[1], ls.gtd_2[1])
    top, bottom = jnp.maximum(b0, b1), jnp.minimum(b0, b1)
    eps = 0.1 * (top - bottom)
    near = jnp.minimum(top - t, t - bottom) < eps
    push = near & (ls.insuf_progress | (t >= top) | (t <= bottom))
    pushed = jnp.where(jnp.abs(t - top) < jnp.abs(t - bottom), top - eps, bottom + eps)
    t = jnp.where(push, pushed, t)
    insuf = near & ~push
    trial = ls._replace(t=t, insuf_progress=insuf, ls_iter=ls.ls_iter + 1)
    return _choose(stop, ls._replace(phase=jnp.asarray(FINISHED, jnp.int32)), trial)


# ---------------------------------------------------------------------------------------------
# torch's LBFGS state: all of it under the first parameter, its vectors flat in the param group's order.


def lbfgs_from_group(group: dict, base_lr: float, schedule, steps_per_epoch: int) -> LBFGS:
    """The LBFGS of torch.optim.LBFGS's param group."""
    return LBFGS(
        lr=base_lr,
        **{key: group[key] for key in LBFGS_OPTIONS},
        schedule=for_group(schedule, 0),
        steps_per_epoch=steps_per_epoch,
    )


def _orders(optimizer, params, names: list[str] | None):
    """(torch's sizes in its order, JAX leaf names) after checking both hold the same tensors."""
    if names is None:
        raise ConversionError("LBFGS's state is flat vectors of all parameters: pass model= to name them")
    tensors = list(optimizer.param_groups[0]["params"])
    leaves = dict(zip(param_names(params), jax.tree.leaves(params), strict=True))
    if sorted(leaves) != sorted(names):
        raise ConversionError(f"LBFGS's parameters {sorted(names)} are not the JAX parameters {sorted(leaves)}")
    for name, p in zip(names, tensors, strict=True):
        if tuple(p.shape) != tuple(np.shape(leaves[name])):
            raise ConversionError(f"{name}: torch shape {tuple(p.shape)}, JAX {np.shape(leaves[name])}")
    return [p.numel() for p in tensors], param_names(params)


def _reorder(vector, sizes: list[int], names: list[str], order: list[str]) -> np.ndarray:
    """A flat vector of the tensors `names` (of `sizes`, in that order) laid out in `order`."""
    pieces = dict(zip(names, np.split(np.asarray(vector), np.cumsum(sizes)[:-1]), strict=True))
    return np.concatenate([pieces[n] for n in order])


def lbfgs_state_from_torch(opt: LBFGS, optimizer, params, names: list[str] | None, count: int) -> LBFGSState:
    """LBFGSState of torch's LBFGS `optimizer` (its history, direction, counters), vectors reordered
    from torch's parameter order to the JAX leaves'."""
    state = opt.init(params)
    state = state._replace(rate=state.rate._replace(count=jnp.asarray(count, jnp.int32)))
    tensors = list(optimizer.param_groups[0]["params"])
    torch_state = optimizer.state.get(tensors[0], {}) if tensors else {}
    if not torch_state:
        return state
    state = state._replace(
        func_evals=jnp.asarray(torch_state["func_evals"], jnp.int32),
        n_iter=jnp.asarray(torch_state["n_iter"], jnp.int32),
    )
    if "d" not in torch_state:  # returned before its first iteration (|g| <= tolerance_grad)
        return state
    sizes, order = _orders(optimizer, params, names)
    dtype = state.d_N.dtype

    def flat(tensor):
        return jnp.asarray(_reorder(tensor.detach().cpu().numpy(), sizes, names, order), dtype)

    old_dirs, old_stps, ro = torch_state["old_dirs"], torch_state["old_stps"], torch_state["ro"]
    if len(old_dirs) > opt.history_size:
        raise ConversionError(f"LBFGS: {len(old_dirs)} pairs in torch's history, history_size {opt.history_size}")
    rows = range(len(old_dirs))
    return state._replace(
        d_N=flat(torch_state["d"]),
        t=jnp.asarray(float(torch_state["t"]), dtype),
        old_dirs_HxN=state.old_dirs_HxN.at[: len(old_dirs)].set(jnp.stack([flat(old_dirs[i]) for i in rows]))
        if old_dirs
        else state.old_dirs_HxN,
        old_stps_HxN=state.old_stps_HxN.at[: len(old_stps)].set(jnp.stack([flat(old_stps[i]) for i in rows]))
        if old_stps
        else state.old_stps_HxN,
        ro_H=state.ro_H.at[: len(ro)].set(jnp.asarray([float(r) for r in ro], dtype)) if ro else state.ro_H,
        first=jnp.zeros([], jnp.int32),
        num_old=jnp.asarray(len(old_dirs), jnp.int32),
        H_diag=jnp.asarray(float(torch_state["H_diag"]), dtype),
        prev_flat_grad_N=flat(torch_state["prev_flat_grad"]),
        prev_loss=jnp.asarray(float(torch_state["prev_loss"]), dtype),
    )


def lbfgs_state_to_torch(state: LBFGSState, optimizer, params, names: list[str] | None) -> None:
    """Loads `state` into torch's LBFGS `optimizer` (through load_state_dict), vectors reordered from
    the JAX leaves' order (of `params`) to torch's parameter order (`names`)."""
    import torch

    sd = optimizer.state_dict()
    sd["state"] = {}
    if int(state.func_evals) > 0:
        entry = {"func_evals": int(state.func_evals), "n_iter": int(state.n_iter)}
        if int(state.n_iter) > 0:
            _, order = _orders(optimizer, params, names)
            sizes = [int(np.size(leaf)) for leaf in jax.tree.leaves(params)]

            def flat(vector):
                return torch.tensor(_reorder(np.asarray(jax.device_get(vector)), sizes, order, names))

            num_old, first, h = int(state.num_old), int(state.first), state.ro_H.shape[0]
            rows = [(first + i) % h for i in range(num_old)]
            entry.update(
                d=flat(state.d_N),
                t=float(state.t),
                old_dirs=[flat(state.old_dirs_HxN[r]) for r in rows],
                old_stps=[flat(state.old_stps_HxN[r]) for r in rows],
                ro=[torch.tensor(float(state.ro_H[r]), dtype=torch.float64) for r in rows],
                H_diag=torch.tensor(float(state.H_diag), dtype=torch.float64),
                prev_flat_grad=flat(state.prev_flat_grad_N),
                prev_loss=float(state.prev_loss),
            )
        sd["state"][0] = entry
    optimizer.load_state_dict(sd)
