"""The optax transformations written here, where optax has no piece that steps as torch does (the
package docstring says why for each). Each follows torch's single-tensor code path
(`torch/optim/<name>.py`, `_single_tensor_<name>`) in its order of operations.

Most are a direction with learning rate 1 that `scale_by_learning_rate_schedule` then multiplies by
-lr_t. Rprop and ASGD are whole steps: their rate enters other than as a factor (Rprop's lr is its
first step size; ASGD's eta = lr / (1 + lambd lr t) ** alpha), so they hold the rate themselves.

torch keeps some per-parameter scalars (NAdam's mu_product, ASGD's eta and mu) as tensors of its
default dtype, float32, and rounds them there every step; so do these (TORCH_SCALAR).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxseq.optim.rates import LearningRateState, PlateauState, rate_advance, rate_init, rate_now

TORCH_SCALAR = jnp.float32  # torch.optim.optimizer._get_scalar_dtype() under torch's default dtype


def _step(count):
    """torch's `step` as the float it computes with (exact up to 2 ** 24)."""
    return count.astype(jnp.result_type(float))


def scale_by_learning_rate_schedule(
    base_lr: float, schedule=None, steps_per_epoch: int = 1
) -> optax.GradientTransformationExtraArgs:
    """updates * -lr_t, lr_t = `schedule` (a Schedule, None: constant) at epoch count // steps_per_epoch
    from `base_lr`, which is kept in the state (`with_learning_rate` sets it; a sweep vmaps over it).
    lr_t is computed in float64 where enabled and cast to each update's dtype, as torch's Python
    float `alpha=-lr` is cast to the parameter's. ReduceLROnPlateau reads the loss: `value=loss`."""

    def init(params):
        del params
        return rate_init(base_lr, schedule)

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        lr = rate_now(state, schedule, steps_per_epoch)
        updates = jax.tree.map(lambda u: (-lr).astype(u.dtype) * u, updates)
        return updates, rate_advance(state, schedule, steps_per_epoch, value)

    return optax.GradientTransformationExtraArgs(init, update)


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


class TorchNAdamState(NamedTuple):
    count: jax.Array  # torch's `step` (int32)
    mu_product: jax.Array  # torch's `mu_product`: the product of every step's mu (TORCH_SCALAR)
    mu: optax.Updates  # exp_avg
    nu: optax.Updates  # exp_avg_sq


def scale_by_torch_nadam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3
) -> optax.GradientTransformation:
    """torch.optim.NAdam's direction (lr 1), Dozat's momentum schedule:

        mu_t = b1 (1 - 0.96 ** (t momentum_decay) / 2);  P_t = mu_1 ... mu_t (float32, as torch)
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  denom = sqrt(v / bc2) + eps
        d = (1 - mu_t) / (1 - P_t) g / denom + mu_{t+1} / (1 - P_t mu_{t+1}) m / denom

    `optax.nadam` is Adam with a Nesterov look-ahead of constant b1, another algorithm."""

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return TorchNAdamState(jnp.zeros([], jnp.int32), jnp.ones([], TORCH_SCALAR), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        step = _step(count)
        bc2 = 1 - b2**step
        mu = b1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
        mu_product = state.mu_product * mu.astype(TORCH_SCALAR)
        product = mu_product.astype(step.dtype)
        grad_coef = (1.0 - mu) / (1.0 - product)
        avg_coef = mu_next / (1.0 - product * mu_next)
        m = optax.tree.update_moment(updates, state.mu, b1, 1)
        v = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)

        def direction(g, m, v):
            denom = jnp.sqrt(v / bc2) + eps
            return grad_coef * g / denom + avg_coef * m / denom

        return jax.tree.map(direction, updates, m, v), TorchNAdamState(count, mu_product, m, v)

    return optax.GradientTransformation(init, update)


def scale_by_torch_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """torch.optim.RAdam's direction (lr 1), Liu et al.'s rectified Adam:

        m_hat = m / bc1;  rho_t = rho_inf - 2 t b2^t / bc2,  rho_inf = 2 / (1 - b2) - 1
        d = m_hat sqrt(bc2) / (sqrt(v) + eps) r_t  where rho_t > 5, else m_hat,
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))

    `optax.scale_by_radam` adds eps to sqrt(v / bc2) instead (eps larger by 1 / sqrt(bc2) in torch,
    1e-6 relative in the loss) and rectifies where rho_t >= 5."""
    rho_inf = 2 / (1 - b2) - 1

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        step = _step(count)
        m = optax.tree.update_moment(updates, state.mu, b1, 1)
        v = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        bc1, bc2 = 1 - b1**step, 1 - b2**step
        rho_t = rho_inf - 2 * step * (b2**step) / bc2
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5

        def direction(m, v):
            m_hat = m / bc1
            return jnp.where(rho_t > 5.0, m_hat * (bc2**0.5 / (jnp.sqrt(v) + eps)) * rect, m_hat)

        return jax.tree.map(direction, m, v), optax.ScaleByAdamState(count, m, v)

    return optax.GradientTransformation(init, update)


