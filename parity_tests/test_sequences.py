"""Many sequences: the built-in generators, the masked loss, and minibatches drawn on the device.

The minibatch of step k is `minibatch_indices(key, k)`: torchseq is handed the same draws, so
the two frameworks must still follow the same trajectory (test_training's tolerances).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxseq
from jaxseq import checkpoint
from jaxseq.compare import compare
from jaxseq.config import TrainConfig
from jaxseq.task import generate, load_sequences
from jaxseq.training import minibatch_indices, sequence_loss
from parity_tests.helpers import TRAJECTORY_LOSS_RTOL, TRAJECTORY_PARAM_ATOL, assert_close
from torchseq.train import minibatches
from torchseq.train import sequence_loss as torch_sequence_loss


def test_windows_are_the_seed_line_padded():
    data = generate("windows", 50, 21, 0.05, 0.1, seed=3)
    assert data.x.shape == data.y.shape == (50, 21, 1) and data.lengths.shape == (50,)
    assert data.lengths.min() >= 5 and data.lengths.max() <= 21 and len(set(data.lengths)) > 5
    for x_T, y_T, length in zip(data.x[..., 0], data.y[..., 0], data.lengths, strict=True):
        start = x_T[0] / 0.05
        assert_close("window input", x_T[:length], (start + np.arange(length)) * 0.05, atol=1e-12)
        assert_close("window target", y_T[:length], x_T[:length] + 0.1, atol=1e-12)
        assert not x_T[length:].any() and not y_T[length:].any(), "padding must be zeros"


def test_sine_target_is_the_next_step():
    data = generate("sine", 20, 30, 0.05, 0.1, seed=0)
    assert data.lengths is None and data.x.shape == (20, 30, 1)
    assert_close("y_t = x_{t+1}", data.y[:, :-1], data.x[:, 1:], atol=0)
    assert np.abs(data.x).max() <= 1 and np.std(data.x[:, 0]) > 0.3, "phases are not random"


def test_running_sum_target():
    data = generate("running-sum", 10, 15, 0.05, 0.1, seed=0)
    assert_close("y_t = x_0 + ... + x_t", data.y[..., 0], np.cumsum(data.x[..., 0], axis=1), atol=1e-12)


@pytest.mark.parametrize("task", ["windows", "sine", "running-sum"])
def test_data_seed_decides_the_data(task):
    config = TrainConfig(task=task, sequences=8)
    a, b, c = load_sequences(config), load_sequences(config), load_sequences(config.replace(data_seed=1))
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_masked_loss_counts_valid_steps_only(reduction):
    rng = np.random.default_rng(0)
    pred, y = rng.normal(size=(2, 4, 6, 2))
    lengths = np.array([6, 2, 4, 1])
    per_step = [np.mean([np.mean((pred[b, t] - y[b, t]) ** 2) for b in range(4) if t < lengths[b]]) for t in range(6)]
    expected = np.sum(per_step) if reduction == "sum" else np.mean(per_step)
    assert_close("jax masked loss", sequence_loss(pred, y, reduction, jnp.asarray(lengths)), expected, rtol=1e-14)
    t_args = (torch.from_numpy(pred), torch.from_numpy(y), reduction, torch.from_numpy(lengths))
    assert_close("torch masked loss", torch_sequence_loss(*t_args).numpy(), expected, rtol=1e-14)
    full = np.full(4, 6)
    assert_close("all valid", sequence_loss(pred, y, reduction, full), sequence_loss(pred, y, reduction), rtol=1e-14)


def test_minibatch_draws_are_a_function_of_the_step():
    key = jax.random.key_data(jax.random.key(0))
    first = np.asarray(minibatch_indices(key, 7, sequences=100, batch_size=16))
    assert np.array_equal(first, np.asarray(minibatch_indices(key, 7, sequences=100, batch_size=16)))
    assert not np.array_equal(first, np.asarray(minibatch_indices(key, 8, sequences=100, batch_size=16)))
    config = TrainConfig(batch_size=16)
    assert np.array_equal(minibatches(config, 100, 5, 10)[2], first), "torchseq must get jaxseq's draws"
    assert first.min() >= 0 and first.max() < 100


@pytest.mark.parametrize(
    "changes",
    [
        dict(task="windows", cell="lstm"),
        dict(task="windows", cell="gru", bidirectional=True),  # the reverse direction needs the lengths
        dict(task="sine", cell="lstm", layers=2),
        dict(task="running-sum", cell="rnn", loss="mean"),
    ],
    ids=["windows-lstm", "windows-gru-bi", "sine-lstm-2", "running-sum-rnn"],
)
def test_minibatch_trajectory_matches_torch(changes):
    config = TrainConfig(sequences=40, batch_size=8, hidden=8, steps=100, chunk=30, **changes)
    c = compare(config)
    assert c.max_rel_loss_diff <= TRAJECTORY_LOSS_RTOL["float64"], f"loss curves differ by {c.max_rel_loss_diff:.3g}"
    assert c.max_abs_param_diff <= TRAJECTORY_PARAM_ATOL["float64"], f"parameters differ by {c.max_abs_param_diff:.3g}"
    assert len(set(np.round(c.jax.losses, 12))) > 90, "every step should see another minibatch"


def test_bidirectional_output_ignores_padding():
    """With lengths, a bidirectional model's valid outputs do not change when the padding does."""
    config = TrainConfig(task="windows", sequences=6, cell="lstm", bidirectional=True, hidden=5)
    data = load_sequences(config)
    model = jaxseq.training.init_model(config)
    noisy = np.where(np.arange(21)[None, :, None] < data.lengths[:, None, None], data.x, 7.0)
    a, b = np.asarray(model(data.x, data.lengths)), np.asarray(model(noisy, data.lengths))
    valid = np.arange(21)[None, :] < data.lengths[:, None]
    assert_close("valid outputs", a[valid], b[valid], atol=1e-14)


def test_minibatch_run_resumes_exactly():
    config = TrainConfig(task="windows", sequences=30, batch_size=4, hidden=6, steps=60, checkpoint_every=20)
    saved = {}
    whole = jaxseq.train(config, on_checkpoint=lambda losses, leaves: saved.setdefault(len(losses), leaves))
    resumed = jaxseq.train(config, resume=checkpoint.Checkpoint(config, whole.losses[:40], saved[40]))
    np.testing.assert_array_equal(resumed.losses, whole.losses)


def test_batch_size_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match="--batch-size 9 is more than the 8 sequence"):
        load_sequences(TrainConfig(task="sine", sequences=8, batch_size=9))
    with pytest.raises(ValueError, match="--batch-size 2 is more than the 1 sequence"):
        jaxseq.train(TrainConfig(batch_size=2, steps=1))
