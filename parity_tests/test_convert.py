"""The conversion rules: exact round trips, and a named error for every malformed state_dict."""

import numpy as np
import pytest
import torch

import jaxseq
import torchseq
from jaxseq.port.convert import Architecture, ConversionError, check_state_dict, model_shapes
from jaxseq.port.weights import load_weights, save_weights
from parity_tests.helpers import torch_state_dict_numpy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", [1, 100])
@pytest.mark.parametrize("source", ["module", "tensors", "numpy"])
def test_round_trip_is_exact(dtype, hidden, source):
    t_model = torchseq.build_model(hidden, seed=4, dtype=dtype)
    state = {"module": t_model, "tensors": t_model.state_dict(), "numpy": torch_state_dict_numpy(t_model)}[source]
    back = jaxseq.to_torch_state_dict(jaxseq.from_torch(state))
    expected = torch_state_dict_numpy(t_model)
    assert list(back) == list(expected), "keys or their order differ from PyTorch's state_dict"
    for key in expected:
        assert back[key].dtype == expected[key].dtype, f"{key}: dtype {back[key].dtype} != {expected[key].dtype}"
        assert np.array_equal(back[key], expected[key]), f"{key}: round trip is not bit-exact"
    reloaded = torchseq.Model(jaxseq.Architecture(hidden_size=hidden)).to(getattr(torch, dtype))
    reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_head_keeps_torch_layout():
    """jaxseq.nn.Linear stores nn.Linear's (out, in) weight: no rule transposes anything."""
    t_model = torchseq.build_model(5, seed=0)
    j_model = jaxseq.from_torch(t_model)
    assert j_model.linear.weight[...].shape == (1, 5), "linear.weight must keep torch's (out, in) = (1, 5)"
    np.testing.assert_array_equal(np.asarray(j_model.linear.weight[...]), t_model.linear.weight.detach().numpy())


def test_from_torch_copies():
    """Updating the torch model afterwards (optimizers work in place) must not change the jaxseq model."""
    t_model = torchseq.build_model(4, seed=0)
    j_model = jaxseq.from_torch(t_model)
    before = np.asarray(j_model.lstm.weight_hh_l0[...]).copy()
    with torch.no_grad():
        t_model.lstm.weight_hh_l0.add_(1.0)
    np.testing.assert_array_equal(np.asarray(j_model.lstm.weight_hh_l0[...]), before)


def good_state_dict(hidden=6):
    return torch_state_dict_numpy(torchseq.build_model(hidden, seed=0))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda sd: sd.pop("lstm.bias_hh_l0"), "missing key 'lstm.bias_hh_l0'"),
        (lambda sd: sd.__setitem__("lstm.weight_hr_l0", np.zeros((2, 6))), "unexpected key 'lstm.weight_hr_l0'"),
        (
            lambda sd: sd.__setitem__("lstm.weight_ih_l1", np.zeros((24, 6))),
            "missing key 'lstm.weight_hh_l1', which the lstm model of 2 layers has",
        ),
        (
            lambda sd: sd.__setitem__("gru.weight_ih_l0", np.zeros((18, 1))),
            r"more than one recurrent layer \(lstm, gru\)",
        ),
        (
            lambda sd: sd.__setitem__("lstm.bias_ih_l0", np.zeros(7)),
            r"lstm.bias_ih_l0: expected shape \(24,\).*got \(7,\)",
        ),
        (
            lambda sd: sd.__setitem__("linear.weight", np.zeros((6, 1))),
            r"linear.weight: expected shape \(1, 6\).*got \(6, 1\)",
        ),
        (lambda sd: sd.__setitem__("lstm.weight_hh_l0", np.zeros((24, 5))), r"lstm.weight_\w+_l0: expected shape"),
        (lambda sd: sd.__setitem__("lstm.weight_ih_l0", np.zeros(24)), "lstm.weight_ih_l0: expected a 2-d tensor"),
        (lambda sd: sd.__setitem__("linear.bias", np.zeros(1, np.float32)), "all be float32 or all float64"),
        (lambda sd: sd.__setitem__("linear.bias", np.zeros(1, np.int64)), "all be float32 or all float64"),
    ],
    ids=[
        *("missing", "extra", "half_layer", "two_cells", "bias_shape"),
        *("transposed_head", "hidden_mismatch", "rank", "mixed_dtype", "int"),
    ],
)
def test_malformed_state_dict_is_named(mutate, message):
    state_dict = good_state_dict()
    mutate(state_dict)
    with pytest.raises(ConversionError, match=message):
        jaxseq.from_torch(state_dict)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one_way", "bidirectional"])
def test_rules_cover_torchseq_exactly(cell, layers, bidirectional):
    arch = Architecture(cell, 2, 9, 3, layers, bidirectional)
    t_model = torchseq.build_model(9, 0, "float64", 2, 3, cell=cell, layers=layers, bidirectional=bidirectional)
    expected = {k: tuple(v.shape) for k, v in t_model.state_dict().items()}
    assert model_shapes(arch) == expected and list(model_shapes(arch)) == list(expected), "rules out of step with torch"
    assert check_state_dict(torch_state_dict_numpy(t_model)) == arch


def test_weights_file_round_trip(tmp_path):
    t_model = torchseq.build_model(7, seed=5)
    save_weights(jaxseq.from_torch(t_model), tmp_path / "weights.safetensors")
    back = jaxseq.to_torch_state_dict(load_weights(tmp_path))  # a run directory is accepted too
    for key, value in torch_state_dict_numpy(t_model).items():
        assert np.array_equal(back[key], value), f"{key}: safetensors round trip is not exact"


@pytest.mark.parametrize("content,message", [(None, "no such weights file"), (b"\x00garbage", "not a readable")])
def test_bad_weights_file(tmp_path, content, message):
    path = tmp_path / "weights.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConversionError, match=message):
        load_weights(path)
