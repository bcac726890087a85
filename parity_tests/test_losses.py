"""F.ctc_loss through jaxseq (jaxseq.port.losses) against torch, float64: the loss and its gradient.

Through `from_torch` of a module whose forward calls F.ctc_loss on log_softmax outputs (how a
user reaches it: the gradients are those of the module's parameters and input), over reductions,
padded and concatenated targets, blank first or last, zero_infinity; and the op itself, whose
gradient with respect to log_probs is torch's CTC gradient (exp(log_probs) - occupancy).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from jaxseq.port.losses import ctc_loss
from jaxseq.port.module import from_torch

FORWARD = 1e-12  # float64, absolute + relative: rounding only
GRADIENT = 1e-10  # float64, absolute + relative

T, C, H = 12, 5, 3  # input frames, classes (blank included), features

# (target without blank, 1..C-1 when blank is 0, input length): a repeat, an empty target, a target
# that needs exactly its input length (3 labels + 2 repeats = 5), and one with no alignment at all.
SEQUENCES = [([1, 2, 2, 3], 12), ([], 7), ([3, 3, 3], 5), ([4, 1], 12)]
IMPOSSIBLE = ([1, 1, 1, 1], 6)  # needs 4 + 3 = 7 frames


def assert_same(name, actual, expected, tol):
    """|actual - expected| <= tol * (1 + |expected|), NaN and inf at the same places."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != torch's {expected.shape}"
    special = ~np.isfinite(expected) | ~np.isfinite(actual)
    same = (np.isnan(actual) & np.isnan(expected)) | (actual == expected)
    assert not (special & ~same).any(), f"{name}: NaN / inf at other places than torch's ({tol=:g})"
    err = np.abs(np.where(special, 0.0, actual) - np.where(special, 0.0, expected))
    bound = tol * (1 + np.abs(np.where(special, 0.0, expected)))
    assert (err <= bound).all(), f"{name}: max |jax - torch| = {err.max():.3g} > {tol:g} (absolute + relative)"


def batch(blank: int, layout: str, impossible: bool):
    """(targets, input_lengths, target_lengths) in torch's layout, labels shifted to avoid `blank`.
    Padded rows are filled past their length with the row's last label (a repeat optax must ignore)."""
    sequences = SEQUENCES[:3] + [IMPOSSIBLE if impossible else SEQUENCES[3]]
    shift = 0 if blank == 0 else -1
    labels = [[label + shift for label in target] for target, _ in sequences]
    target_lengths = torch.tensor([len(t) for t in labels])
    input_lengths = torch.tensor([n for _, n in sequences])
    if layout == "concatenated":
        return torch.tensor(sum(labels, [])), input_lengths, target_lengths
    S = max(len(t) for t in labels)
    rows = [t + [t[-1] if t else 1] * (S - len(t)) for t in labels]
    return torch.tensor(rows), input_lengths, target_lengths


class CTC(nn.Module):
    """A linear layer, log_softmax and F.ctc_loss: what a speech or handwriting model ends with."""

    def __init__(self, blank, reduction, zero_infinity):
        super().__init__()
        self.blank, self.reduction, self.zero_infinity = blank, reduction, zero_infinity
        self.head = nn.Linear(H, C)

    def forward(self, x_TxBxH, targets, input_lengths, target_lengths):
        log_probs = self.head(x_TxBxH).log_softmax(-1)
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction,
                          self.zero_infinity)


def module_case(blank, reduction, zero_infinity, layout, impossible, unbatched=False):
    torch.manual_seed(0)
    model = CTC(blank, reduction, zero_infinity).double()
    targets, input_lengths, target_lengths = batch(blank, layout, impossible)
    x = torch.randn(T, len(input_lengths), H, dtype=torch.float64)
    if unbatched:  # the first sequence alone
        x, targets = x[:, 0], targets[0] if layout == "padded" else targets[: target_lengths[0]]
        input_lengths, target_lengths = input_lengths[0], target_lengths[0]
    return model, (x, targets, input_lengths, target_lengths)


