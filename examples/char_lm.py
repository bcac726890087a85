"""A character-level language model, trained in PyTorch and in JAX side by side.

    jaxseq check examples/char_lm.py
    jaxseq check examples/char_lm.py --steps 20 --out runs/char_lm

Embedding -> 2-layer LSTM (dropout between the layers) -> Linear, next-character cross-entropy,
AdamW with a cosine learning-rate schedule and gradient clipping: the loop

    for ids, targets in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(ids), targets).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()

is what `jaxseq check` runs in torch, and the same steps in JAX. Small and float64, so the check
takes seconds and holds to float64's tolerances. `python examples/char_lm.py` runs it too.
"""

import torch
from torch import nn

TEXT = (
    "the quick brown fox jumps over the lazy dog. a journey of a thousand miles begins with a single step. "
    "all that glitters is not gold. the early bird catches the worm. where there is a will there is a way. "
)
VOCAB = sorted(set(TEXT))
B, T = 4, 12  # sequences per batch, characters per sequence
STEPS = 100


class CharLM(nn.Module):
    def __init__(self, vocab: int, embed: int = 8, hidden: int = 16, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids_BxT):
        h_BxTxH, _ = self.lstm(self.embed(ids_BxT))
        logits_BxTxV = self.head(h_BxTxH)
        return logits_BxTxV.flatten(0, 1)  # (B*T, V): what F.cross_entropy takes with (B*T,) targets


def batches(steps: int = STEPS, seed: int = 0):
    """`steps` batches of (ids (B, T), next characters (B*T,)), windows of TEXT at random offsets."""
    ids = torch.tensor([VOCAB.index(c) for c in TEXT])
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        starts = torch.randint(0, len(TEXT) - T - 1, (B,), generator=g)
        windows_Bx1T = torch.stack([ids[s : s + T + 1] for s in starts.tolist()])
        out.append((windows_Bx1T[:, :-1], windows_Bx1T[:, 1:].reshape(-1)))
    return out


def make():
    torch.manual_seed(0)
    model = CharLM(len(VOCAB)).double()
    # Dropout off: in training mode torch and JAX would draw different dropout masks, and no two
    # runs with different masks agree step for step. eval() turns the LSTM's dropout off (this model
    # has no BatchNorm, the only other layer that eval() changes); dropout=0.0 would do the same.
    model.eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    return dict(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss="cross_entropy",
        clip_grad_norm=1.0,
        batches=batches(),
    )


if __name__ == "__main__":
    from jaxseq import parity

    print(parity.check(**make()).table())
