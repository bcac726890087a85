"""Many sequences: the built-in generators, the masked loss, and minibatches drawn on the device.

The minibatch of step k is `minibatch_indices(key, k)`: torchseq is handed the same draws, so
the two frameworks still follow the same trajectory (rows of test_trajectories), a resumed run
draws what the whole run drew (test_checkpoint), and a sweep's models what each draws alone
(test_sweep).
"""

import importlib
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxseq
from jaxseq.app import cli
from jaxseq.app.config import TrainConfig
from jaxseq.app.task import data_key, generate, load_sequences, minibatch_indices, minibatches
from jaxseq.app.training import init_model, sequence_loss
from jaxseq.errors import OptionError
from parity_tests.helpers import (
    DATA_ATOL,
    LOSS_RTOL,
    PADDING_ATOL,
    assert_close,
    assert_one_line_error,
    exit_code,
)

torchseq_train = importlib.import_module("torchseq.train")  # the module (`torchseq.train` is the function)


def test_windows_are_the_seed_line_padded():
    data = generate("windows", 50, 21, 0.05, 0.1, seed=3)
    assert data.x.shape == data.y.shape == (50, 21, 1) and data.lengths.shape == (50,)
    assert data.lengths.min() >= 5 and data.lengths.max() <= 21 and len(set(data.lengths)) > 5
    for x_T, y_T, length in zip(data.x[..., 0], data.y[..., 0], data.lengths, strict=True):
        start = x_T[0] / 0.05
        assert_close("window input", x_T[:length], (start + np.arange(length)) * 0.05, atol=DATA_ATOL)
        assert_close("window target", y_T[:length], x_T[:length] + 0.1, atol=DATA_ATOL)
        assert not x_T[length:].any() and not y_T[length:].any(), "padding must be zeros"


def test_sine_target_is_the_next_step():
    data = generate("sine", 20, 30, 0.05, 0.1, seed=0)
    assert data.lengths is None and data.x.shape == (20, 30, 1)
    assert_close("y_t = x_{t+1}", data.y[:, :-1], data.x[:, 1:], atol=0)
    assert np.abs(data.x).max() <= 1 and np.std(data.x[:, 0]) > 0.3, "phases are not random"


def test_running_sum_target():
    data = generate("running-sum", 10, 15, 0.05, 0.1, seed=0)
    assert_close("y_t = x_0 + ... + x_t", data.y[..., 0], np.cumsum(data.x[..., 0], axis=1), atol=DATA_ATOL)


@pytest.mark.parametrize("task", ["windows", "sine", "running-sum"])
def test_data_seed_decides_the_data(task):
    config = TrainConfig(task=task, sequences=8)
    a, b, c = load_sequences(config), load_sequences(config), load_sequences(config.replace(data_seed=1))
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("lengths", [[6, 2, 4, 1], [3, 2, 1, 1]], ids=["longest_is_T", "none_reach_T"])
def test_masked_loss_counts_valid_steps_only(reduction, lengths):
    """Each step's MSE is over the sequences still running (0 where none is); "mean" is the sum / T."""
    rng = np.random.default_rng(0)
    pred, y = rng.normal(size=(2, 4, 6, 2))
    lengths = np.array(lengths)
    per_step = [
        np.mean([np.mean((pred[b, t] - y[b, t]) ** 2) for b in range(4) if t < lengths[b]]) if t < max(lengths) else 0
        for t in range(6)
    ]
    expected = np.sum(per_step) if reduction == "sum" else np.sum(per_step) / 6
    assert_close("jax masked loss", sequence_loss(pred, y, reduction, jnp.asarray(lengths)), expected, rtol=LOSS_RTOL)
    t_args = (torch.from_numpy(pred), torch.from_numpy(y), reduction, torch.from_numpy(lengths))
    assert_close("torch masked loss", torchseq_train.sequence_loss(*t_args).numpy(), expected, rtol=LOSS_RTOL)
    full = np.full(4, 6)
    unmasked = sequence_loss(pred, y, reduction)
    assert_close("all valid", sequence_loss(pred, y, reduction, full), unmasked, rtol=LOSS_RTOL)


def test_minibatch_draws_are_a_function_of_the_step():
    key = data_key(0)
    first = np.asarray(minibatch_indices(key, 7, sequences=100, batch_size=16))
    assert np.array_equal(first, np.asarray(minibatch_indices(key, 7, sequences=100, batch_size=16)))
    assert not np.array_equal(first, np.asarray(minibatch_indices(key, 8, sequences=100, batch_size=16)))
    assert np.array_equal(minibatches(0, 100, 16, start=5, block=10)[2], first), "torchseq must get jaxseq's draws"
    assert first.min() >= 0 and first.max() < 100