def check_module(model, inputs, name):
    """from_torch(model) against model: the loss, the gradients of its parameters and of x, under jax.jit."""
    converted = from_torch(model, *inputs)
    graphdef, params, rest = nnx.split(converted, nnx.Param, ...)
    arrays = [t.numpy() for t in inputs]

    def objective(params, x):
        loss = nnx.merge(graphdef, params, rest, copy=True)(x, *arrays[1:])
        return jnp.sum(loss * cotangent), loss

    x = inputs[0].clone().requires_grad_(True)
    model.zero_grad()
    expected = model(x, *inputs[1:])
    cotangent = np.random.default_rng(0).standard_normal(tuple(expected.shape))
    (expected * torch.from_numpy(cotangent)).sum().backward()
    (_, loss), (grads, grad_x) = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True))(params, arrays[0])
    shape = jax.eval_shape(objective, params, arrays[0])[1]  # abstract values, as jaxseq.parity traces it
    assert (shape.shape, shape.dtype) == (loss.shape, loss.dtype), f"{name}: eval_shape {shape} vs {loss.shape}"

    assert_same(f"{name}: loss", loss, expected.detach().numpy(), FORWARD)
    assert_same(f"{name}: gradient of the input", grad_x, x.grad.numpy(), GRADIENT)
    flat = {".".join(map(str, k)): v[...] for k, v in nnx.to_flat_state(grads)}
    for key, p in model.named_parameters():
        assert_same(f"{name}: gradient of {key}", flat[key], p.grad.numpy(), GRADIENT)


@pytest.mark.parametrize("reduction,layout,blank,zero_infinity", [
    ("none", "padded", 0, False), ("none", "concatenated", C - 1, True),
    ("sum", "concatenated", C - 1, False), ("sum", "padded", 0, True),
    ("mean", "padded", 0, False), ("mean", "concatenated", C - 1, True),
])
def test_ctc_module(reduction, layout, blank, zero_infinity):
    """Each reduction with both layouts and both zero_infinity. An impossible sequence is in the batch
    with zero_infinity, or per sequence ("none"): otherwise the whole loss would be inf and every
    gradient NaN (which test_ctc_impossible checks)."""
    impossible = zero_infinity or reduction == "none"
    model, inputs = module_case(blank, reduction, zero_infinity, layout, impossible)
    check_module(model, inputs, f"ctc {reduction} {layout} blank={blank} zero_infinity={zero_infinity}")


def test_ctc_module_unbatched():
    """log_probs (T, C), targets (S,), lengths 0-d."""
    model, inputs = module_case(0, "mean", False, "concatenated", False, unbatched=True)
    check_module(model, inputs, "ctc unbatched")


def test_ctc_impossible():
    """Without zero_infinity one impossible alignment makes the loss inf and every gradient NaN, as in torch."""
    model, inputs = module_case(0, "mean", False, "padded", True)
    check_module(model, inputs, "ctc impossible mean")


@pytest.mark.parametrize("layout,blank,zero_infinity,jit", [
    ("padded", 0, False, False), ("padded", 0, True, True), ("concatenated", C - 1, False, True),
    ("concatenated", C - 1, True, True),
])
def test_ctc_op_gradient_of_log_probs(layout, blank, zero_infinity, jit):
    """The op called directly, with and without jax.jit: its gradient with respect to log_probs is torch's."""
    torch.manual_seed(1)
    targets, input_lengths, target_lengths = batch(blank, layout, True)
    log_probs = torch.randn(T, len(input_lengths), C, dtype=torch.float64).log_softmax(-1).requires_grad_(True)
    expected = F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, "none", zero_infinity)
    cotangent = np.random.default_rng(1).standard_normal(tuple(expected.shape))
    (expected_grad,) = torch.autograd.grad((expected * torch.from_numpy(cotangent)).sum(), log_probs)

    def objective(lp):
        loss = ctc_loss(lp, jnp.asarray(targets.numpy()), jnp.asarray(input_lengths.numpy()),
                        jnp.asarray(target_lengths.numpy()), blank, "none", zero_infinity)
        return jnp.sum(jnp.where(jnp.isfinite(loss), loss, 0) * cotangent), loss

    gradient = jax.value_and_grad(objective, has_aux=True)
    (_, loss), grad = (jax.jit(gradient) if jit else gradient)(log_probs.detach().numpy())
    name = f"ctc op {layout} blank={blank} zero_infinity={zero_infinity}"
    assert_same(f"{name}: per-sequence loss", loss, expected.detach().numpy(), FORWARD)
    assert_same(f"{name}: gradient of log_probs", grad, expected_grad.numpy(), GRADIENT)
