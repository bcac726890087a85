"""Sine-wave prediction with two stacked nn.LSTMCell stepped over `input.split(1, dim=1)`, zero
states made in forward with torch.zeros(input.size(0), H, dtype=torch.double), and a `future`
argument that feeds predictions back (written for this corpus after the architecture of
pytorch/examples' time_sequence_prediction; no upstream code is copied)."""

import numpy as np
import torch
import torch.nn as nn

HIDDEN, N, T, STEPS = 16, 3, 6, 5


# Modelled on pytorch/examples time_sequence_prediction/train.py (Sequence): same layers and forward idioms, written here (the upstream code is not copied).
class TwoCellSequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell1 = nn.LSTMCell(1, HIDDEN)
        self.cell2 = nn.LSTMCell(HIDDEN, HIDDEN)
        self.linear = nn.Linear(HIDDEN, 1)

    def _step(self, x, state):
        h1, c1, h2, c2 = state
        h1, c1 = self.cell1(x, (h1, c1))
        h2, c2 = self.cell2(h1, (h2, c2))
        return self.linear(h2), (h1, c1, h2, c2)

    def forward(self, input, future=0):
        state = tuple(torch.zeros(input.size(0), HIDDEN, dtype=torch.double) for _ in range(4))
        preds = []
        for x in input.split(1, dim=1):
            y, state = self._step(x, state)
            preds.append(y)
        for _ in range(future):
            y, state = self._step(y, state)
            preds.append(y)
        return torch.cat(preds, dim=1)


def _data():
    """Phase-shifted sines sin(k / T0) sampled at integer k; the target is the input shifted by one."""
    rng = np.random.RandomState(2)
    k = np.arange(T + 1)[None, :] + rng.randint(-80, 80, size=(N, 1))
    wave = torch.from_numpy(np.sin(k / 20.0))
    return wave[:, :-1].contiguous(), wave[:, 1:].contiguous()


def _model():
    torch.manual_seed(0)
    return TwoCellSequence().double()  # forward's zero states are float64: float64 only


def make():
    """The full set at every step, MSE, Adam (the example uses LBFGS: see make_upstream)."""
    model = _model()
    x, y = _data()
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                batches=[(x, y)], loss="mse", steps=STEPS)


def make_upstream():
    """The example's loop: LBFGS(lr=0.8) on nn.MSELoss over the whole set each step.
    steps=1 only: LBFGS on a network amplifies rounding in torch itself (a 1e-13 change of one
    weight moves torch's own loss by ~1e-2 within ~10 steps), so a long run may differ legitimately."""
    model = _model()
    x, y = _data()
    return dict(model=model, optimizer=torch.optim.LBFGS(model.parameters(), lr=0.8),
                batches=[(x, y)], loss=nn.MSELoss(), steps=1)
