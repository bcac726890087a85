"""A classifier of token sequences of different lengths, padded into one batch, trained in
PyTorch and in JAX side by side.

    jaxseq check examples/padded_classifier.py

Embedding (padding_idx=0) -> LSTM over pack_padded_sequence(lengths) -> the last valid hidden
state of each sequence -> Linear -> log_softmax, and nll_loss against the labels. Adam. Small and
float64, so the check takes seconds and holds to float64's tolerances.
`python examples/padded_classifier.py` runs it too.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

V, CLASSES = 12, 3  # tokens (0 is padding), classes
B, T = 5, 7  # sequences per batch, padded length


class PaddedClassifier(nn.Module):
    def __init__(self, vocab: int = V, embed: int = 6, hidden: int = 8, classes: int = CLASSES):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids_BxT, lengths_B):
        packed = pack_padded_sequence(self.embed(ids_BxT), lengths_B, batch_first=True, enforce_sorted=False)
        _, (h_1xBxH, _) = self.lstm(packed)  # h_n: each sequence's state at its last valid step
        return F.log_softmax(self.head(h_1xBxH[-1]), dim=-1)


def batches(count: int = 20, seed: int = 0):
    """`count` batches of (ids (B, T) padded with 0, lengths (B,), labels (B,)); the label is the
    count of token 1 in the sequence, capped at CLASSES - 1."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        ids = torch.randint(1, V, (B, T), generator=g) * (torch.arange(T) < lengths[:, None])
        labels = (ids == 1).sum(dim=1).clamp(max=CLASSES - 1)
        out.append((ids, lengths, labels))
    return out


def make():
    torch.manual_seed(0)
    model = PaddedClassifier().double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return dict(model=model, optimizer=optimizer, loss="nll", batches=batches(), steps=100)


if __name__ == "__main__":
    from jaxseq import parity

    print(parity.check(**make()).table())
