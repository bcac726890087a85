"""jaxseq.nn's layers against their torch.nn counterparts: forward, gradients, modes, initialisation.

Each layer is built in both frameworks with the same constructor arguments; torch's tensors are
copied into the jaxseq layer by name (the names and shapes must match: that is the point of
jaxseq.nn). Forward outputs are compared eagerly, gradients of sum(output * cotangent) with respect
to the input and every parameter under jax.jit, in float64 (and float32 for a few layers).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxseq import nn
from parity_tests.helpers import FORWARD_ATOL, GRAD_ATOL, assert_close

# Running statistics of BatchNorm1d after a few training steps, float64, absolute (values of order 1).
STATS_ATOL = 1e-13
# Initialisation statistics of N(0, 1) over 20 000 draws: mean and standard deviation within 5
# standard errors (1/sqrt(n) and 1/sqrt(2n)), absolute.
INIT_MEAN_ATOL = 5 / math.sqrt(20_000)
INIT_STD_ATOL = 5 / math.sqrt(2 * 20_000)
# A uniform draw of >= 2 000 values reaches within 1% of its bound (the chance it does not is < 1e-8).
INIT_REACH = 0.99
# Dropout in training mode: fraction of zeros over 20 000 draws within 5 standard errors of p.
DROPOUT_FRACTION_ATOL = 5 * math.sqrt(0.25 / 20_000)


def copy_torch_tensors(layer: nnx.Module, module: torch.nn.Module) -> None:
    """Every tensor of module.state_dict() into the layer's variable of the same name and shape."""
    for name, t in module.state_dict().items():
        variable = layer
        for part in name.split("."):
            variable = getattr(variable, part, None)
        assert isinstance(variable, nnx.Variable), f"{name}: torch has it, the jaxseq layer has no variable"
        assert variable.shape == tuple(t.shape), f"{name}: shape {variable.shape} != torch's {tuple(t.shape)}"
        variable[...] = jnp.asarray(t.numpy())


def variables(layer: nnx.Module, kinds=(nnx.Param, nnx.BatchStat)) -> dict[str, tuple]:
    """{path joined by ".": shape} of the layer's variables of `kinds`."""
    flat = nnx.to_flat_state(nnx.state(layer, kinds))
    return {".".join(map(str, path)): tuple(v.shape) for path, v in flat}


def assert_layer_matches(module, layer, x_np: np.ndarray, dtype: str, *, name: str) -> None:
    """Forward (eager) and gradients (jit) of `layer` against torch's `module` on input x."""
    forward_atol, grad_atol = FORWARD_ATOL[dtype], GRAD_ATOL[dtype]
    copy_torch_tensors(layer, module)
    floating = np.issubdtype(x_np.dtype, np.floating)
    x_t = torch.tensor(x_np, requires_grad=floating)
    y_t = module(x_t)
    y = layer(jnp.asarray(x_np))
    assert_close(f"{name} output (atol {forward_atol:g})", y, y_t.detach().numpy(), atol=forward_atol)

    cotangent = np.random.default_rng(1).standard_normal(y_t.shape).astype(dtype)
    params_t = dict(module.named_parameters())
    (y_t * torch.tensor(cotangent)).sum().backward()
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    @jax.jit
    def grads(params, x):
        def scalar(params, x):
            return jnp.sum(nnx.merge(graphdef, params, rest)(x) * cotangent)

        return jax.grad(scalar, argnums=(0, 1) if floating else 0)(params, x)

    g = grads(params, jnp.asarray(x_np))
    g_params, g_x = g if floating else (g, None)
    g_flat = {".".join(map(str, p)): v[...] for p, v in nnx.to_flat_state(g_params)}
    assert sorted(g_flat) == sorted(params_t), f"{name}: parameters {sorted(g_flat)} != torch's {sorted(params_t)}"
    for key, p in params_t.items():
        assert_close(f"{name} d/d{key} (atol {grad_atol:g})", g_flat[key], p.grad.numpy(), atol=grad_atol)
    if floating:
        assert_close(f"{name} d/dinput (atol {grad_atol:g})", g_x, x_t.grad.numpy(), atol=grad_atol)


