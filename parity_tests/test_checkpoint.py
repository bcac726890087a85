"""Checkpoints: a run resumed from one gives the uninterrupted run's history exactly, also after
SIGKILL; a checkpoint that does not fit, or is damaged, is refused in one line."""

import importlib
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import jaxseq
import torchseq
from jaxseq.app import checkpoint
from jaxseq.app import cli as jaxseq_cli
from jaxseq.app.config import TrainConfig
from jaxseq.app.outputs import read_history
from jaxseq.app.training import init_model
from jaxseq.port.weights import save_weights
from parity_tests.helpers import MAINS, assert_one_line_error
from torchseq import cli as torchseq_cli

torchseq_train = importlib.import_module("torchseq.train")  # the module (`torchseq.train` is the function)

FILES = {"jaxseq": checkpoint.FILE, "torchseq": torchseq_train.CHECKPOINT}


def whole_run_keeping_first_checkpoint(prog: str, config: TrainConfig, run_dir) -> np.ndarray:
    """Trains `config` start to finish in `prog` and returns its losses; leaves in `run_dir` only
    the checkpoint it writes first (after `config.checkpoint_every` steps), as a run stopped there would."""

    def first(losses) -> bool:
        return len(losses) == config.checkpoint_every

    if prog == "jaxseq":

        def keep(losses, leaves):
            if first(losses):
                checkpoint.save(run_dir, checkpoint.Checkpoint(config, losses, leaves))

        return jaxseq.train(config, on_checkpoint=keep).losses

    def keep(losses, *state):  # state: the model, the optimizer, ... as save_checkpoint takes them
        if first(losses):
            torchseq_train.save_checkpoint(run_dir, losses, *state, config=config)

    return torchseq.train(config, on_checkpoint=keep).losses


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            TrainConfig(cell="rnn", layers=2, bidirectional=True, hidden=8, steps=60, chunk=50, checkpoint_every=20),
            id="rnn-2-bi",
        ),
        pytest.param(
            TrainConfig(task="windows", sequences=30, batch_size=4, hidden=6, steps=60, checkpoint_every=20),
            id="windows-minibatches",  # the resumed run draws the minibatches the whole run drew
        ),
        pytest.param(
            # a weights file made in the test's directory, and removed before the resume
            TrainConfig(hidden=4, steps=20, checkpoint_every=10, init_from="start.safetensors"),
            id="init-from-file-gone",
        ),
    ],
)
def test_resumed_run_equals_the_whole_run(prog, config, tmp_path, monkeypatch):
    """`train --resume` from a run's first checkpoint writes the whole run's history, every loss
    exactly. The checkpoint holds the weights: a file the run started from (--init-from) may be
    gone. torchseq fetches jaxseq's minibatch draws 7 steps at a time here, so it resumes mid-block."""
    monkeypatch.setattr(torchseq_train, "DRAWS", 7)
    if config.init_from is not None:
        start = tmp_path / config.init_from
        save_weights(init_model(config.replace(init_from=None, seed=1)), start)
        config = config.replace(init_from=str(start))
    run = tmp_path / "run"
    run.mkdir()
    whole = whole_run_keeping_first_checkpoint(prog, config, run)
    if config.init_from is not None:
        start.unlink()
    assert MAINS[prog](["train", "--resume", str(run), "--no-progress"]) == 0
    resumed = read_history(run / "history.csv")
    np.testing.assert_array_equal(resumed, whole, err_msg=f"{prog}: the resumed run's history vs the whole run's")


# Sizes chosen so that each framework trains for a few seconds: long enough to be killed mid-run.
RUNS = {
    "jaxseq": ["--steps", "4000", "--checkpoint-every", "200", "--hidden", "64"],
    "torchseq": ["--steps", "600", "--checkpoint-every", "50", "--hidden", "32"],
}


def command(prog, *args):
    module = {"jaxseq": "jaxseq.app.cli", "torchseq": "torchseq.cli"}[prog]
    return [sys.executable, "-m", module, "train", "--no-progress", *args]


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


