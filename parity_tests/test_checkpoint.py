"""Checkpoints survive SIGKILL, and resuming gives the uninterrupted run's history, byte for byte."""

import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxseq import checkpoint
from jaxseq import cli as jaxseq_cli
from jaxseq.config import TrainConfig
from parity_tests.helpers import whole_run_and_first_checkpoint
from torchseq import cli as torchseq_cli

# Sizes chosen so that each framework trains for a few seconds: long enough to be killed mid-run.
RUNS = {
    "jaxseq": ["--steps", "4000", "--checkpoint-every", "200", "--hidden", "64"],
    "torchseq": ["--steps", "600", "--checkpoint-every", "50", "--hidden", "32"],
}
FILES = {"jaxseq": "checkpoint.npz", "torchseq": "checkpoint.pt"}


def command(prog, *args):
    return [sys.executable, "-m", f"{prog}.cli", "train", "--no-progress", *args]


def kill_after_a_checkpoint(proc, path, rng) -> bool:
    """SIGKILLs `proc` at a random moment once `path` exists; False if it finished first."""
    while not path.exists() and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.6))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_killed_and_resumed_run_matches_uninterrupted(prog, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(prog, *RUNS[prog], "--out", str(whole)), check=True, capture_output=True, timeout=600)

    rng = random.Random(0)
    args = [*RUNS[prog], "--out", str(killed)]
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(command(prog, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not kill_after_a_checkpoint(proc, killed / FILES[prog], rng):
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        kills += 1
        resumed = checkpoint.load(killed) if prog == "jaxseq" else None  # the last checkpoint loads
        assert resumed is None or resumed.step % 200 == 0
        args = ["--resume", str(killed)]
    else:
        subprocess.run(command(prog, *args), check=True, capture_output=True, timeout=600)
    assert kills >= 2, f"killed only {kills} time(s) before the run finished; make it longer"
    assert (killed / "history.csv").read_bytes() == (whole / "history.csv").read_bytes(), (
        f"{prog}: history after {kills} kills and resumes differs from the uninterrupted run"
    )


def test_checkpoint_of_another_size_is_refused(tmp_path, capsys):
    """A checkpoint whose state does not fit the model its config describes: one line, exit 1."""
    assert jaxseq_cli.main(["train", "--steps", "20", "--hidden", "8", "--checkpoint-every", "10",
                            "--out", str(tmp_path), "--no-progress"]) == 0  # fmt: skip
    saved = checkpoint.load(tmp_path)
    checkpoint.save(tmp_path, checkpoint.Checkpoint(saved.config.replace(hidden=16), saved.losses, saved.leaves))
    capsys.readouterr()
    assert jaxseq_cli.main(["train", "--resume", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different model size" in err, err


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "missing"])
def test_damaged_checkpoint_is_one_line(prog, damage, tmp_path, capsys):
    main = {"jaxseq": jaxseq_cli.main, "torchseq": torchseq_cli.main}[prog]
    common = ["--steps", "20", "--hidden", "4", "--checkpoint-every", "10", "--no-progress"]
    assert main(["train", *common, "--out", str(tmp_path)]) == 0
    path = tmp_path / FILES[prog]
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: 200 if damage == "truncated" else 0])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "a failed resume changed the run"


def test_resume_refuses_conflicting_options(tmp_path, capsys):
    assert jaxseq_cli.main(["train", "--steps", "20", "--hidden", "4", "--checkpoint-every", "10",
                            "--out", str(tmp_path), "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    assert jaxseq_cli.main(["train", "--resume", str(tmp_path), "--hidden", "8"]) == 1
    assert "--hidden 4; --hidden 8 conflicts" in capsys.readouterr().err


def test_checkpoint_holds_history_and_config(tmp_path):
    assert jaxseq_cli.main(["train", "--steps", "30", "--hidden", "4", "--checkpoint-every", "10",
                            "--out", str(tmp_path), "--no-progress"]) == 0  # fmt: skip
    saved = checkpoint.load(tmp_path)
    assert saved.step == 30 and saved.config == TrainConfig(steps=30, hidden=4, checkpoint_every=10)
    history = np.loadtxt(tmp_path / "history.csv", delimiter=",", skiprows=1)[:, 1]
    assert np.array_equal(history, saved.losses)


def test_torch_checkpoint_of_another_size_is_refused(tmp_path, capsys):
    import torch

    from torchseq.train import CHECKPOINT

    common = ["--steps", "10", "--checkpoint-every", "10", "--no-progress"]
    assert torchseq_cli.main(["train", *common, "--hidden", "4", "--out", str(tmp_path / "a")]) == 0
    assert torchseq_cli.main(["train", *common, "--hidden", "6", "--out", str(tmp_path / "b")]) == 0
    small, large = (torch.load(tmp_path / d / CHECKPOINT, weights_only=True) for d in "ab")
    small["model"] = large["model"]  # a hidden-6 model inside a hidden-4 run
    torch.save(small, tmp_path / "a" / CHECKPOINT)
    capsys.readouterr()
    assert torchseq_cli.main(["train", "--resume", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hidden size 6 in a run of --hidden 4" in err, err


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_resume_needs_no_init_from_file(prog, tmp_path):
    """A run started from --init-from resumes from its checkpoint's weights, even with the file gone,
    and ends as the uninterrupted run does."""
    main = {"jaxseq": jaxseq_cli.main, "torchseq": torchseq_cli.main}[prog]
    assert jaxseq_cli.main(["train", "--steps", "3", "--hidden", "4", "--out", str(tmp_path / "w"),
                            "--no-progress"]) == 0  # fmt: skip
    weights = tmp_path / "weights.safetensors"
    (tmp_path / "w" / "weights.safetensors").rename(weights)
    config = TrainConfig(steps=20, hidden=4, checkpoint_every=10, init_from=str(weights))
    whole, run = tmp_path / "whole", tmp_path / "run"
    args = ["--steps", "20", "--hidden", "4", "--checkpoint-every", "10", "--init-from", str(weights)]
    assert main(["train", *args, "--out", str(whole), "--no-progress"]) == 0
    # The run as it stood at its first checkpoint (step 10), then the weights file removed.
    run.mkdir()
    _, first = whole_run_and_first_checkpoint("jax" if prog == "jaxseq" else "torch", config, run)
    if prog == "jaxseq":
        checkpoint.save(run, first)  # torch's is written there already
    weights.unlink()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "history.csv").read_bytes() == (whole / "history.csv").read_bytes()