def inputs(shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (id, torch module factory, jaxseq layer factory, input) -------------------------------------
R = nnx.Rngs(0)
CASES = [
    ("Linear", lambda: torch.nn.Linear(4, 3), lambda d: nn.Linear(4, 3, param_dtype=d, rngs=R), inputs((2, 5, 4))),
    (
        "Linear-nobias",
        lambda: torch.nn.Linear(4, 3, bias=False),
        lambda d: nn.Linear(4, 3, bias=False, param_dtype=d, rngs=R),
        inputs((2, 4)),
    ),
    (
        "Embedding",
        lambda: torch.nn.Embedding(7, 3),
        lambda d: nn.Embedding(7, 3, param_dtype=d, rngs=R),
        np.array([[1, 2, 2], [6, 0, 1]]),
    ),
    (
        "Embedding-padding",
        lambda: torch.nn.Embedding(7, 3, padding_idx=2),
        lambda d: nn.Embedding(7, 3, padding_idx=2, param_dtype=d, rngs=R),
        np.array([[1, 2, 2], [6, 0, 2]]),
    ),
    (
        "Embedding-padding-negative",
        lambda: torch.nn.Embedding(7, 3, padding_idx=-1),
        lambda d: nn.Embedding(7, 3, padding_idx=-1, param_dtype=d, rngs=R),
        np.array([6, 0, 6, 3]),
    ),
    ("LayerNorm", lambda: torch.nn.LayerNorm(5), lambda d: nn.LayerNorm(5, param_dtype=d), inputs((2, 3, 5))),
    (
        "LayerNorm-2d-shape",
        lambda: torch.nn.LayerNorm((3, 5), eps=1e-3),
        lambda d: nn.LayerNorm((3, 5), eps=1e-3, param_dtype=d),
        inputs((2, 3, 5)),
    ),
    (
        "LayerNorm-noaffine",
        lambda: torch.nn.LayerNorm(5, elementwise_affine=False),
        lambda d: nn.LayerNorm(5, elementwise_affine=False, param_dtype=d),
        inputs((4, 5)),
    ),
    (
        "LayerNorm-nobias",
        lambda: torch.nn.LayerNorm(5, bias=False),
        lambda d: nn.LayerNorm(5, bias=False, param_dtype=d),
        inputs((4, 5)),
    ),
    (
        "Conv1d",
        lambda: torch.nn.Conv1d(4, 6, 3),
        lambda d: nn.Conv1d(4, 6, 3, param_dtype=d, rngs=R),
        inputs((2, 4, 9)),
    ),
    (
        "Conv1d-stride-padding-dilation",
        lambda: torch.nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2),
        lambda d: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, param_dtype=d, rngs=R),
        inputs((2, 4, 11)),
    ),
    (
        "Conv1d-same-even-kernel",
        lambda: torch.nn.Conv1d(4, 6, 4, padding="same", dilation=3),
        lambda d: nn.Conv1d(4, 6, 4, padding="same", dilation=3, param_dtype=d, rngs=R),
        inputs((2, 4, 10)),
    ),
    (
        "Conv1d-valid-groups-nobias",
        lambda: torch.nn.Conv1d(4, 6, (2,), padding="valid", groups=2, bias=False),
        lambda d: nn.Conv1d(4, 6, (2,), padding="valid", groups=2, bias=False, param_dtype=d, rngs=R),
        inputs((3, 4, 7)),
    ),
    (
        "Conv1d-unbatched",
        lambda: torch.nn.Conv1d(4, 2, 3, padding=1),
        lambda d: nn.Conv1d(4, 2, 3, padding=1, param_dtype=d, rngs=R),
        inputs((4, 6)),
    ),
    (
        "BatchNorm1d-eval-2d",
        lambda: _batch_norm_with_stats(torch.nn.BatchNorm1d(3)).eval(),
        lambda d: nn.BatchNorm1d(3, param_dtype=d).eval(),
        inputs((5, 3)),
    ),
    (
        "BatchNorm1d-eval-3d-noaffine",
        lambda: _batch_norm_with_stats(torch.nn.BatchNorm1d(3, affine=False, eps=1e-3)).eval(),
        lambda d: nn.BatchNorm1d(3, affine=False, eps=1e-3, param_dtype=d).eval(),
        inputs((2, 3, 4)),
    ),
    (
        "BatchNorm1d-no-running-stats-eval",
        lambda: torch.nn.BatchNorm1d(3, track_running_stats=False).eval(),
        lambda d: nn.BatchNorm1d(3, track_running_stats=False, param_dtype=d).eval(),
        inputs((2, 3, 4)),
    ),
    (
        "Dropout-eval",
        lambda: torch.nn.Dropout(0.4).eval(),
        lambda d: nn.Dropout(0.4).eval(),
        inputs((3, 4)),
    ),
    ("ReLU", lambda: torch.nn.ReLU(), lambda d: nn.ReLU(), inputs((3, 4))),
    ("LeakyReLU", lambda: torch.nn.LeakyReLU(0.2), lambda d: nn.LeakyReLU(0.2), inputs((3, 4))),
    ("GELU", lambda: torch.nn.GELU(), lambda d: nn.GELU(), inputs((3, 4))),
    ("GELU-tanh", lambda: torch.nn.GELU("tanh"), lambda d: nn.GELU("tanh"), inputs((3, 4))),
    ("Tanh", lambda: torch.nn.Tanh(), lambda d: nn.Tanh(), inputs((3, 4))),
    ("Sigmoid", lambda: torch.nn.Sigmoid(), lambda d: nn.Sigmoid(), inputs((3, 4))),
    ("SiLU", lambda: torch.nn.SiLU(), lambda d: nn.SiLU(), inputs((3, 4))),
    ("Softmax", lambda: torch.nn.Softmax(dim=-1), lambda d: nn.Softmax(dim=-1), inputs((3, 4))),
    ("Softmax-legacy-dim", lambda: torch.nn.Softmax(), lambda d: nn.Softmax(), inputs((2, 3, 4))),
    ("LogSoftmax", lambda: torch.nn.LogSoftmax(dim=1), lambda d: nn.LogSoftmax(dim=1), inputs((3, 4, 2))),
    ("Identity", lambda: torch.nn.Identity(7, k=1), lambda d: nn.Identity(7, k=1), inputs((3, 4))),
    ("Flatten", lambda: torch.nn.Flatten(), lambda d: nn.Flatten(), inputs((2, 3, 4, 2))),
    ("Flatten-0-1", lambda: torch.nn.Flatten(0, 1), lambda d: nn.Flatten(0, 1), inputs((2, 3, 4))),
    (
        "Sequential",
        lambda: torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.SiLU(), torch.nn.Linear(5, 2)),
        lambda d: nn.Sequential(
            nn.Linear(4, 5, param_dtype=d, rngs=R), nn.SiLU(), nn.Linear(5, 2, param_dtype=d, rngs=R)
        ),
        inputs((3, 4)),
    ),
]


