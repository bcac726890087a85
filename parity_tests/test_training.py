"""Training parity below the whole run: gradients, and optimizer steps from the same gradients.

Whole trajectories, every configuration, are in test_trajectories.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import jaxseq
import torchseq
from jaxseq.app.task import Sequences
from jaxseq.app.training import loss_fn
from jaxseq.optim import make_optimizer
from parity_tests.helpers import (
    GRAD_ATOL,
    STEP_ATOL,
    assert_close,
    assert_trees_close,
    lstm_pair,
    torch_state_dict_numpy,
    weighted_sum,
)


def torch_grads(t_model, x, y, reduction):
    t_model.zero_grad()
    loss = torchseq.sequence_loss(t_model(torch.from_numpy(x)), torch.from_numpy(y), reduction)
    loss.backward()
    return loss.item(), {k: p.grad.numpy().copy() for k, p in t_model.named_parameters()}


def jax_grads(j_model, x, y, reduction, use_jit):
    graphdef, params = nnx.split(j_model)
    value_and_grad = jax.value_and_grad(loss_fn)
    if use_jit:
        value_and_grad = jax.jit(value_and_grad, static_argnums=(1, 3))
    loss, grads = value_and_grad(params, graphdef, Sequences(jnp.asarray(x), jnp.asarray(y)), reduction)
    # A Model holding the gradients, so the conversion rules name and lay them out as torch does.
    return float(loss), jaxseq.to_torch_state_dict(nnx.merge(graphdef, grads))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("batch,length,hidden", [(1, 21, 100), (5, 9, 12)])
def test_gradients(dtype, reduction, use_jit, batch, length, hidden):
    t_model = torchseq.build_model(hidden, seed=1, dtype=dtype)
    j_model = jaxseq.from_torch(t_model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, length, 1)).astype(dtype)
    y = x + 0.1
    t_loss, t_grads = torch_grads(t_model, x, y, reduction)
    j_loss, j_grads = jax_grads(j_model, x, y, reduction, use_jit)
    tol = GRAD_ATOL[dtype]
    assert_close("loss", j_loss, t_loss, atol=tol)
    for key in t_grads:
        assert_close(f"grad {key}", j_grads[key], t_grads[key], atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch,length,input_size,hidden", [(1, 21, 1, 100), (4, 50, 3, 16), (2, 8, 5, 1)])
@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "given_state"])
def test_lstm_layer_gradients(dtype, batch, length, input_size, hidden, given_state):
    """The LSTM layer's hand-written backward pass against torch.nn.LSTM's: the gradients of all four
    parameters, of the input and of the initial state, for a loss on output, h_n and c_n."""
    t_lstm, j_lstm = lstm_pair(input_size, hidden, dtype)
    rng = np.random.default_rng(2)
    x, h0, c0 = (rng.uniform(-1, 1, s).astype(dtype) for s in [(batch, length, input_size), *[(1, batch, hidden)] * 2])
    w_out, w_h, w_c = (rng.normal(size=s).astype(dtype) for s in [(batch, length, hidden), *[(1, batch, hidden)] * 2])

    t_x, t_h0, t_c0 = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
    weights = (w_out, w_h, w_c)
    t_loss = weighted_sum(t_lstm(t_x, (t_h0, t_c0) if given_state else None), map(torch.from_numpy, weights), "LSTM")
    t_loss.backward()

    graphdef, params = nnx.split(j_lstm)

    def loss(params, x, h0, c0):
        return weighted_sum(nnx.merge(graphdef, params)(x, (h0, c0) if given_state else None), weights, "LSTM")

    value_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
    j_loss, (grads, dx, dh0, dc0) = value_and_grads(params, *map(jnp.asarray, (x, h0, c0)))
    tol = GRAD_ATOL[dtype]
    assert_close("loss", j_loss, t_loss.detach().numpy(), atol=tol)
    j_grads = nnx.merge(graphdef, grads)
    for name, p in t_lstm.named_parameters():
        assert_close(f"grad {name}", getattr(j_grads, name)[...], p.grad.numpy(), atol=tol)
    assert_close("grad input", dx, t_x.grad.numpy(), atol=tol)
    if given_state:
        assert_close("grad h0", dh0, t_h0.grad.numpy(), atol=tol)
        assert_close("grad c0", dc0, t_c0.grad.numpy(), atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer,lr", [("adam", 1e-3), ("adam", 0.3), ("sgd", 1e-2)])
def test_optimizer_steps(dtype, optimizer, lr):
    """Five steps of optax vs torch.optim from the same parameters and the same gradients."""
    t_model = torchseq.build_model(8, seed=2, dtype=dtype)
    j_model = jaxseq.from_torch(t_model)
    graphdef, params = nnx.split(j_model)
    t_opt = torchseq.make_optimizer(optimizer, t_model.parameters(), lr)
    tx = make_optimizer(optimizer, lr)
    opt_state = tx.init(params)
    rng = np.random.default_rng(3)
    for _ in range(5):
        grads_np = {k: rng.normal(size=p.shape).astype(dtype) for k, p in t_model.named_parameters()}
        for k, p in t_model.named_parameters():
            p.grad = torch.from_numpy(grads_np[k])
        t_opt.step()
        grads = nnx.split(jaxseq.from_torch(grads_np))[1]
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        assert_trees_close(
            jaxseq.to_torch_state_dict(nnx.merge(graphdef, params)),
            torch_state_dict_numpy(t_model),
            atol=STEP_ATOL[dtype],
        )


@pytest.mark.parametrize("data", [{}, dict(task="sine", sequences=40, batch_size=8)], ids=["seed", "minibatches"])
def test_chunk_not_dividing_steps_gives_the_same_run(data):
    """100 steps in chunks of 30 (the last one runs 10 and skips 20) equal the run in chunks of 10:
    every loss and every final parameter, bit for bit."""
    from jaxseq.app.config import TrainConfig

    runs = [jaxseq.train(TrainConfig(steps=100, hidden=8, chunk=chunk, **data)) for chunk in (30, 10)]
    assert len(runs[0].losses) == 100
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses, err_msg="losses, chunk 30 vs 10")
    first, second = (jax.tree.flatten_with_path(nnx.state(r.model))[0] for r in runs)
    for (path, a), (_, b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"final {jax.tree_util.keystr(path)}, chunk 30 vs 10")
