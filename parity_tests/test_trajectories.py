"""Whole trajectories: every configuration trained in both frameworks from the same weights.

One table, one test. Each row is trained by `jaxseq.app.compare.compare` (`jaxseq compare`'s code
path: torchseq's initial model, converted, then both trainers on the same data and the same
minibatches); the loss at every step must agree within TRAJECTORY_LOSS_RTOL and every final
parameter within TRAJECTORY_PARAM_ATOL, and the trained model must be the row's architecture.
A row may add a check of its own. The levels below (gradients, one optimizer step) are in
test_training.
"""

import numpy as np
import pytest

import jaxseq
from jaxseq.app.config import TrainConfig
from jaxseq.nn.model import Architecture
from jaxseq.port.convert import check_state_dict
from parity_tests.helpers import assert_trajectories_close, compared, torch_state_dict_numpy


def learned(c):
    """The loss at least halved: a trajectory that goes nowhere would prove little."""
    first, last = c.jax.losses[0], c.jax.losses[-1]
    assert last < 0.5 * first, f"the model did not learn: loss {first:.3g} -> {last:.3g}"


def torch_final_loss_below(bound: float):
    """torch's last loss below `bound` (the fixed seed script's result, as the answer reports it)."""

    def check(c):
        assert c.torch.losses[-1] < bound, f"torch final loss {c.torch.losses[-1]:.3g} not below {bound:g}"

    return check


def final_params_within(atol: float):
    """A tighter bound on the final parameters than TRAJECTORY_PARAM_ATOL, for a short float64 run."""

    def check(c):
        assert c.max_abs_param_diff < atol, f"final parameters differ by {c.max_abs_param_diff:.3g} (atol {atol:g})"

    return check


def new_minibatches(c):
    """Nearly every step's loss is another value: the steps do not all see the same sequences."""
    distinct = len(set(np.round(c.jax.losses, 12)))
    assert distinct > 0.9 * len(c.jax.losses), f"{distinct} distinct losses: every step should see another minibatch"


def row(id: str, check=None, **options):
    return pytest.param(TrainConfig(**options), check, id=id)


CELLS = dict(hidden=8, steps=100, chunk=50)  # a small model of each kind, 100 Adam steps
BATCHED = dict(sequences=40, batch_size=8, hidden=8, steps=100, chunk=30)  # 8 of 40 sequences a step

TRAJECTORIES = [
    # The seed task (one sequence of 21 steps), hidden 100, 1000 steps: the original script's run.
    row("seed-adam-float64", torch_final_loss_below(1e-3), steps=1000, optimizer="adam", dtype="float64"),
    row("seed-sgd-float64", steps=1000, optimizer="sgd", dtype="float64"),
    row("seed-adam-float32", steps=1000, optimizer="adam", dtype="float32"),
    row("seed-sgd-float32", steps=1000, optimizer="sgd", dtype="float32"),
    # 300 steps of a 20-unit LSTM, fixed and with the original bug (no zero_grad) in both frameworks.
    row("seed-hidden20", final_params_within(1e-10), steps=300, hidden=20),
    row("seed-hidden20-no-zero-grad", final_params_within(1e-10), steps=300, hidden=20, zero_grad=False),
    # Every cell x layers x directions (`--cell`, `--layers`, `--bidirectional`), and two in float32.
    *(
        row(f"{cell}-{layers}{'-bi' if bi else ''}", learned, cell=cell, layers=layers, bidirectional=bi, **CELLS)
        for cell in ("lstm", "gru", "rnn")
        for layers in (1, 2)
        for bi in (False, True)
    ),
    row("gru-2-bi-float32", learned, cell="gru", layers=2, bidirectional=True, dtype="float32", **CELLS),
    row("rnn-1-float32", learned, cell="rnn", dtype="float32", **CELLS),
    # Minibatches (`--batch-size`) drawn by jaxseq and handed to torchseq, on each built-in task.
    row("windows-lstm-minibatches", new_minibatches, task="windows", cell="lstm", **BATCHED),
    # the reverse direction needs the lengths of the padded windows
    row("windows-gru-bi-minibatches", new_minibatches, task="windows", cell="gru", bidirectional=True, **BATCHED),
    row("sine-lstm-2-minibatches", new_minibatches, task="sine", cell="lstm", layers=2, **BATCHED),
    row("running-sum-rnn-mean-minibatches", new_minibatches, task="running-sum", cell="rnn", loss="mean", **BATCHED),
]


@pytest.mark.parametrize("config,check", TRAJECTORIES)
def test_trajectory_matches_torch(config, check):
    c = compared(config)
    params = jaxseq.to_torch_state_dict(c.jax.model)
    assert_trajectories_close(c.jax.losses, c.torch.losses, params, torch_state_dict_numpy(c.torch.model), config.dtype)
    assert check_state_dict(params) == Architecture.of_run(config, 1, 1), "the trained model is not the row's"
    if check is not None:
        check(c)
