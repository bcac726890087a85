"""jaxseq.fx.from_torch against torch on a zoo of small models: forward, gradients, round trip, errors.

Every model is converted and run once (module-scoped fixture): its outputs and its gradients (of
sum(output * cotangent) over the float outputs, with respect to every parameter) under one jax.jit,
against torch's forward and autograd; two models also run eagerly (op by op). to_torch_state_dict
must load back into a fresh torch module with strict=True, bit-exact. Together the zoo uses every
op of jaxseq.fx's registry (`test_zoo_covers_the_registry`). Float64 unless a case says float32.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn as tnn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from jaxseq import fx
from jaxseq.errors import ConversionError
from parity_tests.helpers import FORWARD_ATOL, GRAD_ATOL, assert_close

# BatchNorm1d's running statistics after training steps of a converted model, float64, absolute.
STATS_ATOL = 1e-13
# Dropout in training mode: fraction of zeros over 4 000 draws within 5 standard errors of p = 0.5.
DROPOUT_FRACTION_ATOL = 5 * np.sqrt(0.25 / 4000)

V = 11  # vocabulary of the token models


# the zoo ---------------------------------------------------------------------------------------


class CharLM(tnn.Module):
    """Embedding -> 2-layer LSTM with dropout between layers -> Linear: the logits."""

    def __init__(self):
        super().__init__()
        self.embed = tnn.Embedding(V, 6)
        self.lstm = tnn.LSTM(6, 8, num_layers=2, dropout=0.25, batch_first=True)
        self.head = tnn.Linear(8, V)

    def forward(self, ids):
        out, _ = self.lstm(self.embed(ids))
        return self.head(out)


class CharLMLoss(CharLM):
    """CharLM returning its cross-entropy loss (padding targets 0 ignored, label smoothing)."""

    def forward(self, ids, targets):
        logits = super().forward(ids)
        return F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=0, label_smoothing=0.1
        )


class Speech(tnn.Module):
    """Conv1d -> ReLU -> bidirectional 2-layer GRU -> LayerNorm -> Linear, on (N, C, L) features."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv1d(4, 6, 3, padding="same")
        self.act = tnn.ReLU()
        self.gru = tnn.GRU(6, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.norm = tnn.LayerNorm(10)
        self.out = tnn.Linear(10, 7)

    def forward(self, feats):
        x = self.act(self.conv(feats)).transpose(1, 2)
        y, _ = self.gru(x)
        return self.out(self.norm(y))


class PaddedClassifier(tnn.Module):
    """Embedding(padding_idx) -> LSTM over pack_padded_sequence -> last valid state and the mean of
    the valid outputs -> Linear -> log_softmax; returns (log-probabilities, nll_loss)."""

    def __init__(self):
        super().__init__()
        self.embed = tnn.Embedding(V, 6, padding_idx=0)
        self.lstm = tnn.LSTM(6, 7, batch_first=True)
        self.head = tnn.Linear(14, 3)

    def forward(self, ids, lengths, labels):
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.lstm(packed)
        out, out_lengths = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))
        pooled = out.sum(dim=1) / out_lengths.float().unsqueeze(1)
        logp = F.log_softmax(self.head(torch.cat([h[-1], pooled], dim=1)), dim=-1)
        return logp, F.nll_loss(logp, labels)


