"""Several devices and several processes give the one-device results.

Each run is a fresh process, since the device count is fixed when JAX starts: simulated CPU
devices (`--xla_force_host_platform_device_count`), and two processes joined by
`jax.distributed` on this machine (`--coordinator 127.0.0.1:PORT`), as two hosts would be.
Sharded reductions may add in another order, so results agree to rounding, not bit for bit.
"""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxseq.app.outputs import read_history
from parity_tests.helpers import SHARDED_LOSS_RTOL, assert_close, simulated_devices_env

TRAIN = ["--task", "windows", "--sequences", "40", "--hidden", "8", "--steps", "100"]
MINIBATCH = ["--batch-size", "8"]
SWEEP = ["--seeds", "2", "--lr", "1e-3,1e-2", "--hidden", "8", "--steps", "60", "--chunk", "20"]


def start_jaxseq(*args, devices: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "jaxseq.app.cli", *args, "--no-progress", "--no-cache"]
    env = simulated_devices_env(devices)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: int = 300) -> None:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_two_processes(*args) -> list[subprocess.Popen]:
    """The same command as processes 0 and 1 of a jax.distributed run, 2 CPU devices each."""
    hosts = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    return [start_jaxseq(*args, *hosts, "--process-id", str(i), devices=2) for i in range(2)]


def two_processes(*args) -> None:
    procs = start_two_processes(*args)
    try:
        for proc in procs:
            finish(proc)
    finally:
        for proc in procs:
            proc.kill()


@pytest.fixture(scope="module")
def one_device_train(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    finish(start_jaxseq("train", *TRAIN, *MINIBATCH, "--out", str(out), devices=1))
    return out


@pytest.mark.parametrize("batch", [MINIBATCH, []], ids=["minibatches", "all_40_sequences"])
def test_data_parallel_over_four_devices(tmp_path, batch, one_device_train):
    """Each step's batch split over 4 devices: 8 drawn sequences, or all 40 placed split."""
    one, four = (one_device_train if batch else tmp_path / "1"), tmp_path / "4"
    if not batch:
        finish(start_jaxseq("train", *TRAIN, "--out", str(one), devices=1))
    finish(start_jaxseq("train", *TRAIN, *batch, "--out", str(four), devices=4))
    summaries = [json.loads((run / "summary.json").read_text()) for run in (one, four)]
    assert [s["devices"] for s in summaries] == [1, 4]
    assert_close("loss", read_history(four / "history.csv"), read_history(one / "history.csv"), rtol=SHARDED_LOSS_RTOL)


def test_uneven_split_falls_back_to_one_device(tmp_path):
    """In one process, 5 sequences per step on 4 devices: the run uses one device and says so."""
    finish(start_jaxseq("train", *TRAIN, "--steps", "10", "--batch-size", "5", "--out", str(tmp_path / "x"), devices=4))
    assert json.loads((tmp_path / "x" / "summary.json").read_text())["devices"] == 1


def test_two_processes_train_as_one(tmp_path, one_device_train):
    out = tmp_path / "hosts"
    two_processes("train", *TRAIN, *MINIBATCH, "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 4 and summary["processes"] == 2
    assert_close(
        "loss",
        read_history(out / "history.csv"),
        read_history(one_device_train / "history.csv"),
        rtol=SHARDED_LOSS_RTOL,
    )


def test_two_processes_sweep_as_one(tmp_path):
    finish(start_jaxseq("sweep", *SWEEP, "--out", str(tmp_path / "one"), devices=1))
    two_processes("sweep", *SWEEP, "--out", str(tmp_path / "hosts"))
    one, hosts = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "hosts"))
    assert hosts["devices"] == 4 and hosts["processes"] == 2
    losses = [np.array([run["final_loss"] for run in summary["runs"]]) for summary in (hosts, one)]
    assert_close("final losses", *losses, rtol=SHARDED_LOSS_RTOL)


def test_uneven_split_over_processes_is_refused(tmp_path):
    """Across processes, 3 sequences per step cannot split over 4 devices: one line, exit 1, nothing written."""
    procs = start_two_processes("train", *TRAIN, "--steps", "5", "--batch-size", "3", "--out", str(tmp_path / "x"))
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 2 and err.count("\n") == 1, err
            assert "3 sequences per step do not split evenly over the 4 devices" in err, err
    finally:
        for proc in procs:
            proc.kill()
    assert not (tmp_path / "x").exists()
