"""jaxseq.nn.recurrent (LSTM, GRU, RNN with every option) against torch.nn.LSTM, GRU and RNN.

Forward outputs and final states, gradients, a 100-step Adam trajectory and exact conversion, over
the grid of PyTorch's options. By default the tests run a pairwise-covering subset of the grid (every
pair of option values appears in some configuration, per mode); JAXSEQ_FULL_GRID=1 runs the whole
grid and more hypothesis examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jaxseq
from jaxseq.nn.recurrent import GRU, LSTM, RNN, RNNBase, inverted_dropout
from jaxseq.optim import make_optimizer
from jaxseq.port.convert import ConversionError
from parity_tests.helpers import (
    FORWARD_ATOL,
    GRAD_ATOL,
    TRAJECTORY_LOSS_RTOL,
    TRAJECTORY_PARAM_ATOL,
    assert_close,
    assert_trees_close,
    torch_state_dict_numpy,
    weighted_sum,
)

FULL_GRID = os.environ.get("JAXSEQ_FULL_GRID") == "1"
MODES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
BATCH, STEPS, INPUT, HIDDEN, PROJ = 3, 6, 3, 5, 2
LENGTHS = (5, 1, 3)  # unsorted, one of length 1, none of the full STEPS: every sequence is padded


@dataclasses.dataclass(frozen=True)
class Config:
    mode: str  # PyTorch's mode: LSTM, GRU, RNN_TANH, RNN_RELU
    num_layers: int
    bidirectional: bool
    bias: bool
    batch_first: bool
    proj_size: int  # LSTM only
    given_state: bool  # h_0 (and c_0) passed, or zeros
    lengths: bool  # variable lengths (packed in torch), or all sequences full
    dropout: float = 0.0  # between layers; the forward tests run torch in eval mode

    def __str__(self):
        flags = [self.mode, f"L{self.num_layers}"]
        flags += [name for name in ("bidirectional", "batch_first", "given_state", "lengths") if getattr(self, name)]
        flags += ["nobias"] if not self.bias else []
        flags += [f"proj{self.proj_size}"] if self.proj_size else []
        return "-".join(flags)


FACTORS = {  # option -> values; proj_size only varies for LSTM
    "num_layers": (1, 2),
    "bidirectional": (False, True),
    "bias": (True, False),
    "batch_first": (False, True),
    "proj_size": (0, PROJ),
    "given_state": (False, True),
    "lengths": (False, True),
}


def full_grid(mode: str) -> list[Config]:
    configs = []
    for values in itertools.product(*FACTORS.values()):
        options = dict(zip(FACTORS, values, strict=True))
        if mode != "LSTM" and options["proj_size"]:
            continue
        configs.append(Config(mode, **options, dropout=0.25 if options["num_layers"] > 1 else 0.0))
    return configs


def pairwise(configs: list[Config]) -> list[Config]:
    """A greedy subset in which every pair of values of two options appears at least once."""

    def pairs(config):
        values = [(name, getattr(config, name)) for name in FACTORS]
        return set(itertools.combinations(values, 2))

    uncovered = set().union(*map(pairs, configs))
    chosen = []
    while uncovered:
        best = max(configs, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def configs(full: bool = FULL_GRID) -> list[Config]:
    return [c for mode in MODES for c in (full_grid(mode) if full else pairwise(full_grid(mode)))]


PAIRWISE = configs(full=False)
GRID = configs()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: torch's thread pool only adds contention (100x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- building and running both sides ---------------------------------------------------------


def torch_module(config: Config, dtype="float64", seed=0, input_size=INPUT, hidden=HIDDEN):
    torch.manual_seed(seed)
    kwargs = dict(
        num_layers=config.num_layers,
        bias=config.bias,
        batch_first=config.batch_first,
        dropout=config.dropout,
        bidirectional=config.bidirectional,
    )
    if config.mode == "LSTM":
        module = torch.nn.LSTM(input_size, hidden, proj_size=config.proj_size, **kwargs)
    elif config.mode == "GRU":
        module = torch.nn.GRU(input_size, hidden, **kwargs)
    else:
        module = torch.nn.RNN(input_size, hidden, nonlinearity=config.mode[4:].lower(), **kwargs)
    return module.to(getattr(torch, dtype)).eval()


def inputs(config: Config, dtype="float64", seed=1, batch=BATCH, steps=STEPS, input_size=INPUT, hidden=HIDDEN):
    """(x, hx, lengths) as NumPy, laid out as the module takes them (hx and lengths may be None)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, steps, input_size) if config.batch_first else (steps, batch, input_size))
    K = config.num_layers * (2 if config.bidirectional else 1)
    hx = None
    if config.given_state:
        h0 = rng.uniform(-1, 1, (K, batch, config.proj_size or hidden)).astype(dtype)
        hx = (h0, rng.uniform(-1, 1, (K, batch, hidden)).astype(dtype)) if config.mode == "LSTM" else h0
    lengths = np.array(LENGTHS) if config.lengths else None
    return x.astype(dtype), hx, lengths