class Projected(tnn.Module):
    """Time-major LSTM with proj_size; dict output holding a tuple and a list."""

    def __init__(self):
        super().__init__()
        self.lstm = tnn.LSTM(5, 6, num_layers=2, proj_size=3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        summary = torch.stack([h[0], h[1]], dim=0).permute(1, 0, 2).flatten(1)
        return {"output": out, "state": (h, c), "summary": [summary, out[-1].tanh()]}


class TiedLM(tnn.Module):
    """Embedding tied to the output layer, used twice: as head.weight and through F.linear; a bare
    nn.Parameter bias; a ReLU RNN started from zeros_like."""

    def __init__(self):
        super().__init__()
        self.embed = tnn.Embedding(V, 6)
        self.rnn = tnn.RNN(6, 6, nonlinearity="relu", batch_first=True)
        self.head = tnn.Linear(6, V, bias=False)
        self.head.weight = self.embed.weight
        self.out_bias = tnn.Parameter(torch.randn(V))

    def forward(self, ids):
        x = self.embed(ids)
        h0 = torch.zeros_like(x[:, 0]).unsqueeze(0)
        y, _ = self.rnn(x, h0)
        return self.head(y) + F.linear(y, self.embed.weight, self.out_bias)


class Block(tnn.Module):
    """A residual feed-forward block: a user module, traced through, with its own parameter."""

    def __init__(self, d):
        super().__init__()
        self.ff = tnn.Sequential(tnn.Linear(d, 2 * d), tnn.GELU(approximate="tanh"), tnn.Linear(2 * d, d))
        self.norm = tnn.LayerNorm(d)
        self.scale = tnn.Parameter(torch.rand(d))

    def forward(self, x):
        return self.norm(x + self.scale * self.ff(x))


class Containers(tnn.Module):
    """ModuleList of user blocks (one also under a second name), ModuleDict of activations,
    Sequential head with Softmax."""

    def __init__(self):
        super().__init__()
        self.blocks = tnn.ModuleList([Block(6), Block(6)])
        self.acts = tnn.ModuleDict({"silu": tnn.SiLU(), "leaky": tnn.LeakyReLU(0.2)})
        self.head = tnn.Sequential(tnn.Linear(6, 4), tnn.Softmax(dim=-1))
        self.first = self.blocks[0]  # one module under two names: both in the state_dict

    def forward(self, x):
        x = self.first(x)
        for block in self.blocks[1:]:
            x = block(x)
        return self.head(self.acts["silu"](x) + self.acts["leaky"](x))


class BatchNormNet(tnn.Module):
    """BatchNorm1d on (N, C) and on (N, C, L), Dropout, Flatten, Identity, Tanh, Sigmoid, GELU, LogSoftmax."""

    def __init__(self, p=0.3):
        super().__init__()
        self.net = tnn.Sequential(tnn.Linear(5, 6), tnn.BatchNorm1d(6), tnn.Tanh(), tnn.Dropout(p))
        self.seq_norm = tnn.BatchNorm1d(3, momentum=0.2)
        self.flat = tnn.Flatten()
        self.keep = tnn.Identity()
        self.gate = tnn.Sigmoid()
        self.act = tnn.GELU()
        self.out = tnn.LogSoftmax(dim=1)

    def forward(self, x, seq):
        return self.out(self.keep(self.net(x))), self.gate(self.flat(self.act(self.seq_norm(seq))))


class Functional(tnn.Module):
    """The functional ops and Tensor methods, one after another."""

    def __init__(self):
        super().__init__()
        self.w = tnn.Parameter(torch.randn(4))
        self.b = tnn.Parameter(torch.randn(4))
        self.table = tnn.Parameter(torch.randn(7, 3))
        self.proj = tnn.Parameter(torch.randn(4, 4))
        self.register_buffer("offset", torch.randn(4))
        self.register_buffer("mask", (torch.rand(4) > 0.3).double(), persistent=False)  # not in the state_dict
        self.half_const = torch.tensor(0.5, dtype=torch.float64)  # a plain tensor attribute: a constant

    def forward(self, x, idx):
        T, D = x.size(1), x.shape[-1]
        padded = F.pad(x, (1, 2))  # (B, T, D + 3)
        picked = torch.gather(padded, 2, idx.long())
        pos = torch.arange(T).to(x.dtype).view(1, T, 1) + torch.arange(0, D, dtype=torch.float64)
        ones = torch.ones_like(x)
        smooth = torch.log(ones + torch.exp(-x.pow(2))) * torch.sigmoid(x) - torch.tanh(x).neg()
        acts = F.gelu(x) + F.silu(x) + F.leaky_relu(x, 0.1) + torch.relu(x - 0.5)
        probs = F.softmax(x @ self.proj, dim=-1)
        values, indices = x.max(dim=-1, keepdim=True)
        peak = torch.max(x) + torch.max(x, torch.zeros_like(x)).sum()
        centred = torch.sub(x, x.mean(dim=(1, 2), keepdim=True), alpha=0.5)
        mixed = torch.add(centred, probs, alpha=2.0) / (1 + ones)
        half = mixed[..., : D // 2]
        gram = torch.bmm(x, x.transpose(1, 2)) + torch.matmul(x, x.permute(0, 2, 1))
        normed = F.layer_norm(x.contiguous(), (D,), self.w, self.b) * self.mask + self.offset * self.half_const
        normed = normed * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)  # a constant made in forward
        looked = F.embedding(idx[:, :, 0], self.table)
        dropped = F.dropout(x.clone(), 0.5, training=self.training)
        steps = torch.div(x, 0.3, rounding_mode="trunc")
        flat = torch.flatten(smooth, 1).unsqueeze(-1).squeeze(-1)
        total = (pos * acts).sum() + peak + gram.mean() + (values * indices.double()).sum()
        return picked, flat, half, normed + dropped, looked, steps, total


class Losses(tnn.Module):
    """Every loss of the registry with each reduction; predictions from Linear layers."""

    def __init__(self):
        super().__init__()
        self.cls = tnn.Linear(4, 5)
        self.reg = tnn.Linear(4, 2)
        self.bin = tnn.Linear(4, 3)
        self.register_buffer("class_weight", torch.rand(5) + 0.5)
        self.register_buffer("pos_weight", torch.rand(3) + 0.5)
        self.criterion = tnn.CrossEntropyLoss(label_smoothing=0.05, reduction="none")

    def forward(self, x, x_seq, classes, seq_classes, probs, reg_target, bin_target, bin_weight):
        logits, reg, binary = self.cls(x), self.reg(x), self.bin(x)
        seq_logits = self.cls(x_seq).permute(0, 2, 1)  # (N, C, d)
        return {
            r: self.losses(
                r, logits, reg, binary, seq_logits, classes, seq_classes, probs, reg_target, bin_target, bin_weight
            )
            for r in ("mean", "sum", "none")
        }

    def losses(
        self, r, logits, reg, binary, seq_logits, classes, seq_classes, probs, reg_target, bin_target, bin_weight
    ):
        return (
            F.mse_loss(reg, reg_target, reduction=r),
            F.l1_loss(reg, reg_target, reduction=r),
            F.smooth_l1_loss(reg, reg_target, reduction=r, beta=0.5),
            F.huber_loss(reg, reg_target, reduction=r, delta=0.7),
            F.cross_entropy(logits, classes, ignore_index=-1, reduction=r),
            F.cross_entropy(
                seq_logits, seq_classes, weight=self.class_weight, ignore_index=1, label_smoothing=0.2, reduction=r
            ),
            F.cross_entropy(logits, probs, label_smoothing=0.1, reduction=r),
            F.cross_entropy(logits, probs, weight=self.class_weight, reduction=r),
            F.nll_loss(F.log_softmax(logits, 1), classes, weight=self.class_weight, ignore_index=-1, reduction=r),
            F.binary_cross_entropy_with_logits(binary, bin_target, pos_weight=self.pos_weight, reduction=r),
            F.binary_cross_entropy_with_logits(binary, bin_target, weight=bin_weight, reduction=r),
            self.criterion(logits, seq_classes[:, 0]),
        )


class MyGRU(tnn.GRU):
    """A user subclass that keeps torch's forward: converted as a torch.nn.GRU."""


class TimeMajorGRU(tnn.Module):
    """GRU with batch_first=False, a given h_0, and the same GRU on one unbatched sequence."""

    def __init__(self):
        super().__init__()
        self.gru = MyGRU(3, 4)

    def forward(self, x, h0):
        out, h = self.gru(x, h0)
        single, _ = self.gru(x[:, 0])
        return out, h, single


# inputs ------------------------------------------------------------------------------------------


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ints(high, *shape, seed=0, low=0):
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))


