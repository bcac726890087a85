"""LSTNet (Lai et al. 2018): a Conv2d over (window, series) -> ReLU; a GRU over the conv features;
a skip GRU over every `skip`-th step (periodic pattern); a linear on both; plus an autoregressive
"highway" linear on the last hw rows of each series; sigmoid output (written for this corpus after
the architecture of laiguokun/LSTNet's models/LSTNet.py; no upstream code is copied)."""

import argparse

import torch
import torch.nn as nn

SERIES, WINDOW, BATCH, STEPS = 3, 8, 4, 5


# Modelled on laiguokun/LSTNet models/LSTNet.py (Model): same layers and forward idioms, written here (the upstream code is not copied).
class LSTNetLike(nn.Module):
    def __init__(self, args, data):
        super().__init__()
        self.P, self.m = args.window, data.m
        self.hidR, self.hidC, self.hidS = args.hidRNN, args.hidCNN, args.hidSkip
        self.Ck, self.skip, self.hw = args.CNN_kernel, args.skip, args.highway_window
        self.pt = (self.P - self.Ck) // self.skip  # periods seen by the skip GRU
        self.conv1 = nn.Conv2d(1, self.hidC, kernel_size=(self.Ck, self.m))
        self.GRU1 = nn.GRU(self.hidC, self.hidR)
        self.dropout = nn.Dropout(p=args.dropout)
        if self.skip > 0:
            self.GRUskip = nn.GRU(self.hidC, self.hidS)
            self.linear1 = nn.Linear(self.hidR + self.skip * self.hidS, self.m)
        else:
            self.linear1 = nn.Linear(self.hidR, self.m)
        if self.hw > 0:
            self.highway = nn.Linear(self.hw, 1)
        self.output = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(args.output_fun)

    def forward(self, x):
        b = x.size(0)
        # convolution over the window, one channel, kernel covering every series
        c = self.dropout(torch.relu(self.conv1(x.view(-1, 1, self.P, self.m))))
        c = torch.squeeze(c, 3)                              # (b, hidC, P - Ck + 1)
        # recurrent part: last hidden state of a GRU over time
        _, r = self.GRU1(c.permute(2, 0, 1).contiguous())
        r = self.dropout(torch.squeeze(r, 0))
        # recurrent-skip part: the last pt * skip steps as skip interleaved sequences of length pt
        if self.skip > 0:
            s = c[:, :, int(-self.pt * self.skip):].contiguous()
            s = s.view(b, self.hidC, self.pt, self.skip).permute(2, 0, 3, 1).contiguous()
            _, s = self.GRUskip(s.view(self.pt, b * self.skip, self.hidC))
            s = self.dropout(s.view(b, self.skip * self.hidS))
            r = torch.cat((r, s), 1)
        res = self.linear1(r)
        # autoregressive highway on the last hw rows, series by series
        if self.hw > 0:
            z = x[:, -self.hw:, :].permute(0, 2, 1).contiguous().view(-1, self.hw)
            res = res + self.highway(z).view(-1, self.m)
        if self.output is not None:
            res = self.output(res)
        return res


def _args():
    return argparse.Namespace(window=WINDOW, hidRNN=16, hidCNN=8, hidSkip=4, CNN_kernel=3, skip=2,
                              highway_window=4, dropout=0.0, output_fun="sigmoid")


def _model():
    torch.manual_seed(0)
    return LSTNetLike(_args(), argparse.Namespace(m=SERIES)).double().train()


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
