"""Weight files across frameworks: export, --init-from and predict, in both directions."""

import shutil

import numpy as np
import pytest
import torch

from jaxseq.app import cli as jaxseq_cli
from jaxseq.port.weights import read_weights_file
from parity_tests.helpers import FORWARD_ATOL, MAINS, assert_close

QUICK = ["--steps", "40", "--hidden", "12", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short run of each framework; their directories."""
    root = tmp_path_factory.mktemp("runs")
    for prog, main in MAINS.items():
        assert main(["train", *QUICK, "--out", str(root / prog)]) == 0
    return root


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_export_keeps_every_tensor(runs, tmp_path, fmt):
    to = tmp_path / f"w.{fmt}"
    assert jaxseq_cli.main(["export", str(runs / "jaxseq"), "--format", fmt, "--to", str(to)]) == 0
    exported, original = read_weights_file(to), read_weights_file(runs / "jaxseq")
    assert list(exported) == list(original)
    for key in original:
        assert np.array_equal(exported[key], original[key]), f"{key} changed on export to {fmt}"
    if fmt == "pt":  # a plain torch state_dict
        state_dict = torch.load(to, weights_only=True)
        assert isinstance(state_dict["lstm.weight_hh_l0"], torch.Tensor)


CHECKPOINTS = {"jaxseq": "checkpoint.npz", "torchseq": "checkpoint.pt"}


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("trained_by", ["jaxseq", "torchseq"])
def test_directory_holding_only_a_checkpoint(runs, tmp_path, prog, trained_by):
    """`predict --weights DIR` and `export DIR` read the weights of a run directory holding only its
    checkpoint (a diverged run's, an exported run's): the very weights of the run's weights file."""
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(runs / trained_by / CHECKPOINTS[trained_by], only)
    full, from_checkpoint = tmp_path / "full.csv", tmp_path / "checkpoint.csv"
    assert MAINS[prog](["predict", "--weights", str(runs / trained_by), "--out", str(full)]) == 0
    assert MAINS[prog](["predict", "--weights", str(only), "--out", str(from_checkpoint)]) == 0
    assert from_checkpoint.read_text() == full.read_text(), f"{prog} predict: checkpoint vs weights file"
    if prog == "jaxseq":
        to = tmp_path / "w.safetensors"
        assert jaxseq_cli.main(["export", str(only), "--format", "safetensors", "--to", str(to)]) == 0
        exported, original = read_weights_file(to), read_weights_file(runs / trained_by)
        assert sorted(exported) == sorted(original)
        for key in original:
            assert np.array_equal(exported[key], original[key]), f"{key}: exported from the checkpoint"


@pytest.mark.parametrize("trained_by", ["jaxseq", "torchseq"])
def test_predictions_agree_across_frameworks(runs, tmp_path, trained_by):
    """Weights trained by either framework predict the same values in both, to the forward tolerance."""
    predictions = {}
    for prog, main in MAINS.items():
        out = tmp_path / f"{prog}.csv"
        assert main(["predict", "--weights", str(runs / trained_by), "--out", str(out)]) == 0
        lines = out.read_text().splitlines()
        assert lines[0] == "step,input,target,prediction" and len(lines) == 22
        predictions[prog] = np.loadtxt(out, delimiter=",", skiprows=1)
    assert np.array_equal(predictions["jaxseq"][:, :3], predictions["torchseq"][:, :3])
    assert_close("prediction", predictions["jaxseq"][:, 3], predictions["torchseq"][:, 3], atol=FORWARD_ATOL["float64"])


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("source", ["jaxseq/weights.safetensors", "torchseq/model.pt"])
def test_init_from_either_file(runs, tmp_path, prog, source):
    """Both trainers start from a file written by either side; the first loss is that model's loss."""
    out = tmp_path / "run"
    assert MAINS[prog](["train", *QUICK, "--steps", "3", "--init-from", str(runs / source), "--out", str(out)]) == 0
    first = float((out / "history.csv").read_text().splitlines()[1].split(",")[1])
    trained_by = source.split("/")[0]
    last = float((runs / trained_by / "history.csv").read_text().splitlines()[-1].split(",")[1])
    assert first < last * 1.5, f"{prog} from {source}: first loss {first:.3g}, the source run ended at {last:.3g}"


BAD_WEIGHTS = [
    (lambda sd: sd.pop("linear.bias"), "missing key 'linear.bias'"),
    (lambda sd: sd.__setitem__("extra", np.zeros(1)), "unexpected key 'extra'"),
    (lambda sd: sd.__setitem__("lstm.bias_ih_l0", np.zeros(3)), r"lstm.bias_ih_l0: expected shape \(48,\)"),
    (lambda sd: [sd.__setitem__(k, v.astype(np.float32)) for k, v in list(sd.items())], "weights are float32"),
]


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("mutate,message", BAD_WEIGHTS, ids=["missing", "extra", "shape", "dtype"])
def test_bad_weights_file_is_one_line(runs, tmp_path, capsys, prog, fmt, mutate, message):
    from jaxseq.port.weights import write_weights_file

    state_dict = dict(read_weights_file(runs / "jaxseq"))
    mutate(state_dict)
    path = tmp_path / f"bad.{fmt}"
    write_weights_file(state_dict, path, fmt)
    out = tmp_path / "out"
    code = MAINS[prog](["train", *QUICK, "--init-from", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and str(path) in err, err
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"PK\x03\x04broken"], ids=["empty", "zeros", "zip"])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_corrupt_weights_file_is_one_line(tmp_path, capsys, prog, content, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(content)
    code = MAINS[prog](["predict", "--weights", str(path), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "not a readable" in err, err
    assert not (tmp_path / "p.csv").exists()
