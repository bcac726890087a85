"""A speech-style frame classifier, trained in PyTorch and in JAX side by side.

    jaxseq check examples/speech.py

Conv1d over (batch, features, frames) -> ReLU -> bidirectional 2-layer GRU -> LayerNorm -> Linear:
a label for every frame, cross-entropy over (batch, classes, frames), as F.cross_entropy takes
K-dimensional inputs. SGD with Nesterov momentum and a StepLR schedule. Small and float64, so the
check takes seconds and holds to float64's tolerances. `python examples/speech.py` runs it too.
"""

import torch
from torch import nn

B, F_, L = 3, 5, 10  # utterances per batch, features per frame (e.g. filterbanks), frames
CLASSES = 4
STEPS = 100


class FrameClassifier(nn.Module):
    def __init__(self, features: int = F_, channels: int = 6, hidden: int = 5, classes: int = CLASSES):
        super().__init__()
        self.conv = nn.Conv1d(features, channels, kernel_size=3, padding=1)
        self.act = nn.ReLU()
        self.gru = nn.GRU(channels, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.norm = nn.LayerNorm(2 * hidden)
        self.out = nn.Linear(2 * hidden, classes)

    def forward(self, feats_BxFxL):
        x_BxLxC = self.act(self.conv(feats_BxFxL)).transpose(1, 2)
        h_BxLx2H, _ = self.gru(x_BxLxC)
        logits_BxLxK = self.out(self.norm(h_BxLx2H))
        return logits_BxLxK.transpose(1, 2)  # (B, classes, L): F.cross_entropy's class axis is 1


def batches(count: int = 10, seed: int = 0):
    """`count` batches of (features (B, F, L), frame labels (B, L)); the label of a frame is the
    feature with the largest value there, so there is something to learn."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        feats = torch.randn(B, F_, L, generator=g, dtype=torch.float64)
        out.append((feats, feats[:, :CLASSES].argmax(dim=1)))
    return out


def make():
    torch.manual_seed(0)
    model = FrameClassifier().double()  # training mode: this model has no dropout and no BatchNorm
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.5)
    # 10 batches, cycled: 100 steps are 10 epochs
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, loss="cross_entropy", batches=batches(),
                steps=STEPS)  # fmt: skip


if __name__ == "__main__":
    from jaxseq import parity

    print(parity.check(**make()).table())