def _batch_norm_with_stats(module):
    """A BatchNorm1d whose running statistics and affine parameters are not the defaults."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        module.running_mean.copy_(torch.randn(module.num_features, generator=g))
        module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
        if module.affine:
            module.weight.copy_(torch.randn(module.num_features, generator=g))
            module.bias.copy_(torch.randn(module.num_features, generator=g))
    return module


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch_float64(case):
    name, make_torch, make_jax, x = case
    torch.manual_seed(0)
    assert_layer_matches(make_torch().double(), make_jax(jnp.float64), x, "float64", name=name)


FLOAT32_CASES = ("Linear", "Embedding-padding", "LayerNorm", "Conv1d-stride-padding-dilation", "GELU", "Softmax")


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in FLOAT32_CASES], ids=FLOAT32_CASES)
def test_layer_matches_torch_float32(case):
    name, make_torch, make_jax, x = case
    torch.manual_seed(0)
    x = x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x
    assert_layer_matches(make_torch().float(), make_jax(jnp.float32), x, "float32", name=name)


@pytest.mark.parametrize(
    "shape,momentum,affine",
    [((6, 3), 0.1, True), ((4, 3, 5), 0.3, False), ((4, 3, 5), None, True)],
    ids=["2d", "3d-momentum0.3-noaffine", "3d-cumulative"],
)
def test_batch_norm_training_steps(shape, momentum, affine):
    """Three training steps: outputs, gradients and the running statistics and count after them."""
    atol, grad_atol = FORWARD_ATOL["float64"], GRAD_ATOL["float64"]
    module = _batch_norm_with_stats(torch.nn.BatchNorm1d(3, momentum=momentum, affine=affine).double())
    layer = nn.BatchNorm1d(3, momentum=momentum, affine=affine, param_dtype=jnp.float64)
    copy_torch_tensors(layer, module)
    module.train()
    layer.train()

    @nnx.jit
    def step(layer, x, cotangent):
        def scalar(layer):
            return jnp.sum(layer(x) * cotangent)

        return nnx.value_and_grad(scalar)(layer)

    for i in range(3):
        x = inputs(shape, seed=i)
        cotangent = inputs(shape, seed=10 + i)
        x_t = torch.tensor(x, requires_grad=True)
        module.zero_grad()
        y_t = module(x_t)
        (y_t * torch.tensor(cotangent)).sum().backward()
        value, grads = step(layer, jnp.asarray(x), jnp.asarray(cotangent))
        assert_close(
            f"step {i} sum(output * cotangent) (atol {atol:g})",
            value,
            (y_t * torch.tensor(cotangent)).sum().item(),
            atol=atol,
        )
        for key, p in module.named_parameters():
            assert_close(
                f"step {i} d/d{key} (atol {grad_atol:g})", getattr(grads, key)[...], p.grad.numpy(), atol=grad_atol
            )
        for key in ("running_mean", "running_var"):
            assert_close(
                f"step {i} {key} (atol {STATS_ATOL:g})",
                getattr(layer, key)[...],
                getattr(module, key).numpy(),
                atol=STATS_ATOL,
            )
        count, count_t = int(layer.num_batches_tracked[...]), int(module.num_batches_tracked)
        assert count == count_t, f"step {i} num_batches_tracked {count} != torch's {count_t} (exact)"

    layer.eval()
    module.eval()
    x = inputs(shape, seed=7)
    atol = FORWARD_ATOL["float64"]
    assert_close(
        f"eval output after training (atol {atol:g})", layer(x), module(torch.tensor(x)).detach().numpy(), atol=atol
    )


def test_batch_norm_training_needs_more_than_one_value():
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(jnp.ones((1, 3)))


def test_embedding_padding_row_starts_zero_and_gets_no_gradient():
    layer = nn.Embedding(6, 4, padding_idx=3, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    assert np.all(np.asarray(layer.weight[...][3]) == 0), "weight[padding_idx] at init: must be exactly 0"
    layer.weight[...] = layer.weight[...].at[3].set(1.5)  # a trained, nonzero padding row
    ids = jnp.array([[3, 1, 3], [0, 3, 5]])

    graphdef, params = nnx.split(layer)
    grads = jax.grad(lambda params: jnp.sum(nnx.merge(graphdef, params)(ids) ** 2))(params)
    g = grads["weight"][...]
    assert np.all(np.asarray(g[3]) == 0), f"d/dweight[padding_idx]: must be exactly 0, got {g[3]}"
    assert np.all(np.asarray(g[1]) != 0), "d/dweight[1]: a used row must get a gradient"
    assert np.all(np.asarray(layer(ids)[0, 0]) == 1.5), "output at padding_idx: the row's value, exactly"


def test_dropout_training_mode():
    p, n = 0.3, 20_000
    layer = nn.Dropout(p, rngs=nnx.Rngs(dropout=1))
    y = np.asarray(layer(jnp.ones(n)))
    zeros = np.mean(y == 0)
    assert abs(zeros - p) <= DROPOUT_FRACTION_ATOL, (
        f"fraction zeroed {zeros} vs p={p} (atol {DROPOUT_FRACTION_ATOL:.3g})"
    )
    kept = y[y != 0]
    assert np.all(kept == 1 / (1 - p)), "kept values must be scaled by 1/(1-p) (exact)"
    assert not np.array_equal(y, np.asarray(layer(jnp.ones(n)))), "two calls must draw different masks"
    assert np.all(np.asarray(nn.Dropout(1.0, rngs=nnx.Rngs(0))(jnp.ones(5))) == 0), "p=1 must give zeros (exact)"
    assert np.all(np.asarray(nn.Dropout(0.0)(jnp.ones(5))) == 1), "p=0 must be the identity (exact)"
    explicit = nn.Dropout(p)(jnp.ones(8), rngs=nnx.Rngs(dropout=2))
    assert explicit.shape == (8,), "rngs passed to the call"
    with pytest.raises(ValueError, match="needs rngs"):
        nn.Dropout(p)(jnp.ones(3))


def test_modes_switch_the_whole_tree():
    model = nn.Sequential(
        nn.Linear(3, 3, rngs=nnx.Rngs(0)),
        nn.ModuleList([nn.Dropout(0.5), nn.BatchNorm1d(3)]),
        nn.ModuleDict({"act": nn.GELU(), "flax_dropout": nnx.Dropout(0.5, rngs=nnx.Rngs(0))}),
    )
    dropout, batch_norm, act, flax_dropout = model[1][0], model[1][1], model[2]["act"], model[2]["flax_dropout"]
    assert model.training and dropout.training and batch_norm.training, "layers start in training mode, as torch's"
    assert model.eval() is model, "eval() returns the module, as torch's"
    assert not (model.training or dropout.training or batch_norm.training or act.training), "eval() reaches every layer"
    assert flax_dropout.deterministic, "eval() also sets flax's deterministic"
    nn.set_training(model, True)
    assert dropout.training and batch_norm.training and not flax_dropout.deterministic, "set_training(model, True)"
    model[1].eval()
    assert not dropout.training and model.training, "eval() on a child leaves the parent"


def test_containers_paths_and_access():
    seq = nn.Sequential(nn.Linear(2, 3, rngs=nnx.Rngs(0)), nn.ReLU(), nn.Linear(3, 1, rngs=nnx.Rngs(1)))
    assert list(variables(seq)) == ["0.bias", "0.weight", "2.bias", "2.weight"], "Sequential paths are torch's"
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU) and len(seq[1:]) == 2, "Sequential indexing"
    named = nn.Sequential({"first": nn.Linear(2, 3, rngs=nnx.Rngs(0)), "act": nn.Tanh()})
    assert list(variables(named)) == ["first.bias", "first.weight"], "Sequential(dict) paths"
    layers = nn.ModuleList([nn.Linear(2, 2, rngs=nnx.Rngs(i)) for i in range(2)]).append(nn.LayerNorm(2))
    assert len(layers) == 3 and isinstance(layers[-1], nn.LayerNorm), "ModuleList append and indexing"
    assert "2.weight" in variables(layers) and "1.bias" in variables(layers), "ModuleList paths are torch's"
    heads = nn.ModuleDict({"b": nn.Linear(2, 1, rngs=nnx.Rngs(0))})
    heads["a"] = nn.Linear(2, 2, rngs=nnx.Rngs(1))
    assert list(heads) == ["b", "a"] and "a" in heads and heads["a"].out_features == 2, "ModuleDict keeps order"
    assert sorted(variables(heads)) == ["a.bias", "a.weight", "b.bias", "b.weight"], "ModuleDict paths"
    x = inputs((4, 2))
    assert_close("Sequential output (exact)", seq(x), seq[2](seq[1](seq[0](x))))
    # the order survives split/merge (NNX sorts attributes by name: "10" before "2")
    deep = nn.Sequential(*[nn.Linear(2, 2, rngs=nnx.Rngs(i)) for i in range(11)])
    merged = nnx.merge(*nnx.split(deep))
    assert_close("Sequential of 11 after split/merge (exact)", merged(x), deep(x))
    with pytest.raises(ValueError, match="reserved"):
        nn.ModuleDict({"training": nn.ReLU()})


# initialisation --------------------------------------------------------------------------------


INIT_CASES = [
    ("Linear", lambda: torch.nn.Linear(40, 60), lambda: nn.Linear(40, 60, rngs=nnx.Rngs(0))),
    (
        "Conv1d",
        lambda: torch.nn.Conv1d(8, 60, 5, groups=2),
        lambda: nn.Conv1d(8, 60, 5, groups=2, rngs=nnx.Rngs(0)),
    ),
    (
        "Embedding",
        lambda: torch.nn.Embedding(400, 50, padding_idx=7),
        lambda: nn.Embedding(400, 50, padding_idx=7, rngs=nnx.Rngs(0)),
    ),
    ("LayerNorm", lambda: torch.nn.LayerNorm((2, 3)), lambda: nn.LayerNorm((2, 3))),
    ("LayerNorm-nobias", lambda: torch.nn.LayerNorm(3, bias=False), lambda: nn.LayerNorm(3, bias=False)),
    ("BatchNorm1d", lambda: torch.nn.BatchNorm1d(4), lambda: nn.BatchNorm1d(4)),
    (
        "BatchNorm1d-noaffine-nostats",
        lambda: torch.nn.BatchNorm1d(4, affine=False, track_running_stats=False),
        lambda: nn.BatchNorm1d(4, affine=False, track_running_stats=False),
    ),
]


@pytest.mark.parametrize("case", INIT_CASES, ids=[c[0] for c in INIT_CASES])
def test_initialisation_names_shapes_and_distributions(case):
    name, make_torch, make_jax = case
    module, layer = make_torch(), make_jax()
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert variables(layer) == expected, f"{name}: variables {variables(layer)} != torch's state_dict {expected}"
    params = {k for k, _ in module.named_parameters()}
    assert set(variables(layer, nnx.Param)) == params, (
        f"{name}: nnx.Param {set(variables(layer, nnx.Param))} != torch's parameters {params}"
    )
    for key, t in module.state_dict().items():
        value, reference = np.asarray(getattr(layer, key)[...]), t.numpy()
        assert value.dtype == reference.dtype, f"{name}.{key}: dtype {value.dtype} != torch's {reference.dtype}"
        if key == "weight" and name in ("Linear", "Conv1d"):
            fan_in = math.prod(t.shape[1:])
            _assert_uniform(f"{name}.weight", value, 1 / math.sqrt(fan_in))
        elif key == "bias" and name in ("Linear", "Conv1d"):
            _assert_uniform(f"{name}.bias", value, 1 / math.sqrt(math.prod(module.weight.shape[1:])), reach=False)
        elif name == "Embedding":
            rows = np.delete(value, 7, axis=0)
            assert np.all(value[7] == 0), "Embedding.weight[padding_idx] must start at 0 (exact)"
            assert abs(rows.mean()) <= INIT_MEAN_ATOL, (
                f"Embedding.weight mean {rows.mean():.3g} (atol {INIT_MEAN_ATOL:.3g})"
            )
            assert abs(rows.std() - 1) <= INIT_STD_ATOL, (
                f"Embedding.weight std {rows.std():.3g} (atol {INIT_STD_ATOL:.3g})"
            )
        else:  # constants: ones, zeros, the count 0
            assert np.array_equal(value, reference), f"{name}.{key}: {value} != torch's {reference} (exact)"


def _assert_uniform(name: str, value: np.ndarray, bound: float, reach: bool = True) -> None:
    assert np.all(np.abs(value) <= bound), f"{name}: max |value| {np.abs(value).max():.6g} > bound {bound:.6g}"
    if reach:
        assert np.abs(value).max() >= INIT_REACH * bound, (
            f"{name}: max |value| {np.abs(value).max():.6g} < {INIT_REACH} * bound {bound:.6g}"
        )


# options torch accepts that jaxseq.nn does not, and options neither accepts ---------------------


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: nn.Conv1d(2, 2, 3, padding_mode="reflect", rngs=nnx.Rngs(0)), "padding_mode 'reflect'"),
        (lambda: nn.Conv1d(2, 2, 3, stride=2, padding="same", rngs=nnx.Rngs(0)), "strided"),
        (lambda: nn.Conv1d(3, 2, 3, groups=2, rngs=nnx.Rngs(0)), "divide by groups"),
        (lambda: nn.Embedding(5, 2, max_norm=1.0, rngs=nnx.Rngs(0)), "max_norm"),
        (lambda: nn.Embedding(5, 2, padding_idx=5, rngs=nnx.Rngs(0)), "padding_idx"),
        (lambda: nn.GELU("sigmoid"), "approximate"),
        (lambda: nn.Dropout(1.5), "between 0 and 1"),
    ],
    ids=[
        "conv-reflect",
        "conv-same-strided",
        "conv-groups",
        "embedding-max-norm",
        "embedding-padding-idx",
        "gelu",
        "dropout-p",
    ],
)
def test_options_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()
