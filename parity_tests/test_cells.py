"""The trainers with `--cell lstm|gru|rnn`, `--layers N` and `--bidirectional`.

Each configuration is trained from the same weights in both frameworks (`jaxseq compare`'s
code path) and must follow the same trajectory as the seed's LSTM does (test_training's
tolerances); weight files, predictions, checkpoints and sweeps carry the architecture.
"""

import json

import numpy as np
import pytest
import torch

import jaxseq
import torchseq
from jaxseq import cli
from jaxseq.compare import compare
from jaxseq.config import TrainConfig
from jaxseq.convert import check_state_dict
from jaxseq.sweep import sweep
from jaxseq.training import init_model
from parity_tests.helpers import (
    FORWARD_ATOL,
    SWEEP_LOSS_RTOL,
    assert_close,
    assert_one_line_error,
    assert_trajectories_close,
    exit_code,
    whole_run_and_first_checkpoint,
)
from torchseq import cli as torchseq_cli
from torchseq.train import init_model as torch_init_model

ARCHITECTURES = [
    (cell, layers, bidirectional)
    for cell in ("lstm", "gru", "rnn")
    for layers in (1, 2)
    for bidirectional in (False, True)
]


def arch_id(arch):
    cell, layers, bidirectional = arch
    return f"{cell}-{layers}{'-bi' if bidirectional else ''}"


def config_of(arch, **changes) -> TrainConfig:
    cell, layers, bidirectional = arch
    options = dict(hidden=8, steps=100, chunk=50, cell=cell, layers=layers, bidirectional=bidirectional)
    return TrainConfig(**{**options, **changes})


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=arch_id)
def test_trajectory_matches_torch(arch):
    """100 Adam steps in float64 from torchseq's weights: every loss, and the final parameters."""
    config = config_of(arch)
    c = compare(config)
    assert_trajectories_close(c, "float64")
    assert c.jax.losses[-1] < 0.5 * c.jax.losses[0], "the model did not learn: the test would prove little"
    assert check_state_dict(jaxseq.to_torch_state_dict(c.jax.model)) == (arch[0], 1, 8, 1, arch[1], arch[2])


@pytest.mark.parametrize("arch", [("gru", 2, True), ("rnn", 1, False)], ids=arch_id)
def test_trajectory_matches_torch_float32(arch):
    assert_trajectories_close(compare(config_of(arch, dtype="float32")), "float32")


@pytest.mark.parametrize("arch", [("lstm", 2, True), ("gru", 1, False)], ids=arch_id)
def test_native_initialisation_follows_torch_rules(arch):
    """jaxseq's own initialisation has torchseq's parameter shapes and ±1/sqrt(fan_in) bounds."""
    config = config_of(arch)
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
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and message in err, err
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
    assert_one_line_error(capsys, exit_code(cli.main, "train", *args, "--out", str(tmp_path / "x")), message)


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_resume_is_exact(tmp_path, framework):
    """Stopped at a checkpoint and resumed, a bidirectional 2-layer RNN run gives the whole run's losses."""
    config = config_of(("rnn", 2, True), steps=60, checkpoint_every=20)
    whole, first = whole_run_and_first_checkpoint(framework, config, tmp_path)
    train = jaxseq.train if framework == "jax" else torchseq.train
    np.testing.assert_array_equal(train(config, resume=first).losses, whole)


def test_sweep_of_gru_models_equals_train_alone():
    config = config_of(("gru", 2, False), steps=60, chunk=30)
    result = sweep(config, [0, 1], [1e-3, 1e-2])
    for i, seed in enumerate([0, 1]):
        for j, lr in enumerate([1e-3, 1e-2]):
            alone = jaxseq.train(config.replace(seed=seed, lr=lr)).losses
            assert_close(f"sweep seed {seed} lr {lr}", result.losses[i, j], alone, rtol=SWEEP_LOSS_RTOL)