def run_torch(module, x, hx, lengths):
    """module(x, hx), or through pack_padded_sequence / pad_packed_sequence when lengths are given."""
    to_t = torch.from_numpy
    t_hx = None if hx is None else (tuple(map(to_t, hx)) if isinstance(hx, tuple) else to_t(hx))
    if lengths is None:
        return module(to_t(x), t_hx)
    T = x.shape[1] if module.batch_first else x.shape[0]
    packed = pack_padded_sequence(to_t(x), torch.from_numpy(lengths), module.batch_first, enforce_sorted=False)
    out, state = module(packed, t_hx)
    return pad_packed_sequence(out, module.batch_first, total_length=T)[0], state


def run_jax(layer, x, hx, lengths, use_jit=True):
    hx = None if hx is None else jax.tree.map(jnp.asarray, hx)
    lengths = None if lengths is None else jnp.asarray(lengths)
    if use_jit:
        return nnx.jit(lambda m, x, hx, lengths: m(x, hx, lengths=lengths))(layer, jnp.asarray(x), hx, lengths)
    return layer(x, hx, lengths=lengths)


def assert_same_results(j_result, t_result, mode, atol, where=""):
    """Output, h_n (and c_n) of both sides within `atol`, each checked under its own name."""
    (j_out, j_state), (t_out, t_state) = j_result, t_result
    j_states = j_state if mode == "LSTM" else (j_state,)
    t_states = t_state if mode == "LSTM" else (t_state,)
    for name, j, t in zip(("output", "h_n", "c_n"), (j_out, *j_states), (t_out, *t_states), strict=False):
        assert_close(f"{name}{where}", j, t.detach().numpy(), atol=atol)


# --- forward ---------------------------------------------------------------------------------


