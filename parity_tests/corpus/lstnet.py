"""LSTNet (Lai et al. 2018): a Conv2d over (window, series) -> ReLU; a GRU over the conv features;
a skip GRU over every `skip`-th step (periodic pattern); a linear on both; plus an autoregressive
"highway" linear on the last hw rows of each series; sigmoid output (written for this corpus after
the architecture of laiguokun/LSTNet's models/LSTNet.py; no upstream code is copied)."""

import torch
import torch.nn as nn

SERIES, WINDOW, BATCH, STEPS = 3, 8, 4, 5
CONV_CH, CONV_K, GRU_H, SKIP_H, PERIOD, AR_ROWS = 8, 3, 16, 4, 2, 4


# Modelled on laiguokun/LSTNet models/LSTNet.py (Model): same layers and forward idioms, written here (the upstream code is not copied).
class LSTNetLike(nn.Module):
    """Four paths summed into one sigmoid prediction of the next row of every series."""

    def __init__(self, series, window, conv_ch, conv_k, gru_h, skip_h, period, ar_rows):
        super().__init__()
        self.series, self.window, self.period, self.ar_rows = series, window, period, ar_rows
        self.conv_ch, self.skip_h = conv_ch, skip_h
        steps = window - conv_k + 1                 # time steps left after the convolution
        self.n_periods = (steps - 1) // period      # whole periods the skip GRU walks through
        self.features = nn.Conv2d(1, conv_ch, kernel_size=(conv_k, series))
        self.gru = nn.GRU(conv_ch, gru_h)           # sequence first
        self.skip_gru = nn.GRU(conv_ch, skip_h)
        self.head = nn.Linear(gru_h + period * skip_h, series)
        self.ar = nn.Linear(ar_rows, 1)             # shared across series
        self.drop = nn.Dropout(0.0)

    def _skip_path(self, feats):
        """feats (B, C, L): the last n_periods * period steps read as `period` interleaved
        sequences of n_periods steps each, one GRU over all of them at once."""
        b = feats.size(0)
        span = self.n_periods * self.period
        tail = feats[:, :, -span:].contiguous().view(b, self.conv_ch, self.n_periods, self.period)
        seq = tail.permute(2, 0, 3, 1).contiguous().view(self.n_periods, b * self.period, self.conv_ch)
        _, last = self.skip_gru(seq)
        return last.view(b, self.period * self.skip_h)

    def forward(self, x):
        # x: (B, window, series)
        feats = torch.relu(self.features(x.view(-1, 1, self.window, self.series)))
        feats = self.drop(feats).squeeze(3)                       # (B, C, L)
        _, h = self.gru(feats.permute(2, 0, 1).contiguous())      # h: (1, B, gru_h)
        both = torch.cat([self.drop(h.squeeze(0)), self.drop(self._skip_path(feats))], dim=1)
        recent = x[:, -self.ar_rows:, :].permute(0, 2, 1).contiguous().view(-1, self.ar_rows)
        linear_part = self.ar(recent).view(-1, self.series)
        return torch.sigmoid(self.head(both) + linear_part)


def _model():
    torch.manual_seed(0)
    return LSTNetLike(SERIES, WINDOW, CONV_CH, CONV_K, GRU_H, SKIP_H, PERIOD, AR_ROWS).double().train()


def _batches(steps=STEPS):
    """Windows of WINDOW rows of a noisy periodic multivariate series in [0, 1]; target the next row."""
    g = torch.Generator().manual_seed(0)
    n = steps * BATCH + WINDOW
    t = torch.arange(n, dtype=torch.float64)[:, None]
    phase = 6.0 * torch.rand(1, SERIES, generator=g, dtype=torch.float64)
    series = 0.5 + 0.4 * torch.sin(2.1 * t + phase) + 0.05 * torch.rand(n, SERIES, generator=g, dtype=torch.float64)
    out = []
    for s in range(steps):
        ends = [s * BATCH + b + WINDOW for b in range(BATCH)]
        out.append((torch.stack([series[e - WINDOW:e] for e in ends]), torch.stack([series[e] for e in ends])))
    return out


def make():
    """Adam lr 1e-3, L1 (mean), clip 10."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.001),
                batches=_batches(), loss="l1", clip_grad_norm=10.0, steps=STEPS)


def make_upstream():
    """The repository's training: summed L1 loss, gradient norm clipped at 10, Adam."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.001),
                batches=_batches(), loss=nn.L1Loss(reduction="sum"), clip_grad_norm=10.0, steps=STEPS)
