"""The trainers with `--cell lstm|gru|rnn`, `--layers N` and `--bidirectional`.

Weight files, predictions and initialisation carry the architecture. Each architecture's training
trajectory against torchseq's is a row of test_trajectories; resuming one, of test_checkpoint;
sweeping them, of test_sweep.
"""

import json

import numpy as np
import pytest
import torch

import jaxseq
import torchseq
from jaxseq.app import cli
from jaxseq.app.config import TrainConfig
from jaxseq.app.training import init_model
from parity_tests.helpers import FORWARD_ATOL, assert_close, assert_one_line_error, exit_code
from torchseq import cli as torchseq_cli
from torchseq.train import init_model as torch_init_model


@pytest.mark.parametrize(
    "cell,layers,bidirectional", [("lstm", 2, True), ("gru", 1, False)], ids=["lstm-2-bi", "gru-1"]
)
def test_native_initialisation_follows_torch_rules(cell, layers, bidirectional):
    """jaxseq's own initialisation has torchseq's parameter shapes and ±1/sqrt(fan_in) bounds."""
    config = TrainConfig(hidden=8, cell=cell, layers=layers, bidirectional=bidirectional)
    j_state = jaxseq.to_torch_state_dict(init_model(config))
    t_model = torch_init_model(config)
    t_state = {k: v.detach().numpy() for k, v in t_model.state_dict().items()}
    assert {k: v.shape for k, v in j_state.items()} == {k: v.shape for k, v in t_state.items()}
    for key, value in j_state.items():
        fan_in = t_model.linear.in_features if key.startswith("linear.") else config.hidden
        assert np.abs(value).max() <= 1 / np.sqrt(fan_in), f"{key} exceeds ±1/sqrt({fan_in})"


def test_cli_round_trip_between_frameworks(tmp_path):
    """jaxseq trains a 2-layer bidirectional GRU; torchseq predicts with its weights what jaxseq does."""
    arch = ["--cell", "gru", "--layers", "2", "--bidirectional", "--hidden", "6", "--steps", "50"]
    assert exit_code(cli.main, "train", *arch, "--out", str(tmp_path / "run"), "--no-progress", "--no-cache") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["cell"] == "gru" and summary["config"]["layers"] == 2
    assert exit_code(cli.main, "predict", "--weights", str(tmp_path / "run"), "--out", str(tmp_path / "j.csv")) == 0
    assert exit_code(cli.main, "export", str(tmp_path / "run"), "--format", "pt", "--to", str(tmp_path / "w.pt")) == 0
    state_dict = torch.load(tmp_path / "w.pt", weights_only=True)
    assert "gru.weight_hh_l1_reverse" in state_dict and "lstm.weight_ih_l0" not in state_dict
    t_predict = ["predict", "--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "t.csv")]
    assert exit_code(torchseq_cli.main, *t_predict) == 0
    j, t = (np.genfromtxt(tmp_path / name, delimiter=",", names=True) for name in ("j.csv", "t.csv"))
    assert_close("prediction", j["prediction"], t["prediction"], atol=FORWARD_ATOL["float64"])

    # the same weights continue training in torchseq when the architecture options agree, and only then
    again = [*arch, "--init-from", str(tmp_path / "w.pt"), "--no-progress"]
    assert exit_code(torchseq_cli.main, "train", *again, "--out", str(tmp_path / "more")) == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cell", "lstm"], "weights have cell gru, but the run needs lstm (--cell)"),
        (["--cell", "gru", "--layers", "3"], "weights have layers 2, but the run needs 3 (--layers)"),
        (["--cell", "gru", "--layers", "2"], "weights have bidirectional True, but the run needs False"),
    ],
    ids=["cell", "layers", "bidirectional"],
)
@pytest.mark.parametrize("main", [cli.main, torchseq_cli.main], ids=["jaxseq", "torchseq"])
def test_weights_of_another_architecture_are_refused(tmp_path, capsys, main, args, message):
    t_model = torchseq.build_model(6, cell="gru", layers=2, bidirectional=True)
    torch.save(t_model.state_dict(), tmp_path / "w.pt")
    code = exit_code(
        main, "train", *args, "--hidden", "6", "--init-from", str(tmp_path / "w.pt"), "--out", str(tmp_path / "x")
    )
    assert_one_line_error(capsys, code, message, status=1)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cell", "lstm2"], "invalid choice: 'lstm2'"),
        (["--layers", "0"], "expected a positive integer, got '0'"),
        (["--cell", "gru", "--init", "flax"], "--init flax is for the single-layer, one-direction LSTM only"),
    ],
)
def test_bad_architecture_options(tmp_path, capsys, args, message):
    code = exit_code(cli.main, "train", *args, "--out", str(tmp_path / "x"))
    assert_one_line_error(capsys, code, message, status=2)  # an option error, as argparse's
