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
    def __init__(self, n_in, n_out, dropout=0.0, clip=20):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out, bias=True)
        self.clip = clip
        self.dropout = dropout

    def forward(self, x):
        x = F.hardtanh(F.relu(self.fc(x)), 0, self.clip)
        if self.dropout:
            x = F.dropout(x, self.dropout, self.training)
        return x


# Modelled on pytorch/audio src/torchaudio/models/deepspeech.py (DeepSpeech): same layers and forward idioms, written here (the upstream code is not copied).
class DeepSpeechLike(nn.Module):
    def __init__(self, n_feature, n_hidden, n_class, dropout=0.0):
        super().__init__()
        self.n_hidden = n_hidden
        self.fc1 = ClippedReLULinear(n_feature, n_hidden, dropout)
        self.fc2 = ClippedReLULinear(n_hidden, n_hidden, dropout)
        self.fc3 = ClippedReLULinear(n_hidden, n_hidden, dropout)
        self.bi_rnn = nn.RNN(n_hidden, n_hidden, num_layers=1, nonlinearity="relu", bidirectional=True)
        self.fc4 = ClippedReLULinear(n_hidden, n_hidden, dropout)
        self.out = nn.Linear(n_hidden, n_class)

    def forward(self, x):
        # x: (batch, channel=1, time, feature)
        x = self.fc3(self.fc2(self.fc1(x)))
        x = x.squeeze(1).transpose(0, 1)                   # (time, batch, hidden)
        x, _ = self.bi_rnn(x)
        x = x[:, :, : self.n_hidden] + x[:, :, self.n_hidden:]
        x = self.out(self.fc4(x)).permute(1, 0, 2)         # (batch, time, class)
        return F.log_softmax(x, dim=2)


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
