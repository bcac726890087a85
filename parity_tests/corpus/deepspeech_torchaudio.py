"""DeepSpeech (Hannun et al. 2014): three clipped-ReLU fully connected layers on each frame, one
bidirectional ReLU nn.RNN whose two directions are summed, a fourth clipped-ReLU layer, a linear
output and log_softmax; trained through F.ctc_loss, the wrapper returning the scalar loss (written
for this corpus after the architecture of pytorch/audio's torchaudio.models.DeepSpeech; no
upstream code is copied). Dropout 0, train mode."""

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURES, HIDDEN, CLASSES, T, BATCH, MAX_TARGET, STEPS = 6, 16, 6, 8, 3, 3, 5


# Modelled on pytorch/audio src/torchaudio/models/deepspeech.py (FullyConnected): same layers and forward idioms, written here (the upstream code is not copied).
class ClippedReLULinear(nn.Module):
    """Linear, then ReLU clipped to [0, ceiling] with hardtanh; optional dropout."""

    def __init__(self, width_in, width_out, p_drop=0.0, ceiling=20.0):
        super().__init__()
        self.linear = nn.Linear(width_in, width_out)
        self.ceiling, self.p_drop = ceiling, p_drop

    def forward(self, x):
        y = F.hardtanh(F.relu(self.linear(x)), 0.0, self.ceiling)
        return F.dropout(y, self.p_drop, self.training) if self.p_drop else y


# Modelled on pytorch/audio src/torchaudio/models/deepspeech.py (DeepSpeech): same layers and forward idioms, written here (the upstream code is not copied).
class DeepSpeechLike(nn.Module):
    def __init__(self, features, width, classes, p_drop=0.0):
        super().__init__()
        self.width = width
        self.frame_mlp = nn.Sequential(ClippedReLULinear(features, width, p_drop),
                                       ClippedReLULinear(width, width, p_drop),
                                       ClippedReLULinear(width, width, p_drop))
        self.rnn = nn.RNN(width, width, nonlinearity="relu", bidirectional=True)  # time first
        self.post = ClippedReLULinear(width, width, p_drop)
        self.classifier = nn.Linear(width, classes)

    def forward(self, spec):
        # spec: (batch, 1, time, features)
        h = self.frame_mlp(spec).squeeze(1).transpose(0, 1)     # (time, batch, width)
        both, _ = self.rnn(h)
        h = both[..., : self.width] + both[..., self.width:]    # forward + backward direction
        scores = self.classifier(self.post(h)).permute(1, 0, 2)  # (batch, time, classes)
        return F.log_softmax(scores, dim=2)


class WithCTC(nn.Module):
    """forward returns the scalar CTC loss (blank 0) of the model's log-probabilities."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, targets, input_lengths, target_lengths):
        logp = self.net(x).transpose(0, 1)  # ctc_loss wants (time, batch, class)
        return F.ctc_loss(logp, targets, input_lengths, target_lengths, blank=0)


def make():
    torch.manual_seed(0)
    model = WithCTC(DeepSpeechLike(FEATURES, HIDDEN, CLASSES)).double().train()
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(STEPS):
        x = torch.randn(BATCH, 1, T, FEATURES, generator=g, dtype=torch.float64)
        targets = torch.randint(1, CLASSES, (BATCH, MAX_TARGET), generator=g)  # 0 is the blank
        target_lengths = torch.randint(1, MAX_TARGET + 1, (BATCH,), generator=g)
        batches.append((x, targets, torch.full((BATCH,), T, dtype=torch.long), target_lengths))
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), batches=batches, steps=STEPS)
