"""The command line: what `jaxseq train` and `torchseq train` write, and how they refuse bad input."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import jaxseq
from jaxseq import cli as jaxseq_cli
from jaxseq.outputs import read_history
from torchseq import cli as torchseq_cli

RUN_FILES = {"jaxseq": "weights.safetensors", "torchseq": "model.pt"}
MAINS = {"jaxseq": jaxseq_cli.main, "torchseq": torchseq_cli.main}


def run_cli(*args, env=None):
    """Runs `python -m <package>.cli args` in a fresh process."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_train_writes_the_run(prog, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(f"{prog}.cli", "train", "--steps", "30", "--hidden", "8", "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"{prog}: 30 steps, final loss" in proc.stdout
    names = {"history.csv", "summary.json", "loss_curve.png", "predictions.png", RUN_FILES[prog]}
    assert names <= {p.name for p in out.iterdir()}, sorted(p.name for p in out.iterdir())
    assert (out / "history.csv").read_text().splitlines()[0] == "step,loss"
    losses = read_history(out / "history.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(losses) == summary["steps"] == 30
    assert summary["final_loss"] == losses[-1]
    for key in ("final_loss", "steps", "steps_per_second", "wall_seconds"):
        assert summary[key] > 0, key
    if prog == "jaxseq":
        assert summary["platform"] == "cpu" and summary["compile_seconds"] > 0
        reloaded = jaxseq.load_weights(out)
        assert reloaded.lstm.weight_hh_l0[...].shape == (32, 8)
    else:
        state_dict = torch.load(out / "model.pt", weights_only=True)
        assert jaxseq.from_torch(state_dict).lstm.weight_hh_l0[...].shape == (32, 8)
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_default_run_fits(tmp_path):
    """The README's promise: `jaxseq train` with defaults fits the sequence."""
    assert jaxseq_cli.main(["train", "--out", str(tmp_path), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 1000 and summary["config"]["dtype"] == "float64"
    assert summary["final_loss"] < 1e-3, summary["final_loss"]


def test_init_from_torch_starts_from_torchseq_weights(tmp_path):
    j_out, t_out = tmp_path / "j", tmp_path / "t"
    common = ["--steps", "20", "--hidden", "6", "--seed", "3", "--no-progress"]
    assert jaxseq_cli.main(["train", *common, "--init-from-torch", "3", "--out", str(j_out)]) == 0
    assert torchseq_cli.main(["train", *common, "--out", str(t_out)]) == 0
    j_losses, t_losses = read_history(j_out / "history.csv"), read_history(t_out / "history.csv")
    np.testing.assert_allclose(j_losses, t_losses, rtol=1e-9, err_msg="history from torchseq's seed-3 weights")


BAD_OPTIONS = [
    (["--steps", "0"], "--steps: expected a positive integer"),
    (["--steps", "-5"], "--steps: expected a positive integer"),
    (["--steps", "ten"], "--steps: expected a positive integer"),
    (["--lr", "0"], "--lr: expected a positive number"),
    (["--lr", "nan"], "--lr: expected a positive number"),
    (["--hidden", "-1"], "--hidden: expected a positive integer"),
    (["--optimizer", "lbfgs"], "--optimizer: invalid choice"),
    (["--dtype", "float16"], "--dtype: invalid choice"),
    (["--loss", "max"], "--loss: invalid choice"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
]


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_line(prog, args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        MAINS[prog](["train", *args, "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "never").exists(), "a rejected command created its output directory"


def test_bad_platform_is_one_line(capsys, tmp_path):
    code = jaxseq_cli.main(["train", "--platform", "tpu", "--steps", "5", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "platform 'tpu' is not available" in err, err


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_unwritable_out_is_one_line(prog, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code = MAINS[prog](["train", "--steps", "5", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot write to output directory" in err, err
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_diverging_run_keeps_its_finite_history(prog, capsys, tmp_path):
    """SGD at lr 10 diverges: one line naming the step and the last finite loss, exit 1, the history up
    to there in history.csv, the last finite checkpoint kept; the earlier run's files in --out are
    gone, so the directory describes the diverged run alone (no old summary beside the new history)."""
    common = ["--hidden", "4", "--no-progress", "--checkpoint-every", "5"]
    assert MAINS[prog](["train", "--steps", "5", *common, "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    code = MAINS[prog](["train", "--optimizer", "sgd", "--lr", "10", "--steps", "200", *common, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    match = re.search(r"at step (\d+); last finite loss ([0-9.e+-]+)", err)
    assert match, err
    history = read_history(tmp_path / "history.csv")
    assert len(history) == int(match[1]) - 1 and np.isfinite(history).all()
    assert float(match[2]) == pytest.approx(history[-1], rel=1e-5)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    checkpoint_file = (
        RUN_FILES[prog].replace("weights.safetensors", "checkpoint.npz").replace("model.pt", "checkpoint.pt")
    )
    assert "summary.json" in before and set(after) <= {"history.csv", checkpoint_file}, sorted(after)
    assert after.get(checkpoint_file) != before[checkpoint_file], "the earlier run's checkpoint is still there"


def test_console_scripts_are_installed():
    """pyproject.toml declares both commands; the README's install puts them on PATH."""
    for prog in ("jaxseq", "torchseq"):
        proc = subprocess.run([prog, "train", "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "--steps" in proc.stdout, proc.stderr


def test_traceback_free_error_in_a_real_process(tmp_path):
    proc = run_cli("jaxseq.cli", "train", "--steps", "0", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "jaxseq train: error: argument --steps: expected a positive integer, got '0'"


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_same_command_twice_is_bit_identical(prog, tmp_path):
    """On CPU, the same command writes the same history.csv, byte for byte."""
    histories = []
    for k in range(2):
        out = tmp_path / str(k)
        proc = run_cli(f"{prog}.cli", "train", "--steps", "200", "--hidden", "16", "--out", str(out), "--no-progress")
        assert proc.returncode == 0, proc.stderr
        histories.append((out / "history.csv").read_bytes())
    assert histories[0] == histories[1], f"{prog}: two runs of the same command differ"


def test_files_get_the_users_permissions(tmp_path):
    """A run's files get what the umask gives any new file (they are written aside, then renamed)."""
    import os

    umask = os.umask(0o022)
    try:
        assert jaxseq_cli.main(["train", "--steps", "3", "--hidden", "4", "--no-progress", "--out", str(tmp_path)]) == 0
    finally:
        os.umask(umask)
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, f"{path.name}: mode {oct(path.stat().st_mode & 0o777)}"