def _loss_inputs():
    classes = torch.tensor([0, 3, -1, 4, 2])
    seq_classes = torch.tensor([[1, 2, 0], [4, 1, 3], [2, 2, 1], [0, 1, 4], [3, 3, 3]])
    probs = torch.softmax(_randn(5, 5, seed=3), dim=1)
    bin_target = (_randn(5, 3, seed=4) > 0).double()
    return (
        _randn(5, 4),
        _randn(5, 3, 4, seed=1),
        classes,
        seq_classes,
        probs,
        _randn(5, 2, seed=2),
        bin_target,
        torch.rand(5, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
    )


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], tnn.Module]
    inputs: Callable[[], tuple]
    dtype: str = "float64"

    def __str__(self):
        return self.name


def _lm_inputs():
    return (torch.tensor([[1, 4, 2, 9, 3], [5, 5, 10, 1, 0]]),)


ZOO = [
    Case("char-lm", CharLM, _lm_inputs),
    Case("char-lm-float32", CharLM, _lm_inputs, "float32"),
    Case("char-lm-loss", CharLMLoss, lambda: (*_lm_inputs(), torch.tensor([[4, 2, 9, 3, 0], [5, 10, 1, 0, 0]]))),
    Case("speech", Speech, lambda: (_randn(2, 4, 6),)),
    Case(
        "padded-classifier",
        PaddedClassifier,
        lambda: (
            torch.tensor([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2], [5, 0, 0, 0, 0]]),
            torch.tensor([3, 5, 1]),
            torch.tensor([2, 0, 1]),
        ),
    ),
    Case("projected-time-major", Projected, lambda: (_randn(4, 2, 5),)),
    Case("tied-lm", TiedLM, _lm_inputs),
    Case("containers", Containers, lambda: (_randn(3, 2, 6),)),
    Case("batch-norm", BatchNormNet, lambda: (_randn(4, 5), _randn(4, 3, 2, seed=1))),
    Case("functional", Functional, lambda: (_randn(2, 3, 4), _ints(7, 2, 3, 2, seed=1))),
    Case("time-major-gru", TimeMajorGRU, lambda: (_randn(5, 2, 3), _randn(1, 2, 4, seed=1))),
    Case("losses", Losses, _loss_inputs),
]


