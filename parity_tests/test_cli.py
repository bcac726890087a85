"""The command line: what `jaxseq train` and `torchseq train` write, and how they refuse bad input."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import jaxseq
from jaxseq.app import cli as jaxseq_cli
from jaxseq.app import runs
from jaxseq.app.options import terminate_as_interrupt
from jaxseq.app.outputs import read_history
from parity_tests.helpers import MAINS, assert_one_line_error
from torchseq import cli as torchseq_cli

RUN_FILES = {"jaxseq": "weights.safetensors", "torchseq": "model.pt"}
CLI_MODULES = {"jaxseq": "jaxseq.app.cli", "torchseq": "torchseq.cli"}


def run_cli(*args, env=None):
    """Runs `python -m <package>.cli args` in a fresh process."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_train_writes_the_run(prog, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(CLI_MODULES[prog], "train", "--steps", "30", "--hidden", "8", "--out", str(out), "--no-progress")
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
    """SGD at lr 10 diverges: one line naming the step and the last finite loss, exit 1. The diverged
    run's directory replaces the earlier run's whole: the history up to there, a summary saying so,
    the loss curve and the last finite checkpoint; no file of the earlier run (weights, summary) is left."""
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
    checkpoint_file = CHECKPOINT_FILES[prog]
    diverged_run = {"history.csv", "summary.json", "loss_curve.png", checkpoint_file}
    assert RUN_FILES[prog] in before and set(after) == diverged_run, sorted(after)
    assert after[checkpoint_file] != before[checkpoint_file], "the earlier run's checkpoint is still there"
    summary = json.loads(after["summary.json"])
    assert summary["status"] == "diverged" and summary["diverged_at_step"] == int(match[1]), summary
    assert summary["config"]["optimizer"] == "sgd"


CHECKPOINT_FILES = {"jaxseq": "checkpoint.npz", "torchseq": "checkpoint.pt"}
SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}


