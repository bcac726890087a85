"""Character-level name classifier: one-hot letters (T, B, letters) -> nn.RNN -> linear on the last
hidden state -> LogSoftmax (written for this corpus after the architecture of pytorch/tutorials'
char_rnn_classification_tutorial; no upstream code is copied). Random letter strings stand in for
the names; equal lengths are stacked on the batch axis."""

import string

import torch
import torch.nn as nn

LETTERS = string.ascii_lowercase + " '"
HIDDEN, CLASSES, LENGTH, BATCH, STEPS = 16, 4, 6, 4, 5


def one_hot_line(word):
    """(len, 1, letters): one row per character."""
    out = torch.zeros(len(word), 1, len(LETTERS))
    for i, ch in enumerate(word):
        out[i, 0, LETTERS.index(ch)] = 1.0
    return out


# Modelled on pytorch/tutorials intermediate_source/char_rnn_classification_tutorial.py (CharRNN): same layers and forward idioms, written here (the upstream code is not copied).
class LetterRNNClassifier(nn.Module):
    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.rnn = nn.RNN(n_in, n_hidden)
        self.h2o = nn.Linear(n_hidden, n_out)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, letters):
        _, last = self.rnn(letters)  # last: (1, B, H)
        return self.softmax(self.h2o(last[0]))


def _batches(steps=STEPS):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(steps):
        ids = torch.randint(0, len(LETTERS), (BATCH, LENGTH), generator=g)
        words = ["".join(LETTERS[int(i)] for i in row) for row in ids]
        lines = torch.cat([one_hot_line(w) for w in words], dim=1).double()
        out.append((lines, torch.randint(0, CLASSES, (BATCH,), generator=g)))
    return out


def _model():
    torch.manual_seed(0)
    return LetterRNNClassifier(len(LETTERS), HIDDEN, CLASSES).double().train()


def make():
    """Batched: SGD lr 0.15, clip 3, NLL (mean)."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.15),
                batches=_batches(), loss="nll", clip_grad_norm=3.0, steps=STEPS)


def make_upstream():
    """The tutorial sums per-name NLL losses over a minibatch, clips at 3, SGD lr 0.15."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.15),
                batches=_batches(), loss=nn.NLLLoss(reduction="sum"), clip_grad_norm=3.0, steps=STEPS)
