"""jaxseq.port: torch.export's graph run with jax.numpy, against torch, forward and gradient (float64).

Each test names the tensor and the tolerance it holds it to. The op table itself is tested
against torch's OpInfo samples in test_opinfo.py; whole models in test_corpus.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jaxseq
from jaxseq.errors import ConversionError
from jaxseq.port.module import ExportedModule, Frozen, to_torch_state_dict

FORWARD, GRADIENT = 1e-12, 1e-10  # float64: rounding only


def grads_both(model, inputs, reduce=lambda out: out.sum()):
    """({name: torch gradient}, {name: JAX gradient}, torch output, JAX output) of reduce(model(*inputs))."""
    converted = jaxseq.from_torch(model, *inputs)
    graphdef, params, rest = nnx.split(converted, nnx.Param, ...)
    arrays = [x.numpy() for x in inputs]

    def objective(params):
        out = nnx.merge(graphdef, params, rest, copy=True)(*arrays)
        return reduce(out), out

    (_, j_out), j_grads = jax.value_and_grad(objective, has_aux=True)(params)
    model.zero_grad()
    t_out = model(*inputs)
    reduce(t_out).backward()
    flat = {".".join(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(j_grads)}
    t_grads = {name: p.grad.numpy() for name, p in model.named_parameters() if p.grad is not None}
    return t_grads, flat, t_out, j_out


def assert_close(name, actual, expected, tol):
    diff = float(np.max(np.abs(np.asarray(actual) - np.asarray(expected)), initial=0.0))
    assert diff <= tol, f"{name}: max |jax - torch| = {diff:.3g} > {tol:g}"


class Everyday(nn.Module):
    """torch.zeros initial states, an LSTMCell, BatchNorm in training mode, no_grad, detach, a mask."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.cell = nn.LSTMCell(3, 10)
        self.bn = nn.BatchNorm1d(10)
        self.head = nn.Linear(10, 2)

    def forward(self, x):
        h0 = torch.zeros(4, x.size(0), 5, dtype=x.dtype)
        out, _ = self.lstm(x, (h0, h0))
        h, _ = self.cell(x[:, 0])
        y = self.bn(out[:, -1] + h)
        with torch.no_grad():
            scale = y.abs().mean() * 2
        y = y.masked_fill(y > 1.5, 0.0).clamp(-2, 2)
        return self.head(y * scale + y.detach() + torch.where(y > 0, y, 0.1 * y).cumsum(-1))


@pytest.fixture(scope="module")
def everyday():
    torch.manual_seed(0)
    return Everyday().double().train(), (torch.randn(4, 6, 3, dtype=torch.float64),)


def test_everyday_forward_and_gradients(everyday):
    model, inputs = everyday
    t_grads, j_grads, t_out, j_out = grads_both(model, inputs)
    assert_close("output", j_out, t_out.detach().numpy(), FORWARD)
    for name, grad in t_grads.items():
        assert_close(f"gradient of {name}", j_grads[name], grad, GRADIENT)


def test_detach_and_no_grad_stop_gradients():
    """Where identity would be wrong: the gradient through detach() / no_grad is zero."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.5], dtype=torch.float64))

        def forward(self, x):
            with torch.no_grad():
                a = x * self.w
            return (a * self.w + (x * self.w).detach() * self.w).sum()

    t_grads, j_grads, _, _ = grads_both(M(), (torch.ones(3, dtype=torch.float64),), reduce=lambda out: out)
    assert_close("gradient of w", j_grads["w"], t_grads["w"], GRADIENT)


def test_batch_norm_running_statistics_update(everyday):
    model, inputs = everyday
    converted = jaxseq.from_torch(model, *inputs)
    before = model.bn.running_mean.clone()
    model(*inputs)
    converted(inputs[0].numpy())
    assert not torch.equal(before, model.bn.running_mean)
    assert_close("bn.running_mean", converted.bn.running_mean[...], model.bn.running_mean.numpy(), FORWARD)
    assert_close("bn.running_var", converted.bn.running_var[...], model.bn.running_var.numpy(), FORWARD)


def test_recurrent_layers_stay_whole(everyday):
    model, inputs = everyday
    program = jaxseq.from_torch(model, *inputs).port.programs[0]
    targets = [node.target for node in program.nodes]
    assert "aten.lstm.input" in targets and "aten.lstm_cell.default" in targets
    assert not any(t.startswith("aten.sigmoid") for t in targets), "an LSTM was unrolled into its gates"


def test_new_batch_size_reuses_the_program_new_rank_exports_again(everyday):
    model, inputs = everyday
    converted = jaxseq.from_torch(model.eval(), *inputs)
    converted(np.zeros((7, 6, 3)))  # another batch: the batch dimension is dynamic
    assert len(converted.port.programs) == 1
    converted.train()
    converted(np.zeros((7, 6, 3)))  # the other mode: exported again
    assert len(converted.port.programs) == 2
    model.train()


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True, bidirectional=True)

    def forward(self, x, lengths):
        out, h = self.gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out.sum() + h.sum()


def test_packed_sequences():
    torch.manual_seed(0)
    inputs = (torch.randn(3, 5, 3, dtype=torch.float64), torch.tensor([5, 2, 3]))
    t_grads, j_grads, t_out, j_out = grads_both(Packed().double(), inputs, reduce=lambda out: out)
    assert_close("output", j_out, t_out.detach().numpy(), FORWARD)
    for name, grad in t_grads.items():
        assert_close(f"gradient of {name}", j_grads[name], grad, GRADIENT)


def test_tied_weights_and_frozen_parameters_round_trip():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(7, 4)
            self.out = nn.Linear(4, 7)
            self.out.weight = self.embed.weight
            self.scale = nn.Parameter(torch.ones(4, dtype=torch.float64), requires_grad=False)

        def forward(self, ids):
            return self.out(self.embed(ids) * self.scale)

    model = LM().double()
    converted = jaxseq.from_torch(model, torch.tensor([[1, 2, 3]]))
    assert converted.out.weight is converted.embed.weight
    assert isinstance(converted.scale, Frozen)
    state = to_torch_state_dict(converted)
    assert list(state) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert np.array_equal(state[key], value.numpy()), key


def test_bare_recurrent_layer_keeps_its_class():
    assert isinstance(jaxseq.from_torch(nn.LSTM(2, 3)), jaxseq.LSTM)
    assert isinstance(jaxseq.from_torch(nn.GRU(2, 3)), jaxseq.GRU)


def test_plain_jax_split_of_a_converted_model(everyday):
    """The README's plain-JAX snippet: params are the nnx.Param; everything else rides along."""
    model, inputs = everyday
    converted = jaxseq.from_torch(model, *inputs)
    assert isinstance(converted, ExportedModule)
    graphdef, params, rest = nnx.split(converted, nnx.Param, ...)
    value = jax.grad(lambda p: nnx.merge(graphdef, p, rest, copy=True)(inputs[0].numpy()).sum())(params)
    assert jax.tree.leaves(value)