def _torch_model(case: Case) -> tnn.Module:
    torch.manual_seed(0)
    model = case.make().to(getattr(torch, case.dtype)).eval()
    if isinstance(model, BatchNormNet):  # running statistics and affine parameters off their defaults
        for bn in (model.net[1], model.seq_norm):
            with torch.no_grad():
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.uniform_(0.5, 2)
                bn.bias.uniform_(-1, 1)
    return model


def _inputs(case: Case):
    cast = getattr(torch, case.dtype)
    return tuple(t.to(cast) if t.is_floating_point() else t for t in case.inputs())


@dataclasses.dataclass
class Run:
    """A zoo model converted and run once in both frameworks: outputs and parameter gradients."""

    case: Case
    model: tnn.Module
    jax_model: fx.TracedModule
    expected: list  # [(name, torch output as NumPy)]
    actual: list  # [(name, JAX output)]
    grads_expected: dict  # {torch parameter name: gradient}
    grads_actual: dict


@pytest.fixture(scope="module", params=ZOO, ids=str)
def run(request) -> Run:
    """Outputs and gradients of sum(output * cotangent) over the float outputs: torch's autograd,
    and JAX's value_and_grad under one jax.jit (outputs as its aux), with respect to every parameter."""
    case = request.param
    model = _torch_model(case)
    jax_model = fx.from_torch(model)
    xs = _inputs(case)
    out = leaves(model(*xs))
    rng = np.random.default_rng(2)
    cotangents = [
        rng.standard_normal(tuple(v.shape)).astype(case.dtype) if v.is_floating_point() else None for _, v in out
    ]
    scalar_t = sum((v * torch.tensor(c)).sum() for (_, v), c in zip(out, cotangents, strict=True) if c is not None)
    named = dict(model.named_parameters())
    grads_t = torch.autograd.grad(scalar_t, list(named.values()), allow_unused=True)
    grads_expected = {
        key: np.zeros(p.shape, case.dtype) if g is None else g.numpy()
        for (key, p), g in zip(named.items(), grads_t, strict=True)
    }

    graphdef, params, rest = nnx.split(jax_model, nnx.Param, ...)

    @jax.jit
    def outputs_and_grads(params, rest, xs):
        def scalar(params):
            out = nnx.merge(graphdef, params, rest)(*xs)
            total = sum(jnp.sum(v * c) for (_, v), c in zip(leaves(out), cotangents, strict=True) if c is not None)
            return total, out

        (_, out), grads = jax.value_and_grad(scalar, has_aux=True)(params)
        return out, grads

    jax_out, grads = outputs_and_grads(params, rest, tuple(x.numpy() for x in xs))
    grad_model = nnx.merge(graphdef, grads, rest)
    grads_actual = {key: fx._walk(grad_model, key)[...] for key in named}
    expected = [(name, v.detach().numpy()) for name, v in out]
    return Run(case, model, jax_model, expected, leaves(jax_out), grads_expected, grads_actual)


