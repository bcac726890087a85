"""Tolerances and comparison helpers shared by the parity tests.

Every tolerance is a named constant, chosen per dtype (and device, where the
arithmetic differs); every failure message names the tensor and the tolerance.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from jaxseq.app import cli as jaxseq_cli
from torchseq import cli as torchseq_cli

# The two command lines' `main(argv)`, what their console scripts call.
MAINS = {"jaxseq": jaxseq_cli.main, "torchseq": torchseq_cli.main}

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
# A run sharded over several devices or processes against the same run on one device, float64,
# 100 steps: sharded reductions add in another order, so rounding only (measured about 1e-15).
SHARDED_LOSS_RTOL = 1e-10
# One loss value, float64, computed two ways (JAX, torch, or the formula by hand), relative.
LOSS_RTOL = 1e-14
# Generated data against its formula, float64, values of order 1, absolute.
DATA_ATOL = 1e-12
# A model's valid outputs with the padding changed, float64, absolute: they must not depend on it.
PADDING_ATOL = 1e-14


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
    j_lstm = jaxseq.LSTM(input_size, hidden, batch_first=True, param_dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0))
    for name, value in t_lstm.state_dict().items():  # the same names on both sides
        setattr(j_lstm, name, nnx.Param(jnp.asarray(value.numpy())))
    return t_lstm, j_lstm


def assert_trajectories_close(losses, expected_losses, params: dict, expected_params: dict, dtype: str) -> None:
    """Two runs from the same weights within the trajectory tolerances of `dtype`: the loss at every
    step (relative), every final parameter (absolute; dicts of arrays with the same keys)."""
    assert_close("loss at every step", losses, expected_losses, rtol=TRAJECTORY_LOSS_RTOL[dtype])
    assert sorted(params) == sorted(expected_params), f"keys differ: {sorted(params)} vs {sorted(expected_params)}"
    for key in expected_params:
        assert_close(f"final {key}", params[key], expected_params[key], atol=TRAJECTORY_PARAM_ATOL[dtype])


@functools.cache
def compared(config):
    """`jaxseq.app.compare.compare(config)`, run once per session: the tests that need the same
    configuration's two runs (test_trajectories, test_compare) share them. Read it, never change it."""
    from jaxseq.app.compare import compare

    return compare(config)


def exit_code(main, *args) -> int:
    """`main(list(args))`'s exit status, also where argparse exits (SystemExit)."""
    try:
        return main(list(args))
    except SystemExit as e:
        return e.code


def assert_one_line_error(capsys, code: int, message: str, status: int | None = None) -> None:
    """A command failed with exit status `code` (`status` where given, else any but 0) and one line
    on stderr, holding `message`."""
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and message in err, err
    assert status is None or code == status, f"exit status {code}, expected {status}: {err}"


def simulated_devices_env(devices: int) -> dict:
    """The environment for a jaxseq process on `devices` simulated CPU devices (the CPU even where
    JAX would pick a GPU)."""
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def weighted_sum(result, weights, mode: str):
    """sum(output * w_out) + sum(h_n * w_h) (+ sum(c_n * w_c)) for a recurrent layer's (output, state),
    torch or JAX: a loss whose gradient reaches every output. `mode` "LSTM" has the state (h_n, c_n)."""
    out, state = result
    states = state if mode == "LSTM" else (state,)
    return sum((a * w).sum() for a, w in zip((out, *states), weights, strict=False))
