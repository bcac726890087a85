"""The gradients before the optimizer: torch's clip_grad_norm_ and clip_grad_value_, and the running
sum of all gradients that PyTorch keeps without `optimizer.zero_grad()`."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxseq.optim.options import refuse


def clip_by_total_norm(max_norm: float, norm_type: float = 2.0) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_: the norm of all gradients together (the norm of the
    per-tensor norms), then every gradient times min(max_norm / (norm + 1e-6), 1).
    norm_type: any p > 0, or math.inf for the largest |g|.

    optax.clip_by_global_norm scales by max_norm / norm instead (3e-6 relative in the loss)."""
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


def gradient_stage(
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    zero_grad: bool = True,
) -> optax.GradientTransformation:
    """What torch does to `.grad` before `optimizer.step()`: clip_grad_norm_ then clip_grad_value_
    (identity where off); with zero_grad=False, first the running sum of all gradients."""
    refuse(
        [
            (clip_grad_norm is not None and clip_grad_norm < 0, f"clip_grad_norm must be >= 0; got {clip_grad_norm}"),
            (
                clip_grad_value is not None and clip_grad_value < 0,
                f"clip_grad_value must be >= 0; got {clip_grad_value}",
            ),
        ]
    )
    clip = optax.chain(
        optax.identity() if clip_grad_norm is None else clip_by_total_norm(clip_grad_norm, clip_norm_type),
        optax.identity() if clip_grad_value is None else optax.clip(clip_grad_value),
    )
    return clip if zero_grad else accumulate_gradients(clip)