@pytest.mark.parametrize("use_jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("config", GRID, ids=str)
def test_forward(config, use_jit):
    module = torch_module(config)
    layer = jaxseq.from_torch(module)
    x, hx, lengths = inputs(config)
    with torch.no_grad():
        expected = run_torch(module, x, hx, lengths)
    actual = run_jax(layer, x, hx, lengths, use_jit)
    assert actual[0].dtype == jnp.float64, f"output dtype {actual[0].dtype} != float64"
    assert_same_results(actual, expected, config.mode, FORWARD_ATOL["float64"])
    if lengths is not None:
        out = np.asarray(actual[0]) if config.batch_first else np.swapaxes(np.asarray(actual[0]), 0, 1)
        for b, n in enumerate(lengths):
            assert not out[b, n:].any(), f"output of sequence {b} is not zero after its length {n}"


@pytest.mark.parametrize("config", PAIRWISE, ids=str)
def test_forward_float32(config):
    module = torch_module(config, "float32")
    layer = jaxseq.from_torch(module)
    x, hx, lengths = inputs(config, "float32")
    with torch.no_grad():
        expected = run_torch(module, x, hx, lengths)
    actual = run_jax(layer, x, hx, lengths)
    assert actual[0].dtype == jnp.float32, f"output dtype {actual[0].dtype} != float32"
    assert_same_results(actual, expected, config.mode, FORWARD_ATOL["float32"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "given_state"])
def test_unbatched_input(mode, given_state):
    """A 2-d input (T, I) with a (D*L, H) state, as PyTorch accepts it."""
    config = Config(mode, 2, True, True, False, PROJ if mode == "LSTM" else 0, given_state, False)
    module = torch_module(config)
    x, hx, _ = inputs(config, batch=1)
    x = x[:, 0]
    hx = None if hx is None else jax.tree.map(lambda s: s[:, 0], hx)
    with torch.no_grad():
        expected = run_torch(module, x, hx, None)
    assert_same_results(run_jax(jaxseq.from_torch(module), x, hx, None), expected, mode, FORWARD_ATOL["float64"])


def test_lengths_all_full_equals_no_lengths():
    layer = LSTM(2, 4, num_layers=2, bidirectional=True, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3, 2)))
    out, (h, c) = layer(x)
    out_l, (h_l, c_l) = layer(x, lengths=jnp.array([5, 5, 5]))
    for name, a, b in (("output", out_l, out), ("h_n", h_l, h), ("c_n", c_l, c)):
        assert_close(f"{name} with full lengths", a, b, atol=0)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])  # float32 with H=5: the transposed-W_hh layout
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_kernel_matches_autodiff_scan(mode, with_lengths, bias, dtype):
    """Each hand-written kernel (jaxseq.nn.kernels, `recurrent.KERNELS`) against autodiff through a plain
    `lax.scan` of `recurrent.cell` that carries the state through padding: outputs and every gradient."""
    from jaxseq.nn import recurrent

    rng = np.random.default_rng(0)
    T, B, I, H = 9, 3, 2, 5
    G = recurrent.GATES[mode] * H
    lstm = mode == "LSTM"

    def draw(*shape, scale=1.0):
        return (rng.normal(size=shape) * scale).astype(dtype)

    weights = {"weight_ih": draw(G, I), "weight_hh": draw(G, H, scale=0.5)}
    if bias:
        weights |= {"bias_ih": draw(G), "bias_hh": draw(G)}
    x, h0, c0 = draw(T, B, I), draw(B, H), draw(B, H) if lstm else None
    lengths = jnp.array([9, 4, 1]) if with_lengths else None
    w_out, w_h, w_c = draw(T, B, H), draw(B, H), draw(B, H)

    def scan_reference(weights, x, h0, c0):
        valid_TxB = jnp.arange(T)[:, None] < (jnp.full(B, T) if lengths is None else lengths)[None, :]
        xw = jnp.einsum("tbi,gi->tbg", x, weights["weight_ih"]) + weights.get("bias_ih", 0)

        def step(carry, xs):
            (h, c), (xw_t, valid_B) = carry, xs
            new_h, new_c = recurrent.cell(mode, weights, xw_t, h, c)
            keep = valid_B[:, None]
            c = jnp.where(keep, new_c, c) if lstm else None
            return (jnp.where(keep, new_h, h), c), jnp.where(keep, new_h, 0)

        (h_n, c_n), out = jax.lax.scan(step, (h0, c0), (xw, valid_TxB))
        return out, (h_n, c_n)

    def loss(run, weights, x, h0, c0):
        out, (h_n, c_n) = run(weights, x, h0, c0)
        return jnp.sum(out * w_out) + jnp.sum(h_n * w_h) + (jnp.sum(c_n * w_c) if lstm else 0)

    def kernel(weights, x, h0, c0):
        return recurrent.run_direction(mode, weights, x, lengths, h0, c0, kernel=recurrent.KERNELS[mode])

    args = (weights, jnp.asarray(x), jnp.asarray(h0), None if c0 is None else jnp.asarray(c0))
    argnums = (0, 1, 2, 3) if lstm else (0, 1, 2)
    grads = jax.grad(partial(loss, kernel), argnums=argnums)(*args)
    expected = jax.grad(partial(loss, scan_reference), argnums=argnums)(*args)
    names = ("output", "h_n", "c_n")[: 3 if lstm else 2]
    for name, a, b in zip(names, jax.tree.leaves(kernel(*args)), jax.tree.leaves(scan_reference(*args)), strict=True):
        assert_close(f"{mode} {name}: kernel vs autodiff scan", a, b, atol=FORWARD_ATOL[dtype])
    for name in weights:
        assert_close(
            f"{mode} grad {name}: kernel vs autodiff scan", grads[0][name], expected[0][name], atol=GRAD_ATOL[dtype]
        )
    for name, a, b in zip(("input", "h0", "c0"), grads[1:], expected[1:], strict=False):
        assert_close(f"{mode} grad {name}: kernel vs autodiff scan", a, b, atol=GRAD_ATOL[dtype])


