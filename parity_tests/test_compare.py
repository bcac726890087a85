"""`jaxseq compare`: both frameworks from the same weights, and the original bug reproduced in both.

The trajectories `compare` measures are checked, configuration by configuration, in test_trajectories.
"""

import json

import jax.numpy as jnp
import numpy as np

from jaxseq.app import cli
from jaxseq.app.config import TrainConfig
from jaxseq.optim import accumulate_gradients
from parity_tests.helpers import TRAJECTORY_LOSS_RTOL, assert_close, compared


def test_accumulate_gradients_keeps_the_running_sum():
    tx = accumulate_gradients()
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    total = np.zeros(3)
    for k in range(4):
        grads = {"w": jnp.arange(3.0) + k}
        total += np.asarray(grads["w"])
        updates, state = tx.update(grads, state, params)
        assert_close(f"accumulated gradient after {k + 1} steps", updates["w"], total)


def test_no_zero_grad_fails_in_both():
    fixed = compared(TrainConfig(steps=1000))  # a row of test_trajectories too: run once
    broken = compared(TrainConfig(steps=1000, zero_grad=False))
    for name in ("jax", "torch"):
        f, b = getattr(fixed, name).losses[-1], getattr(broken, name).losses[-1]
        assert b > 100 * f, f"{name}: without zero_grad {b:.3g} is not far above the fixed run's {f:.3g}"


def test_compare_command(tmp_path, capsys):
    assert cli.main(["compare", "--steps", "50", "--hidden", "10", "--out", str(tmp_path), "--no-progress"]) == 0
    table = capsys.readouterr().out
    for row in ("final loss", "steps/s", "compile time", "max relative loss difference"):
        assert row in table, table
    summary = json.loads((tmp_path / "summary.json").read_text())
    for section in ("jax", "torch"):
        for key in ("final_loss", "steps_per_second", "wall_seconds"):
            assert summary[section][key] > 0, (section, key)
    assert 0 <= summary["max_rel_loss_diff"] < TRAJECTORY_LOSS_RTOL["float64"]
    assert 0 <= summary["max_abs_param_diff"] < 1e-12
    assert (tmp_path / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_on_user_data(tmp_path, capsys):
    """--data with several sequences and features: both frameworks still follow the same curve."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", input=rng.normal(size=(3, 6, 2)), target=rng.normal(size=(3, 6, 1)))
    args = ["--steps", "40", "--hidden", "5", "--data", str(tmp_path / "d.npz"), "--no-progress"]
    assert cli.main(["compare", *args, "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["max_rel_loss_diff"] < TRAJECTORY_LOSS_RTOL["float64"], summary["max_rel_loss_diff"]


def test_failed_compare_leaves_no_directory(tmp_path, capsys):
    """A comparison that diverges (SGD at lr 100) says so in one line and leaves no --out behind."""
    out = tmp_path / "never"
    args = ["compare", "--optimizer", "sgd", "--lr", "100", "--steps", "60", "--hidden", "4", "--no-progress"]
    assert cli.main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loss is" in err, err
    assert not out.exists(), "a failed compare left its output directory"
