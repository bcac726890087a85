"""The seed question's own script, run as written (with the fix), against torchseq.

The script sums 21 per-step `MSELoss` values in a Python loop and resets the LSTM
state to zeros every iteration; torchseq computes the same loss vectorised. The
missing `optimizer.zero_grad()` was the whole bug: without it the run stays far
above the fixed one.
"""

import functools

import numpy as np
import pytest
import torch

import torchseq
from jaxseq.app.config import TrainConfig
from parity_tests.helpers import assert_close

# The script's MSELoss((1,), ()) warns that it broadcasts; that is the script as written.
pytestmark = pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")

ORIGINAL_LOSS_RTOL = 1e-10  # float64; differences come from summation order only
STEPS = 1000


def original_script(seed: int, steps: int, zero_grad: bool) -> np.ndarray:
    """The question's code, with its optimizer (Adam, lr 1e-3) and the answer's fix."""
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(input_size=1, hidden_size=100, num_layers=1, batch_first=True).to(torch.double)
    linear = torch.nn.Linear(100, 1).to(torch.double)
    criterion = torch.nn.MSELoss()
    params = list(lstm.parameters()) + list(linear.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)

    L = 21

    x = torch.tensor(np.arange(L) / 20, dtype=torch.double).unsqueeze(0).unsqueeze(2)
    y = torch.tensor(np.arange(2, L + 2) / 20, dtype=torch.double)

    losses = []
    for _ in range(steps):
        hidden = (torch.zeros((1, 1, 100), dtype=torch.double), torch.zeros((1, 1, 100), dtype=torch.double))
        output, hidden = lstm(x, hidden)
        loss = 0.0
        for i in range(L):
            o = linear(output[:, i, :].squeeze())
            loss += criterion(o, y.squeeze()[i])
        losses.append(loss.item())
        if zero_grad:
            optimizer.zero_grad()  # add this line
        loss.backward()
        optimizer.step()
    return np.array(losses)


@functools.cache
def torchseq_losses(zero_grad: bool) -> np.ndarray:
    """torchseq's run of the seed task (seed 0), trained once for the module's tests."""
    return torchseq.train(TrainConfig(steps=STEPS, seed=0, zero_grad=zero_grad)).losses


@pytest.mark.slow
@pytest.mark.parametrize("zero_grad", [True, False], ids=["fixed", "original_bug"])
def test_original_loop_matches_torchseq(zero_grad):
    expected = original_script(seed=0, steps=STEPS, zero_grad=zero_grad)
    actual = torchseq_losses(zero_grad)
    assert_close("loss history", actual, expected, rtol=ORIGINAL_LOSS_RTOL)


@pytest.mark.slow
def test_missing_zero_grad_is_the_failure():
    fixed, broken = torchseq_losses(True), torchseq_losses(False)
    assert fixed[-1] < 1e-3, f"fixed run: final loss {fixed[-1]:.3g} not below 1e-3"
    assert broken[-1] > 100 * fixed[-1], f"without zero_grad: final {broken[-1]:.3g} vs fixed {fixed[-1]:.3g}"
    assert np.min(broken[len(broken) // 2 :]) > 1e-2, "without zero_grad the loss should never get near the fit"