def spawn(module: str, *args, sigint="default_int_handler", **popen) -> subprocess.Popen:
    """`python -m module args`, its SIGINT handler first set to `signal.<sigint>` (Python's own, or
    SIG_IGN). Set, not inherited: a child inherits an ignored SIGINT, and the tests may run in a job
    that a script started with `&`. (Not with preexec_fn, which forks a process that runs JAX.)"""
    start = (
        f"import runpy, signal; signal.signal(signal.SIGINT, signal.{sigint}); "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return subprocess.Popen([sys.executable, "-c", start, *args], **popen)


def wait_for(path, proc, seconds=240):
    """Waits until `path` exists (False if `proc` ended first or time ran out)."""
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists() and proc.poll() is None


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
@pytest.mark.parametrize("name", SIGNALS)
def test_interrupted_run_keeps_its_work(prog, name, tmp_path):
    """SIGINT or SIGTERM mid-run: the run ends its current steps, writes weights, checkpoint, history
    and a summary marked interrupted, prints the command that resumes it and exits 128 + the signal;
    that command (with --steps, to end soon) continues the same history."""
    out = tmp_path / "run"
    args = ["train", "--steps", "1000000", "--hidden", "4", "--checkpoint-every", "20", "--out", str(out)]
    proc = spawn(CLI_MODULES[prog], *args, "--no-progress", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(out / CHECKPOINT_FILES[prog], proc), proc.communicate()
    signum, status = SIGNALS[name]
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert set(RUN_FILES.values()) & {p.name for p in out.iterdir()} == {RUN_FILES[prog]}
    summary = json.loads((out / "summary.json").read_text())
    history = read_history(out / "history.csv")
    assert summary["status"] == "interrupted" and summary["signal"] == name, summary
    assert 20 <= summary["steps"] == len(history) < 1000000
    resume = f"{prog} train --resume {out}"
    assert summary["resume"] == resume and f"continue it with: {resume}" in stdout, stdout
    if prog == "jaxseq":
        assert jaxseq.load_weights(out).lstm.weight_hh_l0[...].shape == (16, 4)
    steps = len(history) + 7
    assert MAINS[prog](["train", "--resume", str(out), "--steps", str(steps), "--no-progress"]) == 0
    resumed = read_history(out / "history.csv")
    assert len(resumed) == steps and np.array_equal(resumed[: len(history)], history)


def test_a_run_started_ignoring_sigint_keeps_ignoring_it(tmp_path):
    """A run started with SIGINT ignored (a job a script starts with `&`) ignores Ctrl-C, as Python
    does, and stops on SIGTERM: SIGINT, then SIGTERM, ends it as SIGTERM (it records the first
    signal it heeds)."""
    out = tmp_path / "run"
    args = ["train", "--steps", "1000000", "--hidden", "4", "--checkpoint-every", "20", "--no-progress"]
    proc = spawn("jaxseq.app.cli", *args, "--out", str(out), sigint="SIG_IGN",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(out / "checkpoint.npz", proc), proc.communicate()
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert json.loads((out / "summary.json").read_text())["signal"] == "SIGTERM"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_ignored_signal_stays_ignored(signum):
    """In process: with the signal ignored before (`&`, `trap '' TERM`), the commands' handlers
    (`terminate_as_interrupt`, `StopOnSignal`) leave it ignored, and it arriving changes nothing."""
    before = signal.signal(signum, signal.SIG_IGN)
    try:
        with terminate_as_interrupt(), runs.StopOnSignal("test") as stop:
            assert signal.getsignal(signum) is signal.SIG_IGN
            os.kill(os.getpid(), signum)
            time.sleep(0.01)
            assert not stop()
        assert signal.getsignal(signum) is signal.SIG_IGN
    finally:
        signal.signal(signum, before)


def started(proc, marker: str, seconds=240) -> bool:
    """Reads `proc`'s stderr (in a thread) until it shows `marker`; False if it ended or time ran out."""
    seen, found = [], threading.Event()

    def read():
        for line in iter(lambda: proc.stderr.read(1), ""):
            seen.append(line)
            if marker in "".join(seen[-200:]):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    return found.wait(seconds) and proc.poll() is None


def test_signal_stops_a_sweep_after_its_current_steps(tmp_path):
    """SIGTERM mid-sweep: the sweep ends its current chunk, writes every model's losses so far with
    a summary marked interrupted, and exits 143."""
    out = tmp_path / "sweep"
    args = ["sweep", "--steps", "1000000", "--hidden", "4", "--seeds", "2", "--chunk", "50", "--out", str(out)]
    proc = spawn("jaxseq.app.cli", *args, stderr=subprocess.PIPE, text=True)
    assert started(proc, "step"), "the sweep showed no progress"  # tqdm's bar: the loop has begun
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 143
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 50 <= summary["steps"] < 1000000, summary
    assert all(np.isfinite(run["final_loss"]) for run in summary["runs"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"], "temporary directories left behind"


@pytest.mark.parametrize("name", SIGNALS)
def test_signal_stops_a_compare_leaving_the_earlier_results(name, tmp_path):
    """SIGINT or SIGTERM mid-compare: it stops at once (a comparison of part of the steps would answer
    another question), says so in one line, exits 128 + the signal, and the earlier compare's
    directory is as it was, with no temporary directory beside it."""
    out = tmp_path / "compare"
    assert jaxseq_cli.main(["compare", "--steps", "3", "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["compare", "--steps", "1000000", "--hidden", "4", "--out", str(out)]
    proc = spawn("jaxseq.app.cli", *args, stderr=subprocess.PIPE, text=True)
    assert started(proc, "step"), "the compare showed no progress"
    signum, status = SIGNALS[name]
    proc.send_signal(signum)
    proc.wait(timeout=120)
    assert proc.returncode == status
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a stopped compare changed the earlier results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare"], "temporary directories left behind"


def state_dict_of(prog, run) -> dict:
    if prog == "jaxseq":
        return jaxseq.to_torch_state_dict(jaxseq.load_weights(run))
    return {k: v.numpy() for k, v in torch.load(run / "model.pt", weights_only=True).items()}


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_resume_extends_a_finished_run_bit_for_bit(prog, tmp_path):
    """30 steps, then `--resume DIR --steps 60`, is the one run of 60 steps: every loss and every
    final weight equal, bit for bit."""
    common = ["--hidden", "6", "--no-progress"]
    assert MAINS[prog](["train", "--steps", "30", *common, "--out", str(tmp_path / "short")]) == 0
    assert MAINS[prog](["train", "--resume", str(tmp_path / "short"), "--steps", "60", "--no-progress"]) == 0
    assert MAINS[prog](["train", "--steps", "60", *common, "--out", str(tmp_path / "long")]) == 0
    extended, whole = ((tmp_path / run / "history.csv").read_bytes() for run in ("short", "long"))
    assert extended == whole, f"{prog}: 30 steps extended to 60 differ from 60 steps"
    a, b = state_dict_of(prog, tmp_path / "short"), state_dict_of(prog, tmp_path / "long")
    for key in b:
        assert np.array_equal(a[key], b[key]), f"{prog}: final {key} differs, extended vs whole run"
    summary = json.loads((tmp_path / "short" / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["config"]["steps"] == 60 and summary["steps_run"] == 30


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_resume_into_another_out_leaves_the_run_as_it_was(prog, tmp_path):
    """`--resume A --out B --steps N` writes the extended run into B; A keeps its files, byte for byte."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert MAINS[prog](["train", "--steps", "5", "--hidden", "4", "--no-progress", "--out", str(a)]) == 0
    before = {p.name: p.read_bytes() for p in a.iterdir()}
    assert MAINS[prog](["train", "--resume", str(a), "--steps", "8", "--out", str(b), "--no-progress"]) == 0
    assert {p.name: p.read_bytes() for p in a.iterdir()} == before, "--out B changed the resumed run A"
    extended = read_history(b / "history.csv")
    assert len(extended) == 8 and np.array_equal(extended[:5], read_history(a / "history.csv"))


def test_new_run_replaces_the_whole_directory(tmp_path, capsys):
    """A new run into a run's directory leaves none of the earlier run's files (predict's
    predictions.csv) beside its own."""
    out = tmp_path / "run"
    assert jaxseq_cli.main(["train", "--steps", "3", "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    assert jaxseq_cli.main(["predict", "--weights", str(out)]) == 0
    assert (out / "predictions.csv").exists()
    assert jaxseq_cli.main(["train", "--steps", "4", "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    assert not (out / "predictions.csv").exists(), "the earlier run's predictions.csv outlived it"
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "temporary directories left behind"


def test_killed_run_leaves_the_earlier_results_whole(tmp_path):
    """A run killed (SIGKILL) before it has results of its own leaves the earlier run's directory as it
    was; its abandoned temporary directory is removed by the next run."""
    out = tmp_path / "run"
    assert jaxseq_cli.main(["train", "--steps", "3", "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = ["train", "--steps", "1000000", "--hidden", "4", "--out", str(out), "--no-progress"]
    proc = spawn("jaxseq.app.cli", *args, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".run.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the run goes on
    proc.kill()
    proc.wait()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a killed run changed the earlier results"
    assert list(tmp_path.glob(".run.*.tmp")), "the killed run left no temporary directory (did it start?)"
    assert jaxseq_cli.main(["train", "--steps", "3", "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "the abandoned temporary directory is still there"


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_out_holding_other_files_is_refused(prog, tmp_path, capsys):
    """A run replaces its --out whole, so a directory holding anything no run wrote is refused."""
    (tmp_path / "notes.txt").write_text("mine")
    code = MAINS[prog](["train", "--steps", "3", "--hidden", "4", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "holds 'notes.txt', which no run wrote" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_console_scripts_are_installed():
    """pyproject.toml declares both commands; the README's install puts them on PATH."""
    for prog in ("jaxseq", "torchseq"):
        proc = subprocess.run([prog, "train", "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "--steps" in proc.stdout, proc.stderr


def test_traceback_free_error_in_a_real_process(tmp_path):
    proc = run_cli("jaxseq.app.cli", "train", "--steps", "0", "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "jaxseq train: error: argument --steps: expected a positive integer, got '0'"


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_same_command_twice_is_bit_identical(prog, tmp_path):
    """On CPU, the same command writes the same history.csv, byte for byte."""
    histories = []
    for k in range(2):
        out = tmp_path / str(k)
        args = ["train", "--steps", "200", "--hidden", "16", "--out", str(out), "--no-progress"]
        proc = run_cli(CLI_MODULES[prog], *args)
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


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_bare_command_lists_the_commands(prog, capsys):
    assert MAINS[prog]([]) == 2
    err = capsys.readouterr().err
    assert "train" in err and "predict" in err and "usage:" in err, err


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_version(prog, capsys):
    with pytest.raises(SystemExit) as exit_info:
        MAINS[prog](["--version"])
    assert exit_info.value.code == 0
    assert re.fullmatch(rf"{prog} \S+\n", capsys.readouterr().out)


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_every_error_names_the_command(prog, capsys, tmp_path):
    """One prefix for every error, argparse's and ours: `PROG COMMAND: error: `."""
    code = MAINS[prog](["predict", "--weights", str(tmp_path / "nothing.pt")])
    assert_one_line_error(capsys, code, f"{prog} predict: error: {tmp_path / 'nothing.pt'}", status=1)
    with pytest.raises(SystemExit):
        MAINS[prog](["train", "--hidden", "0"])
    assert capsys.readouterr().err.startswith(f"{prog} train: error: argument --hidden")


def test_default_runs_say_why_they_end_apart(tmp_path, capsys):
    """jaxseq and torchseq draw their own initial weights for a seed; the line with the final loss says so."""
    assert jaxseq_cli.main(["train", "--steps", "3", "--hidden", "4", "--no-progress", "--out", str(tmp_path)]) == 0
    assert "torchseq train draws other weights" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make,message",
    [(lambda d: d / "nothere.py", "nothere.py: no such file"), (lambda d: d, "is a directory")],
    ids=["missing", "directory"],
)
def test_check_refuses_a_missing_file_before_importing_jax_or_torch(make, message, tmp_path):
    code = f"""
import sys
from jaxseq.app.cli import main
code = main(["check", {str(make(tmp_path))!r}, "--out", {str(tmp_path / "out")!r}])
print(code, sorted(m for m in ("jax", "torch") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split("\n")[0] == "2 []", (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "jaxseq check: error:" in proc.stderr
