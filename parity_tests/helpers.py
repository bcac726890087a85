"""Tolerances and comparison helpers shared by the parity tests.

Every tolerance is a named constant, chosen per dtype (and device, where the
arithmetic differs); every failure message names the tensor and the tolerance.
"""

from __future__ import annotations

import jax
import numpy as np

PLATFORM = jax.default_backend()  # "cpu", "gpu" or "tpu": where jaxseq runs in these tests

# Forward pass (output, h_n, c_n), absolute, for values of order 1.
FORWARD_ATOL = {"float64": 1e-12, "float32": 1e-5}
# Gradient of the loss with respect to each parameter, absolute.
GRAD_ATOL = {"float64": 1e-10, "float32": 1e-4}
# One optimizer step from identical parameters and gradients: parameters after it, absolute.
STEP_ATOL = {"float64": 1e-14, "float32": 1e-6}
# Whole trajectory: loss at every step, relative; final parameters, absolute.
TRAJECTORY_LOSS_RTOL = {"float64": 1e-9, "float32": 1e-3}
TRAJECTORY_PARAM_ATOL = {"float64": 1e-8, "float32": 1e-3}
# A model trained inside a sweep (vmapped) against the same model trained alone, float64: the
# programs may round differently (batched vs single matmuls), so the comparison is relative, over a
# short run where rounding has not been amplified (see test_training).
SWEEP_LOSS_RTOL = 1e-10


def assert_close(name: str, actual, expected, *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Asserts |actual - expected| <= atol + rtol * |expected| elementwise, naming `name` on failure."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = atol + rtol * np.abs(expected.astype(np.float64))
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), err.shape)
        raise AssertionError(
            f"{name}: {bad.sum()} of {err.size} elements outside atol={atol:g}, rtol={rtol:g}; "
            f"worst at {tuple(int(k) for k in i)}: {actual[i]!r} vs {expected[i]!r} "
            f"(abs err {err[i]:.3g}, max abs err {err.max():.3g})"
        )


def assert_trees_close(actual: dict, expected: dict, *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """assert_close for every key of two dicts of arrays, which must have the same keys."""
    assert sorted(actual) == sorted(expected), f"keys differ: {sorted(actual)} vs {sorted(expected)}"
    for key in expected:
        assert_close(key, actual[key], expected[key], atol=atol, rtol=rtol)


def torch_state_dict_numpy(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def lstm_pair(input_size: int, hidden: int, dtype: str, seed: int = 0):
    """A torch.nn.LSTM (batch_first) and a jaxseq.LSTM holding the same weights."""
    import jax.numpy as jnp
    import torch
    from flax import nnx

    import jaxseq

    torch.manual_seed(seed)
    t_lstm = torch.nn.LSTM(input_size, hidden, batch_first=True).to(getattr(torch, dtype))
    j_lstm = jaxseq.LSTM(input_size, hidden, param_dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0))
    for name, value in t_lstm.state_dict().items():  # the same names on both sides
        setattr(j_lstm, name, nnx.Param(jnp.asarray(value.numpy())))
    return t_lstm, j_lstm