def leaves(tree, name="output"):
    """[(name, leaf)] of a nested output (tuples, lists, dicts), in order."""
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in leaves(value, f"{name}[{key!r}]")]
    if isinstance(tree, tuple | list):
        return [leaf for i, value in enumerate(tree) for leaf in leaves(value, f"{name}[{i}]")]
    return [(name, tree)]


def assert_outputs_close(case: Case, actual: list, expected: list, atol: float, how: str) -> None:
    """Output leaves by name (a dict's keys come back sorted from jax.jit, as JAX's pytrees have them)."""
    actual, expected = sorted(actual, key=lambda leaf: leaf[0]), sorted(expected, key=lambda leaf: leaf[0])
    assert [n for n, _ in actual] == [n for n, _ in expected], f"{case}: output structure {actual} != torch's"
    for (name, a), (_, e) in zip(actual, expected, strict=True):
        assert_close(f"{case} {how} {name} (atol {atol:g})", a, e, atol=atol)
        if not np.issubdtype(e.dtype, np.floating):
            assert np.issubdtype(np.asarray(a).dtype, np.integer), f"{case} {name}: integer output became {a.dtype}"


# parity ------------------------------------------------------------------------------------------


def test_forward_matches_torch(run):
    assert_outputs_close(run.case, run.actual, run.expected, FORWARD_ATOL[run.case.dtype], "jit")


def test_gradients_match_torch(run):
    atol = GRAD_ATOL[run.case.dtype]
    assert sorted(run.grads_actual) == sorted(run.grads_expected), f"{run.case}: parameters differ"
    for key, expected in run.grads_expected.items():
        assert_close(f"{run.case} d/d{key} (atol {atol:g})", run.grads_actual[key], expected, atol=atol)


@pytest.mark.parametrize("case", [c for c in ZOO if c.name in ("char-lm", "padded-classifier")], ids=str)
def test_eager_forward_matches_torch(case):
    """The same without jit: the graph run op by op."""
    model = _torch_model(case)
    xs = _inputs(case)
    with torch.no_grad():
        expected = [(name, v.numpy()) for name, v in leaves(model(*xs))]
    actual = leaves(fx.from_torch(model)(*(x.numpy() for x in xs)))
    assert_outputs_close(case, actual, expected, FORWARD_ATOL[case.dtype], "eager")


def test_state_dict_round_trip_and_names(run):
    """to_torch_state_dict loads into a fresh model with strict=True and gives back every tensor
    bit-exact; the NNX parameter paths are torch's names; conversion left the torch model as it was."""
    case, model, jax_model = run.case, run.model, run.jax_model
    assert not any(m.training for m in model.modules()), f"{case}: from_torch changed the torch model's mode"
    assert not [k for k in vars(model) if k.startswith("_tensor_constant")], f"{case}: torch.fx's constants left behind"
    state = fx.to_torch_state_dict(jax_model)
    reference = model.state_dict()
    assert list(state) == list(reference), f"{case}: keys {list(state)} != torch's {list(reference)}"
    torch.manual_seed(1)
    fresh = case.make().to(getattr(torch, case.dtype))
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    for key, t in fresh.state_dict().items():
        assert t.dtype == reference[key].dtype and torch.equal(t, reference[key]), f"{case} {key}: not bit-exact"
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(jax_model, nnx.Param))}
    named = {k for k, _ in model.named_parameters()}
    if len(named) < len(list(model.named_parameters(remove_duplicate=False))):  # shared: one variable,
        assert paths <= set(reference) and len(paths) == len(named), f"{case}: NNX paths {paths} vs torch {named}"
    else:  # under one of torch's names for it
        assert paths == named, f"{case}: NNX parameter paths {sorted(paths)} != torch's {sorted(named)}"


def test_zoo_covers_the_registry():
    used = set()
    for case in ZOO:
        programs = fx.from_torch(_torch_model(case)).fx_programs
        used |= {ins.target for program in programs for ins in program if isinstance(ins.target, fx.Op)}
    missing = [op.name for op in fx.OPS if op not in used]
    assert not missing, f"registry ops no zoo model uses: {missing}"