FINISHED = ["--steps", "20", "--hidden", "4", "--checkpoint-every", "10", "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """`finished_run(prog, to)`: a copy at `to` of a finished FINISHED run of `prog` (checkpoints at
    steps 10 and 20), trained once for the module; returns `to`."""
    made = {}

    def copy(prog, to):
        if prog not in made:
            made[prog] = tmp_path_factory.mktemp("finished") / prog
            assert MAINS[prog](["train", *FINISHED, "--out", str(made[prog])]) == 0
        shutil.copytree(made[prog], to)
        return to

    return copy


def test_checkpoint_holds_history_and_config(finished_run, tmp_path):
    run = finished_run("jaxseq", tmp_path / "run")
    saved = checkpoint.load(run)
    assert saved.step == 20 and saved.config == TrainConfig(steps=20, hidden=4, checkpoint_every=10)
    assert np.array_equal(read_history(run / "history.csv"), saved.losses)


def test_checkpoint_of_another_size_is_refused(finished_run, tmp_path, capsys):
    """A checkpoint whose state does not fit the model its config describes: one line, exit 1."""
    run = finished_run("jaxseq", tmp_path / "run")
    saved = checkpoint.load(run)
    checkpoint.save(run, checkpoint.Checkpoint(saved.config.replace(hidden=16), saved.losses, saved.leaves))
    capsys.readouterr()
    assert_one_line_error(capsys, jaxseq_cli.main(["train", "--resume", str(run)]), "different model size", status=1)


def test_torch_checkpoint_of_another_size_is_refused(finished_run, tmp_path, capsys):
    import torch

    small = finished_run("torchseq", tmp_path / "a")
    large = tmp_path / "b"
    six = ["--steps", "10", "--hidden", "6", "--checkpoint-every", "10", "--no-progress"]
    assert torchseq_cli.main(["train", *six, "--out", str(large)]) == 0
    state, other = (torch.load(d / FILES["torchseq"], weights_only=True) for d in (small, large))
    state["model"] = other["model"]  # a hidden-6 model inside a hidden-4 run
    torch.save(state, small / FILES["torchseq"])
    capsys.readouterr()
    code = torchseq_cli.main(["train", "--resume", str(small)])
    assert_one_line_error(capsys, code, "hidden size 6 in a run of --hidden 4", status=1)


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("damage", ["truncated", "empty", "missing"])
def test_damaged_checkpoint_is_one_line(finished_run, prog, damage, tmp_path, capsys):
    run = finished_run(prog, tmp_path / "run")
    path = run / FILES[prog]
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: 200 if damage == "truncated" else 0])
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    capsys.readouterr()
    assert_one_line_error(capsys, MAINS[prog](["train", "--resume", str(run)]), str(path), status=1)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before, "a failed resume changed the run"


def test_resume_refuses_conflicting_options(finished_run, tmp_path, capsys):
    """An option error: exit 2, as argparse's."""
    run = finished_run("jaxseq", tmp_path / "run")
    capsys.readouterr()
    code = jaxseq_cli.main(["train", "--resume", str(run), "--hidden", "8"])
    assert_one_line_error(capsys, code, "--hidden 4; --hidden 8 conflicts", status=2)


def test_resume_to_fewer_steps_is_refused(finished_run, tmp_path, capsys):
    run = finished_run("jaxseq", tmp_path / "run")
    capsys.readouterr()
    code = jaxseq_cli.main(["train", "--resume", str(run), "--steps", "10"])
    assert_one_line_error(capsys, code, "the run has done 20 steps already; --steps 10 is fewer", status=2)


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_extension_follows_the_schedule(prog, tmp_path, capsys):
    """A schedule over the run's steps (cosine) would be another schedule over more steps: extending
    such a run is refused, the run left as it was. One that does not depend on them (step) extends
    to the very run of more steps."""
    common = ["--hidden", "4", "--no-progress"]
    cosine = tmp_path / "cosine"
    assert MAINS[prog](["train", "--steps", "10", "--schedule", "cosine", *common, "--out", str(cosine)]) == 0
    before = {p.name: p.read_bytes() for p in cosine.iterdir()}
    capsys.readouterr()
    code = MAINS[prog](["train", "--resume", str(cosine), "--steps", "20"])
    assert_one_line_error(capsys, code, "--schedule cosine spans the run's 10 steps", status=2)
    assert {p.name: p.read_bytes() for p in cosine.iterdir()} == before

    step, whole = tmp_path / "step", tmp_path / "whole"
    assert MAINS[prog](["train", "--steps", "10", "--schedule", "step:4:0.5", *common, "--out", str(step)]) == 0
    assert MAINS[prog](["train", "--resume", str(step), "--steps", "20", "--no-progress"]) == 0
    assert MAINS[prog](["train", "--steps", "20", "--schedule", "step:4:0.5", *common, "--out", str(whole)]) == 0
    assert (step / "history.csv").read_bytes() == (whole / "history.csv").read_bytes()
