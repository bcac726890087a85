"""Forward parity: jaxseq.LSTM and Model against torch.nn.LSTM / torchseq.Model, same weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxseq
import torchseq
from parity_tests.helpers import FORWARD_ATOL, assert_close, lstm_pair


def call(module, x, state, use_jit):
    if not use_jit:
        return module(x, state)
    return nnx.jit(lambda m, x, s: m(x, s))(module, x, state)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize(
    "batch,length,input_size,hidden", [(1, 21, 1, 100), (3, 1, 1, 7), (4, 50, 3, 16), (2, 8, 5, 1)]
)
@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "given_state"])
def test_lstm_forward(dtype, use_jit, batch, length, input_size, hidden, given_state):
    t_lstm, j_lstm = lstm_pair(input_size, hidden, dtype)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (batch, length, input_size)).astype(dtype)
    state = tuple(rng.uniform(-1, 1, (1, batch, hidden)).astype(dtype) for _ in range(2)) if given_state else None

    t_state = tuple(map(torch.from_numpy, state)) if given_state else None
    with torch.no_grad():
        t_out, (t_h, t_c) = t_lstm(torch.from_numpy(x), t_state)
    j_out, (j_h, j_c) = call(j_lstm, jnp.asarray(x), None if state is None else tuple(map(jnp.asarray, state)), use_jit)

    atol = FORWARD_ATOL[dtype]
    assert j_out.dtype == jnp.dtype(dtype), f"output dtype {j_out.dtype} != {dtype}"
    assert_close("output", j_out, t_out.numpy(), atol=atol)
    assert_close("h_n", j_h, t_h.numpy(), atol=atol)
    assert_close("c_n", j_c, t_c.numpy(), atol=atol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("hidden", [1, 100])
def test_model_forward_on_task(dtype, use_jit, hidden):
    t_model = torchseq.build_model(hidden, seed=3, dtype=dtype)
    j_model = jaxseq.from_torch(t_model)
    x, _ = jaxseq.shifted_sequence(dtype=dtype)
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    actual = nnx.jit(lambda m, x: m(x))(j_model, x) if use_jit else j_model(x)
    assert_close("model output", actual, expected, atol=FORWARD_ATOL[dtype])


def test_lstm_initialisers():
    """init="torch" stays inside ±1/sqrt(H) and covers it; init="flax" has zero biases."""
    H = 64
    lstm = jaxseq.LSTM(1, H, rngs=nnx.Rngs(0))
    bound = 1 / np.sqrt(H)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        value = np.asarray(getattr(lstm, name)[...])
        assert np.abs(value).max() <= bound, f"{name} exceeds the bound {bound}"
        assert np.abs(value).max() > 0.9 * bound, f"{name} does not fill ±{bound}"
    flax_lstm = jaxseq.Model(1, H, init="flax", rngs=nnx.Rngs(0)).lstm
    assert not np.any(np.asarray(flax_lstm.bias_ih_l0[...])) and not np.any(np.asarray(flax_lstm.bias_hh_l0[...]))
    w_hh_f = np.asarray(flax_lstm.weight_hh_l0[...])[H : 2 * H]  # the forget gate's recurrent kernel
    assert_close("forget-gate W_hh is orthogonal", w_hh_f @ w_hh_f.T, np.eye(H), atol=1e-5)
    with pytest.raises(ValueError, match="init"):
        jaxseq.Model(1, H, init="xavier", rngs=nnx.Rngs(0))


def test_different_seeds_give_different_weights():
    a = jaxseq.Model(hidden_size=8, rngs=nnx.Rngs(0))
    b = jaxseq.Model(hidden_size=8, rngs=nnx.Rngs(1))
    assert not np.array_equal(np.asarray(a.lstm.weight_hh_l0[...]), np.asarray(b.lstm.weight_hh_l0[...]))
    assert jax.tree.structure(nnx.state(a)) == jax.tree.structure(nnx.state(b))
