"""Image rows as a sequence: LSTM (batch first) over the rows, BatchNorm1d (training statistics) on
the last output, dropout, two linear layers with ReLU, log_softmax (written for this corpus after
the architecture of pytorch/examples' mnist_rnn; no upstream code is copied). 8 x 8 images,
dropout 0."""

import torch
import torch.nn as nn
import torch.nn.functional as F

SIDE, HIDDEN, BATCH, STEPS = 8, 16, 4, 5


# Modelled on pytorch/examples mnist_rnn/main.py (Net): same layers and forward idioms, written here (the upstream code is not copied).
class RowLSTMClassifier(nn.Module):
    def __init__(self, p1=0.0, p2=0.0):
        super().__init__()
        self.rnn = nn.LSTM(input_size=SIDE, hidden_size=HIDDEN, batch_first=True)
        self.batchnorm = nn.BatchNorm1d(HIDDEN)
        self.dropout1 = nn.Dropout(p1)
        self.dropout2 = nn.Dropout(p2)
        self.fc1 = nn.Linear(HIDDEN, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, images):
        rows = images.reshape(-1, SIDE, SIDE)       # (B, 1, H, W) -> (B, rows, columns)
        out, _ = self.rnn(rows)
        x = self.dropout1(self.batchnorm(out[:, -1, :]))
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def _model():
    torch.manual_seed(0)
    return RowLSTMClassifier().double().train()


def _batches(steps=STEPS):
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(BATCH, 1, SIDE, SIDE, generator=g, dtype=torch.float64),
             torch.randint(0, 10, (BATCH,), generator=g)) for _ in range(steps)]


def make():
    """F.nll_loss, Adam lr 1e-3."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                batches=_batches(), loss="nll", steps=STEPS)


def make_upstream():
    """The example's optimizer: Adadelta(lr=0.1) with F.nll_loss (its StepLR steps per epoch: not here)."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.Adadelta(model.parameters(), lr=0.1),
                batches=_batches(), loss=F.nll_loss, steps=STEPS)