def test_every_missing_op_is_listed_with_its_line():
    class Odd(nn.Module):
        def forward(self, x):
            a = torch.special.bessel_j0(x)
            return torch.special.bessel_j1(a) + torch.linalg.matrix_exp(x)

    with pytest.raises(ConversionError) as error:
        jaxseq.from_torch(Odd(), torch.ones(2, 2, dtype=torch.float64))
    message = str(error.value)
    assert "3 ops not in jaxseq's op table" in message, message
    for op in ("special_bessel_j0", "special_bessel_j1", "linalg_matrix_exp"):
        assert op in message, f"{op} missing from: {message}"
    assert "test_port.py:" in message, message


def test_values_leaving_the_graph_are_refused_with_the_rewrite():
    class Lengths(nn.Module):
        def forward(self, x, lengths):
            return x[:, : int(lengths.numpy().max())].sum()

    with pytest.raises(ConversionError, match=r"cannot capture forward.*keep the values a tensor"):
        jaxseq.from_torch(Lengths(), torch.ones(2, 3), torch.tensor([1, 2]))


def test_creation_ops_follow_the_default_dtype():
    class Zeros(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2) + torch.ones(2)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = jaxseq.from_torch(Zeros(), torch.ones(3, 1))(np.ones((3, 1)))
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == jnp.float64


def test_loss_modules_convert_like_models():
    loss = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)

    class Wrapped(nn.Module):
        def forward(self, logits, target):
            return loss(logits, target)

    torch.manual_seed(0)
    logits, target = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0])
    out = jaxseq.from_torch(Wrapped(), logits, target)(logits.numpy(), target.numpy())
    assert_close("loss", out, loss(logits, target).item(), FORWARD)


def test_transformer_encoder_with_a_causal_mask():
    """nn.TransformerEncoder looks at the mask's values to decide whether it is causal; export
    takes the hint instead, and the attention is the same."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).double()

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            mask = nn.Transformer.generate_square_subsequent_mask(x.size(1), dtype=x.dtype)
            return self.encoder(x, mask=mask)

    inputs = (torch.randn(3, 5, 8, dtype=torch.float64),)
    t_grads, j_grads, t_out, j_out = grads_both(Causal(), inputs)
    assert_close("output", j_out, t_out.detach().numpy(), FORWARD)
    for name, grad in t_grads.items():
        assert_close(f"gradient of {name}", j_grads[name], grad, GRADIENT)


def test_data_is_detach():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([1.5], dtype=torch.float64))

        def forward(self, x):
            return (x * self.w + (x * self.w).data * self.w).sum()

    t_grads, j_grads, _, _ = grads_both(M(), (torch.ones(3, dtype=torch.float64),), reduce=lambda out: out)
    assert_close("gradient of w", j_grads["w"], t_grads["w"], GRADIENT)
    assert "data" not in torch.Tensor.__dict__, "Tensor.data left patched after export"


def test_buffer_reassigned_in_training_mode():
    """`self.running = ...` in forward (a masked BatchNorm's way): a buffer mutation in JAX too, and
    the torch module keeps real tensors (no tracing objects left in it)."""

    class Running(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("running", torch.zeros(3, dtype=torch.float64))
            self.lin = nn.Linear(3, 3).double()

        def forward(self, x):
            if self.training:
                self.running = self.running * 0.9 + 0.1 * x.mean(0)
            return self.lin(x - self.running)

    model, x = Running(), torch.randn(4, 3, dtype=torch.float64)
    converted = jaxseq.from_torch(model, x)
    assert type(model.running) is torch.Tensor and not model.running.any()
    out = converted(x.numpy())
    assert_close("output", out, model(x).detach().numpy(), FORWARD)
    assert_close("running", converted.running[...], model.running.numpy(), FORWARD)
