"""Sequence classifier: LSTM (batch first) with zero (h0, c0) made in forward by a bare
torch.zeros(...), linear on the last step (written for this corpus after the architecture of
yunjey/pytorch-tutorial's recurrent_neural_network; no upstream code is copied).

float32: the bare torch.zeros(...) in forward is float32, so a .double() model fails in the LSTM
("mat1 and mat2 must have the same dtype"); the idiom is kept and the model runs in float32."""

import torch
import torch.nn as nn

IN, HIDDEN, LAYERS, CLASSES, T, BATCH, STEPS = 8, 16, 2, 5, 8, 4, 5


# Modelled on yunjey/pytorch-tutorial tutorials/02-intermediate/recurrent_neural_network/main.py (RNN): same layers and forward idioms, written here (the upstream code is not copied).
class LastStepLSTM(nn.Module):
    def __init__(self, n_in, hidden, layers, classes):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.lstm = nn.LSTM(n_in, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        h0 = torch.zeros(self.layers, x.size(0), self.hidden).to(x.device)
        c0 = torch.zeros(self.layers, x.size(0), self.hidden).to(x.device)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


def make():
    torch.manual_seed(0)
    model = LastStepLSTM(IN, HIDDEN, LAYERS, CLASSES).train()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(BATCH, T, IN, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g))
               for _ in range(STEPS)]
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
                batches=batches, loss="cross_entropy", steps=STEPS)