# --- dropout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_dropout_one_in_training_matches_torch(mode):
    """With p = 1 torch's training-mode dropout is deterministic (zeros): this pins where dropout goes
    (after every layer but the last, on both directions' concatenated outputs)."""
    config = Config(mode, 3, True, True, False, 0, True, True, dropout=1.0)
    module = torch_module(config).train()
    layer = jaxseq.from_torch(module)
    x, hx, lengths = inputs(config)
    with torch.no_grad():
        expected = run_torch(module, x, hx, lengths)
    actual = layer(x, hx, lengths=jnp.asarray(lengths), dropout_key=jax.random.key(0))
    assert_same_results(actual, expected, mode, FORWARD_ATOL["float64"], " (dropout=1, training)")


def test_dropout_semantics():
    """Training mode needs a key, is reproducible per key, changes the output of a stack, and is
    the identity on a single layer (no layer after it), as in torch; evaluation mode is exact."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2, 3)))
    stack = GRU(3, 8, num_layers=2, dropout=0.5, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    key_a, key_b = jax.random.key(1), jax.random.key(2)
    eval_out, _ = stack(x)
    a1, _ = stack(x, dropout_key=key_a)
    a2, _ = stack(x, dropout_key=key_a)
    b, _ = stack(x, dropout_key=key_b)
    assert_close("same key, same dropout", a1, a2, atol=0)
    assert not np.allclose(a1, b), "different keys gave the same dropout"
    assert not np.allclose(a1, eval_out), "dropout_key did not change a 2-layer stack's output"
    single = GRU(3, 8, dropout=0.5, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    assert_close("single layer with dropout", single(x, dropout_key=key_a)[0], single(x)[0], atol=0)


def test_inverted_dropout_rate_and_scale():
    x = jnp.ones((200_000,), jnp.float64)
    y = np.asarray(inverted_dropout(jax.random.key(0), x, 0.3))
    kept = y != 0
    assert abs(1 - kept.mean() - 0.3) < 0.005, f"dropped fraction {1 - kept.mean():.4f}, expected 0.3 ± 0.005"
    assert_close("kept values scaled by 1/(1-p)", y[kept], np.full(kept.sum(), 1 / 0.7), atol=1e-15)


# --- gradients and training ------------------------------------------------------------------


@pytest.mark.parametrize("config", PAIRWISE if not FULL_GRID else GRID, ids=str)
def test_gradients(config):
    module = torch_module(config)
    layer = jaxseq.from_torch(module)
    x, hx, lengths = inputs(config)
    with torch.no_grad():
        shapes = [a.shape for a in jax.tree.leaves(run_torch(module, x, hx, lengths))]
    rng = np.random.default_rng(5)
    weights = [rng.normal(size=s) for s in shapes]

    t_x = torch.from_numpy(x).requires_grad_()
    t_hx = None if hx is None else jax.tree.map(lambda s: torch.from_numpy(s).requires_grad_(), hx)
    module.zero_grad()
    to_t = torch.from_numpy
    if lengths is None:
        t_result = module(t_x, t_hx)
    else:
        packed = pack_padded_sequence(t_x, to_t(lengths), config.batch_first, enforce_sorted=False)
        out, state = module(packed, t_hx)
        t_result = (pad_packed_sequence(out, config.batch_first, total_length=STEPS)[0], state)
    t_loss = weighted_sum(t_result, [to_t(w) for w in weights], config.mode)
    t_loss.backward()
    t_grads = {k: p.grad.numpy() for k, p in module.named_parameters()}

    graphdef, params = nnx.split(layer)

    def loss(params, x, hx):
        return weighted_sum(nnx.merge(graphdef, params)(x, hx, lengths=lengths), weights, config.mode)

    j_loss, (j_params, j_x, j_hx) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
        params, jnp.asarray(x), None if hx is None else jax.tree.map(jnp.asarray, hx)
    )
    tol = GRAD_ATOL["float64"]
    assert_close("loss", j_loss, t_loss.item(), atol=tol)
    j_grads = jaxseq.to_torch_state_dict(nnx.merge(graphdef, j_params))
    for key in t_grads:
        assert_close(f"grad {key}", j_grads[key], t_grads[key], atol=tol)
    assert_close("grad input", j_x, t_x.grad.numpy(), atol=tol)
    if hx is not None:
        for name, j, t in zip(("grad h_0", "grad c_0"), jax.tree.leaves(j_hx), jax.tree.leaves(t_hx), strict=False):
            assert_close(name, j, t.grad.numpy(), atol=tol)


TRAJECTORY_CONFIGS = (
    PAIRWISE
    if FULL_GRID
    else [
        Config("LSTM", 2, True, True, True, PROJ, False, True, dropout=0.25),
        Config("GRU", 2, True, False, False, 0, True, True),
        Config("RNN_TANH", 1, False, True, True, 0, False, False),
    ]
)


@pytest.mark.slow
@pytest.mark.parametrize("config", TRAJECTORY_CONFIGS, ids=str)
def test_adam_trajectory(config):
    """100 Adam steps (lr 1e-2) on a fixed batch from the same weights: the loss at every step and
    the final weights agree (evaluation mode: dropout off)."""
    dtype, steps, lr = "float64", 100, 1e-2
    module = torch_module(config)
    layer = jaxseq.from_torch(module)
    x, hx, lengths = inputs(config)
    with torch.no_grad():
        target = np.random.default_rng(7).normal(size=run_torch(module, x, hx, lengths)[0].shape) * 0.5

    t_opt = torch.optim.Adam(module.parameters(), lr=lr)
    t_losses = []
    for _ in range(steps):
        t_opt.zero_grad()
        t_loss = ((run_torch(module, x, hx, lengths)[0] - torch.from_numpy(target)) ** 2).mean()
        t_loss.backward()
        t_opt.step()
        t_losses.append(t_loss.item())

    graphdef, params = nnx.split(layer)
    tx = make_optimizer("adam", lr)
    j_hx = None if hx is None else jax.tree.map(jnp.asarray, hx)
    j_lengths = None if lengths is None else jnp.asarray(lengths)

    def loss_fn(params):
        out, _ = nnx.merge(graphdef, params)(x, j_hx, lengths=j_lengths)
        return ((out - target) ** 2).mean()

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, j_losses = tx.init(params), []
    for _ in range(steps):
        params, opt_state, loss = train_step(params, opt_state)
        j_losses.append(float(loss))
    assert t_losses[-1] < t_losses[0], f"torch did not learn: loss {t_losses[0]:.3g} -> {t_losses[-1]:.3g}"
    assert_close("loss history", j_losses, t_losses, rtol=TRAJECTORY_LOSS_RTOL[dtype])
    assert_trees_close(
        jaxseq.to_torch_state_dict(nnx.merge(graphdef, params)),
        torch_state_dict_numpy(module),
        atol=TRAJECTORY_PARAM_ATOL[dtype],
    )


# --- conversion ------------------------------------------------------------------------------


def options_of(config: Config) -> dict:
    options = dict(
        num_layers=config.num_layers,
        bias=config.bias,
        batch_first=config.batch_first,
        dropout=config.dropout,
        bidirectional=config.bidirectional,
    )
    if config.mode == "LSTM":
        options["proj_size"] = config.proj_size
    if config.mode.startswith("RNN"):
        options["nonlinearity"] = config.mode[4:].lower()
    return options


def kind_of(config: Config) -> str:
    return config.mode.split("_")[0].lower()


# Conversion does not depend on the call's options (initial state, lengths): one config per weight layout.
WEIGHT_LAYOUTS = list(dict.fromkeys(dataclasses.replace(c, given_state=False, lengths=False) for c in GRID))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("source", ["module", "tensors", "numpy"])
@pytest.mark.parametrize("config", WEIGHT_LAYOUTS, ids=str)
def test_round_trip_is_exact(config, source, dtype):
    module = torch_module(config, dtype, seed=4)
    if source == "module":
        layer = jaxseq.from_torch(module)
    else:
        state = module.state_dict() if source == "tensors" else torch_state_dict_numpy(module)
        layer = jaxseq.from_torch(state, kind=kind_of(config), **options_of(config))
    for name in (
        "mode",
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
        "proj_size",
    ):
        assert getattr(layer, name) == getattr(module, name), f"option {name}: {getattr(layer, name)!r} != torch's"
    back = jaxseq.to_torch_state_dict(layer)
    expected = torch_state_dict_numpy(module)
    assert list(back) == list(expected), "keys or their order differ from PyTorch's state_dict"
    for key in expected:
        assert back[key].dtype == expected[key].dtype, f"{key}: dtype {back[key].dtype} != {expected[key].dtype}"
        assert np.array_equal(back[key], expected[key]), f"{key}: round trip is not bit-exact"
    reloaded = torch_module(config, dtype, seed=5)
    reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_fresh_layer_loads_into_torch():
    """A jaxseq layer built from scratch has exactly torch's keys and shapes, and torch's init bound."""
    layer = LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2, rngs=nnx.Rngs(0))
    state_dict = jaxseq.to_torch_state_dict(layer)
    module = torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
    assert max(np.abs(v).max() for v in state_dict.values()) <= 1 / np.sqrt(6), "init exceeds ±1/sqrt(hidden)"


def test_from_torch_copies():
    module = torch.nn.GRU(2, 3)
    layer = jaxseq.from_torch(module)
    before = np.asarray(layer.weight_hh_l0[...]).copy()
    with torch.no_grad():
        module.weight_hh_l0.add_(1.0)
    np.testing.assert_array_equal(np.asarray(layer.weight_hh_l0[...]), before)


def test_torch_subclass_is_accepted():
    class MyLSTM(torch.nn.LSTM):
        pass

    assert isinstance(jaxseq.from_torch(MyLSTM(2, 3)), RNNBase)


def lstm_state_dict(**options):
    return torch_state_dict_numpy(torch.nn.LSTM(3, 4, **options))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: jaxseq.from_torch(lstm_state_dict()), "needs kind="),
        (lambda: jaxseq.from_torch(lstm_state_dict(num_layers=2), kind="lstm"), "unexpected key 'weight_ih_l1'"),
        (
            lambda: jaxseq.from_torch(lstm_state_dict(), kind="lstm", bidirectional=True),
            "missing key 'weight_ih_l0_reverse'",
        ),
        (lambda: jaxseq.from_torch(lstm_state_dict(proj_size=2), kind="lstm"), "unexpected key 'weight_hr_l0'"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="lstm", bias=False), "unexpected key 'bias_ih_l0'"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="gru"), r"weight_ih_l0: expected shape \(15, 3\)"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="lstm", hidden_size=5), "weight_ih_l0: expected shape"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="lstm", nonlinearity="relu"), "'nonlinearity'"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="lstm", num_layer=2), "unknown option 'num_layer'"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="lstm", num_layers=0), "option num_layers"),
        (lambda: jaxseq.from_torch(lstm_state_dict(), kind="conv"), "kind must be one of"),
        (lambda: jaxseq.from_torch(torch_state_dict_numpy(torch.nn.GRU(3, 4)), kind="gru", proj_size=1), "proj_size"),
        (lambda: jaxseq.from_torch(torch.nn.GRU(3, 4), num_layers=2), "options are read from the torch module"),
        (lambda: jaxseq.from_torch(torch.nn.GRU(3, 4), kind="lstm"), "the module is a torch.nn.GRU"),
        (lambda: jaxseq.from_torch(torch.nn.RNN(3, 4).half()), "dtype float16 is not supported"),
        (lambda: jaxseq.from_torch(torch.nn.RNN(3, 4).bfloat16()), "dtype bfloat16 is not supported"),
        (
            lambda: jaxseq.from_torch(torch.nn.utils.parametrizations.weight_norm(torch.nn.GRU(3, 4), "weight_hh_l0")),
            "parametrized weights",
        ),
    ],
    ids=[
        "no_kind",
        "num_layers",
        "bidirectional",
        "proj_size",
        "bias",
        "wrong_kind",
        "hidden_size",
        "nonlinearity_for_lstm",
        "unknown_option",
        "bad_option",
        "bad_kind",
        "proj_for_gru",
        "options_with_module",
        "kind_mismatch",
        "float16",
        "bfloat16",
        "weight_norm",
    ],
)
def test_conversion_errors_name_the_option(make, message):
    with pytest.raises(ConversionError, match=message):
        make()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: LSTM(3, 4, proj_size=4, rngs=nnx.Rngs(0)), "proj_size"),
        (lambda: GRU(3, 4, proj_size=1, rngs=nnx.Rngs(0)), "proj_size"),
        (lambda: RNN(3, 4, nonlinearity="sigmoid", rngs=nnx.Rngs(0)), "nonlinearity"),
        (lambda: RNN(3, 4, dropout=1.5, rngs=nnx.Rngs(0)), "dropout"),
        (lambda: RNN(3, 4, num_layers=0, rngs=nnx.Rngs(0)), "num_layers"),
        (lambda: GRU(3, 4, rngs=nnx.Rngs(0))(jnp.zeros((5, 2, 3)), lengths=jnp.array([0, 5])), r"lengths must lie"),
        (lambda: GRU(3, 4, rngs=nnx.Rngs(0))(jnp.zeros((5, 2, 3)), lengths=jnp.array([6, 5])), r"lengths must lie"),
        (lambda: GRU(3, 4, rngs=nnx.Rngs(0))(jnp.zeros((5, 2, 2))), "input_size is 3"),
        (lambda: GRU(3, 4, rngs=nnx.Rngs(0))(jnp.zeros((5, 2, 3)), jnp.zeros((1, 2, 5))), r"h_0 must have shape"),
        (lambda: LSTM(3, 4, rngs=nnx.Rngs(0))(jnp.zeros((5, 2, 3)), jnp.zeros((1, 2, 4))), r"pair \(h_0, c_0\)"),
    ],
    ids=[
        "proj_too_big",
        "proj_gru",
        "nonlinearity",
        "dropout",
        "num_layers",
        "length0",
        "length_gt_T",
        "input",
        "h0_shape",
        "lstm_hx",
    ],
)
def test_layer_errors_name_the_option(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# --- property-based ----------------------------------------------------------------------------


@st.composite
def random_case(draw):
    mode = draw(st.sampled_from(MODES))
    hidden = draw(st.integers(1, 6))
    config = Config(
        mode,
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)) if mode == "LSTM" else 0,
        given_state=draw(st.booleans()),
        lengths=False,
    )
    batch, steps = draw(st.integers(1, 4)), draw(st.integers(1, 7))
    lengths = draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    sizes = dict(batch=batch, steps=steps, input_size=draw(st.integers(1, 4)), hidden=hidden)
    return config, sizes, lengths, draw(st.integers(0, 2**16))


@settings(
    max_examples=200 if FULL_GRID else 12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(random_case())
def test_random_configurations(case):
    """Random options, sizes and lengths: forward parity (float64, eager) and an exact round trip."""
    config, sizes, lengths, seed = case
    module = torch_module(config, seed=seed, input_size=sizes["input_size"], hidden=sizes["hidden"])
    x, hx, _ = inputs(config, seed=seed, **sizes)
    lengths = None if lengths is None else np.array(lengths)
    with torch.no_grad():
        expected = run_torch(module, x, hx, lengths)
    layer = jaxseq.from_torch(module)
    where = f" ({config}, sizes {sizes}, lengths {None if lengths is None else lengths.tolist()})"
    assert_same_results(
        run_jax(layer, x, hx, lengths, use_jit=False), expected, config.mode, FORWARD_ATOL["float64"], where
    )
    back = jaxseq.to_torch_state_dict(layer)
    for key, value in torch_state_dict_numpy(module).items():
        assert np.array_equal(back[key], value), f"{key}: round trip is not bit-exact{where}"