def test_jit_forward_and_integer_inputs():
    """nnx.jit of the converted model; tied weights are one variable; arguments by name, missing, extra."""
    atol = FORWARD_ATOL["float64"]
    model = _torch_model(ZOO[6])  # tied-lm
    jax_model = fx.from_torch(model)
    (ids,) = _lm_inputs()
    out = nnx.jit(lambda m, ids: m(ids))(jax_model, ids.numpy())
    assert_close(f"tied-lm jit output (atol {atol:g})", out, model(ids).detach().numpy(), atol=atol)
    assert jax_model.head.weight is jax_model.embed.weight, "tied weights: one nnx.Param"
    by_name = jax_model(ids=ids.numpy())
    assert_close(f"tied-lm called with ids= (atol {atol:g})", by_name, model(ids).detach().numpy(), atol=atol)
    with pytest.raises(TypeError, match="missing argument 'ids'"):
        jax_model()
    with pytest.raises(TypeError, match="unexpected arguments"):
        jax_model(ids.numpy(), ids.numpy())


# training mode -------------------------------------------------------------------------------


def test_batch_norm_training_mode_steps():
    """Three training steps of the converted model under nnx.jit: outputs, gradients, running statistics."""
    atol, grad_atol = FORWARD_ATOL["float64"], GRAD_ATOL["float64"]
    torch.manual_seed(0)
    model = BatchNormNet(p=0.0).double().train()
    jax_model = fx.from_torch(model)
    assert jax_model.training and jax_model.net[1].training, "the torch module's mode carries over"

    @nnx.jit
    def step(m, x, seq):
        def loss(m):
            a, b = m(x, seq)
            return jnp.sum(a) + jnp.sum(b**2)

        return nnx.value_and_grad(loss)(m)

    for i in range(3):
        x, seq = _randn(4, 5, seed=10 + i), _randn(4, 3, 2, seed=20 + i)
        model.zero_grad()
        a, b = model(x, seq)
        loss_t = a.sum() + (b**2).sum()
        loss_t.backward()
        loss, grads = step(jax_model, x.numpy(), seq.numpy())
        assert_close(f"step {i} loss (atol {atol:g})", loss, loss_t.item(), atol=atol)
        for key, p in model.named_parameters():
            assert_close(
                f"step {i} d/d{key} (atol {grad_atol:g})", fx._walk(grads, key)[...], p.grad.numpy(), atol=grad_atol
            )
        state = fx.to_torch_state_dict(jax_model)
        for key, t in model.state_dict().items():
            assert_close(f"step {i} {key} (atol {STATS_ATOL:g})", state[key], t.numpy(), atol=STATS_ATOL)


class Dropouts(tnn.Module):
    def __init__(self):
        super().__init__()
        self.drop = tnn.Dropout(0.5)

    def forward(self, x):
        return self.drop(x), F.dropout(x, 0.5, training=self.training)


def test_dropout_follows_the_mode():
    """Eval: the identity, exactly. Train: zeros at rate p, the rest scaled by 2 (not torch's draws)."""
    x = np.ones(4000)
    jax_model = fx.from_torch(Dropouts().eval())
    for name, y in zip(("nn.Dropout", "F.dropout"), jax_model(x), strict=True):
        assert np.array_equal(np.asarray(y), x), f"{name} in eval mode: must be the identity (exact)"
    jax_model.train()
    for name, y in zip(("nn.Dropout", "F.dropout"), jax_model(x), strict=True):
        y = np.asarray(y)
        assert set(np.unique(y)) <= {0.0, 2.0}, f"{name} in train mode: values {np.unique(y)} not in {{0, 2}} (exact)"
        assert abs(np.mean(y == 0) - 0.5) <= DROPOUT_FRACTION_ATOL, (
            f"{name}: zero fraction {np.mean(y == 0)} (atol {DROPOUT_FRACTION_ATOL:.3g})"
        )
    first, second = jax_model(x)
    assert not np.array_equal(np.asarray(first), np.asarray(second)), "the two dropouts draw different masks"
    jax_model.eval()
    assert np.array_equal(np.asarray(jax_model(x)[1]), x), "eval() again: the identity"


