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
    """Rows of the image are the time steps; the last step's output is classified."""

    def __init__(self, p_first=0.0, p_second=0.0, mid=12, classes=10):
        super().__init__()
        self.row_lstm = nn.LSTM(input_size=SIDE, hidden_size=HIDDEN, batch_first=True)
        self.last_norm = nn.BatchNorm1d(HIDDEN)       # batch statistics in train mode
        self.proj = nn.Linear(HIDDEN, mid)
        self.classify = nn.Linear(mid, classes)
        self.drop_first, self.drop_second = nn.Dropout(p_first), nn.Dropout(p_second)

    def forward(self, images):
        seq, _ = self.row_lstm(images.reshape(-1, SIDE, SIDE))   # (B, 1, H, W) -> (B, rows, cols)
        z = self.drop_first(self.last_norm(seq[:, -1, :]))
        z = self.drop_second(F.relu(self.proj(z)))
        return F.log_softmax(self.classify(z), dim=1)


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