class TorchRpropState(NamedTuple):
    rate: LearningRateState | PlateauState  # the step count and base rate: the first step size
    prev: optax.Updates  # torch's `prev`: the last gradient, 0 where its sign flipped
    step_size: optax.Updates  # torch's `step_size`, per element


def torch_rprop(
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50.0),
    base_lr: float = 1e-2,
    schedule=None,
    steps_per_epoch: int = 1,
) -> optax.GradientTransformationExtraArgs:
    """torch.optim.Rprop's whole step (the update, not a direction):

        f = etaplus where g prev > 0, etaminus where < 0, else 1;  s = clamp(s f, *step_sizes)
        g = 0 where f = etaminus;  update = -sign(g) s;  prev = g

    The step sizes start at the learning rate of the first step and never read it again.
    `optax.scale_by_rprop` keeps step * sign(g) instead of the gradient and does not clamp a step
    size whose sign product is 0, so its state does not carry over to torch's."""
    eta_minus, eta_plus = etas
    low, high = step_sizes

    def init(params):
        zeros = optax.tree.zeros_like(params)
        return TorchRpropState(rate_init(base_lr, schedule), zeros, zeros)

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        first = state.rate.count == 0
        lr = rate_now(state.rate, schedule, steps_per_epoch)

        def one(g, prev, size):
            size = jnp.where(first, lr.astype(size.dtype), size)
            sign = jnp.sign(g * prev)
            factor = jnp.where(sign > 0, eta_plus, jnp.where(sign < 0, eta_minus, 1.0)).astype(g.dtype)
            size = jnp.clip(size * factor, low, high)
            g = jnp.where(factor == eta_minus, jnp.zeros_like(g), g)
            return -(jnp.sign(g) * size), g, size

        out = jax.tree.map(one, updates, state.prev, state.step_size)
        steps, prev, size = (jax.tree.map(lambda _, o, i=i: o[i], updates, out) for i in range(3))
        return steps, TorchRpropState(rate_advance(state.rate, schedule, steps_per_epoch, value), prev, size)

    return optax.GradientTransformationExtraArgs(init, update)


class TorchAsgdState(NamedTuple):
    rate: LearningRateState | PlateauState  # the step count and base rate
    eta: jax.Array  # torch's `eta`, this step's rate (TORCH_SCALAR)
    mu: jax.Array  # torch's `mu`, this step's averaging weight (TORCH_SCALAR)
    ax: optax.Updates  # torch's `ax`: the averaged parameters


def torch_asgd(
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    base_lr: float = 1e-2,
    schedule=None,
    steps_per_epoch: int = 1,
) -> optax.GradientTransformationExtraArgs:
    """torch.optim.ASGD's whole step (needs `params`):

        p <- p (1 - lambd eta) - eta g;  ax <- ax + mu (p - ax)  (ax <- p where mu = 1)
        eta <- lr / (1 + lambd lr t) ** alpha;  mu <- 1 / max(1, t - t0)

    eta starts at the first step's learning rate; eta and mu are rounded to float32 as torch stores
    them. optax has no averaged SGD."""

    def init(params):
        one = jnp.ones([], TORCH_SCALAR)
        return TorchAsgdState(rate_init(base_lr, schedule), one, one, optax.tree.zeros_like(params))

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("ASGD's step needs the parameters: tx.update(grads, opt_state, params)")
        lr = rate_now(state.rate, schedule, steps_per_epoch)
        eta = jnp.where(state.rate.count == 0, lr.astype(TORCH_SCALAR), state.eta).astype(lr.dtype)
        mu = state.mu.astype(lr.dtype)

        def one(g, p, ax):
            u = (p * (1 - lambd * eta).astype(p.dtype) - eta.astype(p.dtype) * g) - p
            p_next = p + u
            return u, jnp.where(mu != 1, ax + (p_next - ax) * mu.astype(p.dtype), p_next)

        out = jax.tree.map(one, updates, params, state.ax)
        steps, ax = (jax.tree.map(lambda _, o, i=i: o[i], updates, out) for i in range(2))
        step = _step(optax.safe_increment(state.rate.count))
        new_eta = (lr / (1 + lambd * lr * step) ** alpha).astype(TORCH_SCALAR)
        new_mu = (1 / jnp.maximum(1.0, step - t0)).astype(TORCH_SCALAR)
        rate = rate_advance(state.rate, schedule, steps_per_epoch, value)
        return steps, TorchAsgdState(rate, new_eta, new_mu, ax)

    return optax.GradientTransformationExtraArgs(init, update)
