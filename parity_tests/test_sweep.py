"""`jaxseq sweep`: each model of the grid is the run `jaxseq train` makes alone, on one device or several."""

import json
import subprocess
import sys

import numpy as np
import pytest

import jaxseq
from jaxseq.app import cli
from jaxseq.app.config import TrainConfig
from jaxseq.app.sweep import summary, sweep
from parity_tests.helpers import (
    SWEEP_LOSS_RTOL,
    assert_close,
    assert_one_line_error,
    exit_code,
    simulated_devices_env,
)

SEED_TASK = dict(hidden=16, steps=150, chunk=50)  # the seed script's one sequence, a 16-unit LSTM


@pytest.mark.parametrize(
    "config,seeds,lrs",
    [
        pytest.param(TrainConfig(optimizer="adam", **SEED_TASK), [0, 5], [1e-3, 1e-2], id="seed-adam"),
        pytest.param(TrainConfig(optimizer="sgd", **SEED_TASK), [0, 5], [1e-3, 1e-2], id="seed-sgd"),
        pytest.param(TrainConfig(cell="gru", layers=2, hidden=8, steps=60, chunk=30), [0, 1], [1e-3, 1e-2], id="gru-2"),
        pytest.param(
            TrainConfig(task="sine", sequences=20, batch_size=5, hidden=8, steps=40, chunk=20),
            [0, 1],
            [1e-2],
            id="sine-minibatches",  # every model of the sweep draws the minibatches its run draws alone
        ),
    ],
)
def test_each_model_is_its_own_train_run(config, seeds, lrs):
    """Every (seed, lr) model of the sweep follows the loss curve `jaxseq.train` gives it alone."""
    result = sweep(config, seeds, lrs)
    assert result.losses.shape == (len(seeds), len(lrs), config.steps)
    for i, seed in enumerate(seeds):
        for j, lr in enumerate(lrs):
            alone = jaxseq.train(config.replace(seed=seed, lr=lr)).losses
            assert_close(f"sweep seed {seed} lr {lr}", result.losses[i, j], alone, rtol=SWEEP_LOSS_RTOL)
    assert not np.array_equal(result.losses[0, 0], result.losses[1, 0]), "seeds gave identical runs"


def run_sweep_cli(out, devices: int):
    args = ["sweep", "--seeds", "2", "--lr", "1e-3,3e-3", "--steps", "60", "--hidden", "8", "--chunk", "20"]
    proc = subprocess.run(
        [sys.executable, "-m", "jaxseq.app.cli", *args, "--out", str(out), "--no-progress", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
        env=simulated_devices_env(devices),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "summary.json").read_text())


def test_sharded_over_simulated_devices_equals_one_device(tmp_path):
    one, four = run_sweep_cli(tmp_path / "one", 1), run_sweep_cli(tmp_path / "four", 4)
    assert one["devices"] == 1 and four["devices"] == 4
    assert [(r["seed"], r["lr"]) for r in one["runs"]] == [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    for a, b in zip(one["runs"], four["runs"], strict=True):
        assert_close(
            f"final loss seed {a['seed']} lr {a['lr']}", b["final_loss"], a["final_loss"], rtol=SWEEP_LOSS_RTOL
        )
    assert (tmp_path / "four" / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lr", "1e-3,x"], "positive numbers separated by commas"),
        (["--seeds", "0"], "argument --seeds: expected a positive integer"),
    ],
)
def test_bad_sweep_options(tmp_path, capsys, args, message):
    code = exit_code(cli.main, "sweep", *args, "--out", str(tmp_path / "never"))
    assert_one_line_error(capsys, code, message, status=2)  # an option error, as argparse's
    assert not (tmp_path / "never").exists()


def test_diverged_models_are_recorded(tmp_path, capsys):
    """SGD at lr 100 diverges, lr 0.01 does not: the sweep goes on, summary.json is strict JSON with
    null and the step for the diverged model, the table counts it, and only an all-diverged sweep
    exits 1 (one line)."""
    common = ["sweep", "--optimizer", "sgd", "--steps", "60", "--seeds", "1", "--hidden", "4", "--no-progress"]
    assert cli.main([*common, "--lr", "100,0.01", "--out", str(tmp_path / "some")]) == 0
    summary = json.loads((tmp_path / "some" / "summary.json").read_text(), parse_constant=pytest.fail)
    diverged, fine = summary["runs"]
    assert diverged["final_loss"] is None and 1 < diverged["diverged_at_step"] <= 60, diverged
    assert fine["diverged_at_step"] is None and np.isfinite(fine["final_loss"]), fine
    assert summary["diverged"] == 1 and (tmp_path / "some" / "sweep.png").stat().st_size > 0
    assert f"1 (from step {diverged['diverged_at_step']})" in capsys.readouterr().out

    assert cli.main([*common, "--lr", "100", "--out", str(tmp_path / "all")]) == 1
    assert_one_line_error(capsys, 1, "every one of the 1 models diverged", status=1)


def test_stopped_sweep_keeps_the_steps_done():
    """`stop()` true after the first chunk: every model's losses are the first chunk of the whole sweep's."""
    config = TrainConfig(hidden=4, steps=40, chunk=10)
    whole = sweep(config, [0, 1], [1e-2])
    stopped = sweep(config, [0, 1], [1e-2], stop=lambda: True)
    assert stopped.steps == 10 and whole.steps == 40
    assert np.array_equal(stopped.losses, whole.losses[..., :10])
    written = summary(stopped, config)
    assert written["status"] == "interrupted" and written["steps"] == 10
