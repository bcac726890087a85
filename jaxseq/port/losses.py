"""Losses kept whole during export: `F.ctc_loss` as `jaxseq.ctc_loss.default` (its alignment table
has a data-dependent shape in torch's decomposition; see `jaxseq.port.export.OPAQUE`).

The CTC recursion is optax's (`optax.ctc_loss`); what torch's `F.ctc_loss` does besides, or
differently, is written here, and each piece says why.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxseq.port.registry import implements


@implements("jaxseq.ctc_loss.default")
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """torch's `F.ctc_loss` (Graves et al. 2006), its semantics exactly.

    Args:
      log_probs: (T, B, C) log-probabilities (log_softmax over C), or (T, C) for one sequence.
      targets: (B, S) padded, or 1-D: the B targets concatenated (length sum(target_lengths),
        which is then the padded width S); (S,) for one sequence.
      input_lengths, target_lengths: (B,) integers ((), or (1,), for one sequence).
      blank: the blank class.
      reduction: "none" (B,) per sequence (() for one sequence), "sum", or "mean": the mean over the
        batch of each loss divided by max(its target length, 1).
      zero_infinity: an impossible alignment (input shorter than target length + repeated labels)
        gives 0 with a zero gradient instead of inf (whose gradient is NaN in torch, and here).

    The recursion is `optax.ctc_loss` on (B, T, C) with padding masks made from the lengths, which
    agrees with torch to rounding (1e-12 in float64, forward and gradient). What optax does not do
    the way torch does is handled here:
    - optax applies log_softmax to its input. For log-probabilities that is the identity (up to
      rounding), and its gradient with respect to them is exp(log_probs) - occupancy, which is what
      torch's CTC backward returns (torch's gradient is the one with respect to the logits, when
      log_probs = log_softmax(logits); through that log_softmax both give the true gradient).
      log_probs that are not normalised would be renormalised by optax: torch documents that they must be.
    - optax floors log(0) at -1e5 (`log_epsilon`), so an impossible alignment has a large finite
      loss: it is found here from the lengths and repeats and given torch's inf (or 0 with
      zero_infinity), and its gradient torch's NaN (or 0). Feasible losses are exact while they are
      below about 1e5 (a path through a floored transition then weighs exp(-1e5) next to the others).
    - concatenated targets, unbatched inputs and the reductions are torch's, before and after optax.
    """
    if log_probs.ndim == 2:
        losses = ctc_loss(log_probs[:, None], targets.reshape(1, -1), input_lengths.reshape(1),
                          target_lengths.reshape(1), blank, "none", zero_infinity)
        return losses[0] if reduction == "none" else _reduce(losses, target_lengths.reshape(1), reduction)
    if targets.ndim == 1:
        targets = _padded(targets, target_lengths)
    losses = _per_sequence(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity)
    return _reduce(losses, target_lengths, reduction)


def _reduce(losses, target_lengths, reduction):
    if reduction == "none":
        return losses
    if reduction == "sum":
        return jnp.sum(losses)
    return jnp.mean(losses / jnp.maximum(target_lengths, 1).astype(losses.dtype))


def _padded(concatenated, target_lengths):
    """Concatenated targets (sum of lengths,) as (B, S) rows, S = their total length (at least 1)."""
    S = concatenated.shape[0]
    starts = jnp.cumsum(target_lengths) - target_lengths
    at = starts[:, None] + jnp.arange(max(S, 1))[None, :]
    return concatenated[jnp.clip(at, 0, max(S - 1, 0))] if S else jnp.zeros(at.shape, concatenated.dtype)


def feasible(targets, input_lengths, target_lengths):
    """(B,) whether an alignment exists: an input at least as long as the target plus its repeats
    (two equal labels in a row need a blank between them)."""
    n = jnp.arange(targets.shape[1] - 1)
    repeats = jnp.sum((targets[:, 1:] == targets[:, :-1]) & (n[None, :] < target_lengths[:, None] - 1), axis=1)
    return input_lengths >= target_lengths + repeats


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _per_sequence(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    return _forward(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity)[0]


def _forward(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    """((B,) losses, optax's vjp, which sequences are feasible)."""
    T, B, _ = log_probs.shape
    logit_paddings = (jnp.arange(T)[None, :] >= input_lengths[:, None]).astype(log_probs.dtype)
    label_paddings = (jnp.arange(targets.shape[1])[None, :] >= target_lengths[:, None]).astype(log_probs.dtype)

    def optax_loss(log_probs):
        return optax.ctc_loss(jnp.swapaxes(log_probs, 0, 1), logit_paddings, targets, label_paddings, blank_id=blank)

    losses, vjp = jax.vjp(optax_loss, log_probs)
    ok = feasible(targets, input_lengths, target_lengths)
    return jnp.where(ok, losses, 0.0 if zero_infinity else jnp.inf), vjp, ok


def _per_sequence_fwd(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    losses, vjp, ok = _forward(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity)
    frames = jnp.arange(log_probs.shape[0])[:, None] < input_lengths[None, :]  # (T, B)
    return losses, (vjp, ok, frames)


def _per_sequence_bwd(blank, zero_infinity, residuals, g):
    """optax's gradient; for an impossible sequence 0 (zero_infinity), or torch's NaN on its frames
    (and 0 past its input length)."""
    vjp, ok, frames = residuals
    (grad,) = vjp(jnp.where(ok, g, 0))
    impossible = jnp.where(frames, 0.0 if zero_infinity else jnp.nan, 0.0)[..., None]
    return jnp.where(ok[None, :, None], grad, impossible), None, None, None


_per_sequence.defvjp(_per_sequence_fwd, _per_sequence_bwd)
