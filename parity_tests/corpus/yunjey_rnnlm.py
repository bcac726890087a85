"""Language model: embedding -> LSTM (batch first) -> outputs flattened to (B * T, H) -> linear;
forward takes and returns the (h, c) pair (written for this corpus after the architecture of
yunjey/pytorch-tutorial's language_model; no upstream code is copied)."""

import torch
import torch.nn as nn

VOCAB, EMBED, HIDDEN, LAYERS, SEQ, BATCH, STEPS = 20, 12, 16, 1, 6, 3, 5


# Modelled on yunjey/pytorch-tutorial tutorials/02-intermediate/language_model/main.py (RNNLM): same layers and forward idioms, written here (the upstream code is not copied).
class FlatLSTMLM(nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, vocab)

    def forward(self, ids, state):
        out, (h, c) = self.lstm(self.embed(ids), state)
        out = out.reshape(out.size(0) * out.size(1), out.size(2))
        return self.linear(out), (h, c)


def _model():
    torch.manual_seed(0)
    return FlatLSTMLM(VOCAB, EMBED, HIDDEN, LAYERS).double().train()


def _chunks(steps=STEPS):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (BATCH, steps * SEQ + 1), generator=g)
    return [(ids[:, i:i + SEQ], ids[:, i + 1:i + 1 + SEQ].reshape(-1)) for i in range(0, steps * SEQ, SEQ)]


def _zero_states():
    return tuple(torch.zeros(LAYERS, BATCH, HIDDEN, dtype=torch.float64) for _ in range(2))


def make():
    """Zero states passed in at every step; cross entropy, Adam lr 0.002, clip 0.5."""
    model = _model()
    s0 = _zero_states()
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.002),
                batches=[(x, s0, y) for x, y in _chunks()], loss="cross_entropy", clip_grad_norm=0.5, steps=STEPS)


def make_upstream():
    """The tutorial's loop: the states are detached and carried from chunk to chunk."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.002), batches=_chunks(),
                loss=nn.CrossEntropyLoss(), clip_grad_norm=0.5, hidden=_zero_states(), steps=STEPS)