def test_minibatch_draws_do_not_depend_on_x64():
    """A process without JAX's x64 mode (torchseq's) draws what this one (x64 on) does."""
    code = "from jaxseq.app.task import minibatches; print(minibatches(3, 50, 4, start=10, block=3).tolist())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert jax.config.jax_enable_x64, "this test needs x64 on here (conftest)"
    assert json.loads(proc.stdout) == minibatches(3, 50, 4, start=10, block=3).tolist()


def test_bidirectional_output_ignores_padding():
    """With lengths, a bidirectional model's valid outputs do not change when the padding does."""
    config = TrainConfig(task="windows", sequences=6, cell="lstm", bidirectional=True, hidden=5)
    data = load_sequences(config)
    assert (data.lengths < 21).any(), "no window is padded: the test would check nothing"
    model = init_model(config)
    noisy = np.where(np.arange(21)[None, :, None] < data.lengths[:, None, None], data.x, 7.0)
    a, b = np.asarray(model(data.x, data.lengths)), np.asarray(model(noisy, data.lengths))
    valid = np.arange(21)[None, :] < data.lengths[:, None]
    assert_close("valid outputs", a[valid], b[valid], atol=PADDING_ATOL)


def test_padded_csv_through_the_command_line(tmp_path):
    """A CSV of sequences of several lengths trains, and predict leaves the padded steps out."""
    rows = ["sequence,input,target"] + [
        f"{n},{t / 10},{t / 10 + 0.1}" for n, T in enumerate([5, 2, 4]) for t in range(T)
    ]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    args = ["--data", str(tmp_path / "r.csv"), "--steps", "20", "--hidden", "4", "--bidirectional", "--no-progress"]
    assert cli.main(["train", *args, "--out", str(tmp_path / "run"), "--no-cache"]) == 0
    out = tmp_path / "p.csv"
    assert (
        cli.main(["predict", "--weights", str(tmp_path / "run"), "--data", str(tmp_path / "r.csv"), "--out", str(out)])
        == 0
    )
    assert [line.split(",")[:2] for line in out.read_text().splitlines()[1:]] == [
        [str(n), str(t)] for n, T in enumerate([5, 2, 4]) for t in range(T)
    ]


def test_batch_size_larger_than_the_data_is_refused():
    with pytest.raises(OptionError, match="--batch-size 9 is more than the 8 sequence"):
        load_sequences(TrainConfig(task="sine", sequences=8, batch_size=9))
    with pytest.raises(OptionError, match="--batch-size 2 is more than the 1 sequence"):
        jaxseq.train(TrainConfig(batch_size=2, steps=1))


@pytest.mark.parametrize(
    "command,args,message",
    [
        ("train", ["--data", "examples/shifted.csv", "--task", "sine"], "--task does not apply to --data"),
        ("train", ["--sequences", "10"], "--sequences does not apply to --task shifted"),
        ("train", ["--task", "running-sum", "--spacing", "0.1"], "--spacing does not apply to --task running-sum"),
        ("train", ["--data-seed", "-1"], "expected an integer in [0, 2^32), got '-1'"),
        ("compare", ["--task", "sine", "--sequences", "4", "--batch-size", "8"], "--batch-size 8 is more than the 4"),
        ("sweep", ["--task", "sine", "--sequences", "4", "--batch-size", "8"], "--batch-size 8 is more than the 4"),
        ("predict", ["--weights", "x", "--sequences", "0"], "expected a positive integer, got '0'"),
    ],
)
def test_bad_data_options(tmp_path, capsys, command, args, message):
    """One line on stderr, exit status 2, and no output written."""
    code = exit_code(cli.main, command, *args, "--out", str(tmp_path / "x"))
    assert_one_line_error(capsys, code, message, status=2)  # an option error, as argparse's
    assert not (tmp_path / "x").exists()


def test_running_sum_is_learned_with_memory():
    """The best a memoryless model can do on running-sum is predict y_t = x_t (the rest of the sum
    has mean 0), a loss of about sum_t t/3 = 70 over 21 steps. A 16-unit LSTM trained on
    minibatches for 600 steps must be far below that: it remembers the past."""
    config = TrainConfig(task="running-sum", sequences=512, batch_size=32, hidden=16, steps=600, lr=1e-2)
    data = load_sequences(config)
    memoryless = float(sequence_loss(data.x, data.y))
    trained = float(sequence_loss(np.asarray(jaxseq.train(config).model(data.x)), data.y))
    assert 60 < memoryless < 80, f"the memoryless loss {memoryless:.3g} is not the expected ~70"
    assert trained < memoryless / 100, f"trained loss {trained:.3g} vs memoryless {memoryless:.3g}"
