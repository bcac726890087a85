"""Sequence classifier: bidirectional LSTM (batch first) with zero (h0, c0) of 2 * layers made in
forward by a bare torch.zeros(...), linear on the last step's concatenated directions (written for
this corpus after the architecture of yunjey/pytorch-tutorial's
bidirectional_recurrent_neural_network; no upstream code is copied).

float32: the bare torch.zeros(...) in forward is float32 (see yunjey_rnn.py)."""

import torch
import torch.nn as nn

IN, HIDDEN, LAYERS, CLASSES, T, BATCH, STEPS = 8, 16, 2, 5, 8, 4, 5


# Modelled on yunjey/pytorch-tutorial tutorials/02-intermediate/bidirectional_recurrent_neural_network/main.py (BiRNN): same layers and forward idioms, written here (the upstream code is not copied).
class BiLSTMClassifier(nn.Module):
    def __init__(self, n_in, hidden, layers, classes):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.lstm = nn.LSTM(n_in, hidden, layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        h0 = torch.zeros(2 * self.layers, x.size(0), self.hidden).to(x.device)
        c0 = torch.zeros(2 * self.layers, x.size(0), self.hidden).to(x.device)
        out, _ = self.lstm(x, (h0, c0))  # (B, T, 2H)
        return self.fc(out[:, -1, :])


def make():
    torch.manual_seed(0)
    model = BiLSTMClassifier(IN, HIDDEN, LAYERS, CLASSES).train()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(BATCH, T, IN, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g))
               for _ in range(STEPS)]
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                batches=batches, loss="cross_entropy", steps=STEPS)