def test_recurrent_dropout_in_training_mode():
    """An LSTM's dropout between layers runs in training mode, and not in eval mode."""
    model = _torch_model(ZOO[0])
    jax_model = fx.from_torch(model)
    (ids,) = _lm_inputs()
    eval_out = np.asarray(jax_model(ids.numpy()))
    jax_model.train()
    train_out = np.asarray(jax_model(ids.numpy()))
    assert np.all(np.isfinite(train_out)) and not np.allclose(train_out, eval_out), "train mode must drop"
    jax_model.eval()
    assert np.array_equal(np.asarray(jax_model(ids.numpy())), eval_out), "eval mode again: the same output (exact)"


# errors ------------------------------------------------------------------------------------------


class CumsumFunction(tnn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


class CumsumMethod(tnn.Module):
    def forward(self, x):
        return x.cumsum(1) * 2


class ReflectPad(tnn.Module):
    def forward(self, x):
        return F.pad(x, (1, 1), mode="reflect")


class WeightedMSE(tnn.Module):
    def forward(self, x, y, w):
        return F.mse_loss(x, y, weight=w)


@pytest.mark.parametrize(
    "module,op,node,line",
    [
        (CumsumFunction(), "torch.cumsum", "cumsum", "return torch.cumsum(x, 1)"),
        (CumsumMethod(), "Tensor.cumsum", "cumsum", "return x.cumsum(1) * 2"),
        (ReflectPad(), "mode='reflect'", "pad", 'return F.pad(x, (1, 1), mode="reflect")'),
        (WeightedMSE(), "weight=the tensor w", "mse_loss", "return F.mse_loss(x, y, weight=w)"),
    ],
    ids=["function", "method", "option", "tensor-option"],
)
def test_unsupported_op_names_op_node_and_line(module, op, node, line):
    with pytest.raises(ConversionError) as error:
        fx.from_torch(module)
    message = str(error.value)
    assert op in message and f"graph node {node!r}" in message, message
    assert re.search(r"test_fx\.py, line \d+, in forward: " + re.escape(line), message), message
    assert "by hand" in message, message


class Encoder(tnn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


class WithEncoder(tnn.Module):
    def __init__(self, layer):
        super().__init__()
        self.encoder = Encoder(layer)

    def forward(self, x):
        return self.encoder(x) + 1


@pytest.mark.parametrize(
    "layer,name",
    [
        (tnn.Conv2d(1, 1, 1), "torch.nn.Conv2d"),
        (tnn.TransformerEncoderLayer(4, 1, dim_feedforward=8), "torch.nn.TransformerEncoderLayer"),
    ],
    ids=["Conv2d", "TransformerEncoderLayer"],
)
def test_unsupported_layer_named_with_its_path(layer, name):
    with pytest.raises(ConversionError, match=rf"{re.escape(name)} at 'encoder.layer' is not supported"):
        fx.from_torch(WithEncoder(layer))


@pytest.mark.parametrize(
    "layer,message",
    [
        (tnn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"), "Conv1d at 'encoder.layer': .*padding_mode 'reflect'"),
        (tnn.Embedding(5, 2, max_norm=1.0), "Embedding at 'encoder.layer': .*max_norm"),
    ],
    ids=["conv-reflect", "embedding-max-norm"],
)
def test_unsupported_layer_option_named_with_its_path(layer, message):
    with pytest.raises(ConversionError, match=message):
        fx.from_torch(WithEncoder(layer))


class UnusedConv2d(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 2, 3)  # not supported, but never called: kept for the state_dict
        self.lin = tnn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x)


def test_unused_unsupported_layer_is_kept():
    model = UnusedConv2d().double()
    state = fx.to_torch_state_dict(fx.from_torch(model))
    UnusedConv2d().double().load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    assert np.array_equal(state["conv.weight"], model.conv.weight.detach().numpy()), "conv.weight: not bit-exact"


class Branchy(tnn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


def test_untraceable_forward_is_one_clear_error():
    line = r"test_fx\.py, line \d+, in forward: if x.sum\(\) > 0:"
    with pytest.raises(
        ConversionError, match=rf"torch.fx cannot trace Branchy\.forward \(eval mode\) at .*{line}.*control flow"
    ):
        fx.from_torch(Branchy())


def test_not_a_module_and_low_precision_rejected():
    with pytest.raises(ConversionError, match="expects a torch.nn.Module"):
        fx.from_torch(lambda x: x)
    with pytest.raises(ConversionError, match="float16 is not supported"):
        fx.from_torch(tnn.Sequential(tnn.Linear(2, 2)).half())
