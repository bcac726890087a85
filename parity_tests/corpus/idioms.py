"""Six small models written the way tutorials and blog posts write them (not copied from any one
repository; written for this corpus), each with its own make function returning the keyword
arguments of jaxseq.parity.check:

  make_zeros_state         (a) initial states made in forward with torch.zeros(x.size(0), H)
  make_masked              (b) a padding mask from ids != pad, masked_fill, a clamped length
  make_lstmcell_loop       (c) an nn.LSTMCell stepped in a Python loop over time
  make_conv_bn_bigru       (d) Conv2d + BatchNorm2d (training mode) + bidirectional GRU
  make_mha_over_lstm       (e) nn.MultiheadAttention over an LSTM's outputs
  make_cumsum_where_detach (f) cumsum, torch.where and .detach() inside forward

All run in float64 and train mode (no dropout).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T, F_IN, H, VOCAB, CLASSES, STEPS = 4, 8, 6, 16, 20, 5, 5


def _gen():
    return torch.Generator().manual_seed(0)


# (a) -----------------------------------------------------------------------------------------
class ZerosStateGRU(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.cell = nn.GRUCell(hidden_size, hidden_size)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        # Set initial hidden states (dtype=x.dtype: a bare torch.zeros(...) is float32 and
        # breaks a float64 model, see yunjey_rnn.py)
        h0 = torch.zeros(1, x.size(0), self.hidden_size, dtype=x.dtype)
        out, _ = self.gru(x, h0)
        h = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype)
        h = self.cell(out[:, -1, :], h)
        return self.fc(h)


def make_zeros_state():
    torch.manual_seed(0)
    model = ZerosStateGRU(F_IN, H, CLASSES).double()
    g = _gen()
    batches = [
        (torch.randn(B, T, F_IN, generator=g, dtype=torch.float64), torch.randint(0, CLASSES, (B,), generator=g))
        for _ in range(STEPS)
    ]
    return dict(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        batches=batches,
        loss="cross_entropy",
        steps=STEPS,
    )


# (b) -----------------------------------------------------------------------------------------
PAD = 0


class MaskedMeanLSTM(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden_dim, num_classes, pad_idx=PAD):
        super().__init__()
        self.pad_idx = pad_idx
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_idx)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, ids):
        mask = ids != self.pad_idx  # (B, T) True on real tokens
        out, _ = self.lstm(self.embedding(ids))  # (B, T, H)
        out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)
        pooled = out.sum(dim=1) / lengths
        return self.fc(pooled)


def make_masked():
    torch.manual_seed(0)
    model = MaskedMeanLSTM(VOCAB, 12, H, CLASSES).double()
    g = _gen()
    batches = []
    for _ in range(STEPS):
        ids = torch.randint(1, VOCAB, (B, T), generator=g)
        lengths = torch.randint(2, T + 1, (B,), generator=g)
        ids = ids.masked_fill(torch.arange(T)[None, :] >= lengths[:, None], PAD)  # right padding
        batches.append((ids, torch.randint(0, CLASSES, (B,), generator=g)))
    return dict(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        batches=batches,
        loss="cross_entropy",
        steps=STEPS,
    )


# (c) -----------------------------------------------------------------------------------------
class LSTMCellLoop(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        h = x.new_zeros(x.size(0), self.hidden_size)
        c = x.new_zeros(x.size(0), self.hidden_size)
        outputs = []
        for t in range(x.size(1)):
            h, c = self.cell(x[:, t, :], (h, c))
            outputs.append(self.fc(h))
        return torch.stack(outputs, dim=1)


def make_lstmcell_loop():
    torch.manual_seed(0)
    model = LSTMCellLoop(F_IN, H, 2).double()
    g = _gen()
    batches = [
        (
            torch.randn(B, T, F_IN, generator=g, dtype=torch.float64),
            torch.randn(B, T, 2, generator=g, dtype=torch.float64),
        )
        for _ in range(STEPS)
    ]
    return dict(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        batches=batches,
        loss="mse",
        steps=STEPS,
    )


# (d) -----------------------------------------------------------------------------------------
class ConvBNBiGRU(nn.Module):
    def __init__(self, n_feats, channels, hidden, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.gru = nn.GRU(channels * n_feats, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, x):  # x: (batch, 1, time, feats)
        x = F.relu(self.bn(self.conv(x)))  # (batch, C, time, feats)
        b, c, t, f = x.size()
        x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)
        x, _ = self.gru(x)  # (batch, time, 2 * hidden)
        return self.fc(x[:, -1, :])


def make_conv_bn_bigru():
    torch.manual_seed(0)
    model = ConvBNBiGRU(F_IN, 4, H, CLASSES).double().train()  # BatchNorm2d uses batch statistics
    g = _gen()
    batches = [
        (torch.randn(B, 1, T, F_IN, generator=g, dtype=torch.float64), torch.randint(0, CLASSES, (B,), generator=g))
        for _ in range(STEPS)
    ]
    return dict(
        model=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
        batches=batches,
        loss="cross_entropy",
        steps=STEPS,
    )


# (e) -----------------------------------------------------------------------------------------
class LSTMSelfAttention(nn.Module):
    def __init__(self, input_size, hidden_size, num_heads, num_classes):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        attn_out, _ = self.attn(out, out, out)
        out = self.norm(out + attn_out)
        return self.fc(out.mean(dim=1))


def make_mha_over_lstm():
    torch.manual_seed(0)
    model = LSTMSelfAttention(F_IN, H, 2, CLASSES).double()
    g = _gen()
    batches = [
        (torch.randn(B, T, F_IN, generator=g, dtype=torch.float64), torch.randint(0, CLASSES, (B,), generator=g))
        for _ in range(STEPS)
    ]
    return dict(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        batches=batches,
        loss="cross_entropy",
        clip_grad_norm=1.0,
        steps=STEPS,
    )


# (f) -----------------------------------------------------------------------------------------
class CumsumGate(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.rnn = nn.GRU(input_size, hidden_size, batch_first=True)
        self.gate = nn.Linear(hidden_size, 1)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, x):
        h, _ = self.rnn(x)  # (B, T, H)
        g = torch.sigmoid(self.gate(h))  # (B, T, 1)
        progress = torch.cumsum(g, dim=1)
        progress = progress / progress[:, -1:, :].detach()  # normalised, no gradient via the total
        h = torch.where(progress > 0.5, h, 0.5 * h)  # damp the first half
        baseline = x.mean(dim=-1, keepdim=True).detach()
        return self.out(h).squeeze(-1) + baseline.squeeze(-1)


def make_cumsum_where_detach():
    torch.manual_seed(0)
    model = CumsumGate(F_IN, H).double()
    g = _gen()
    batches = [
        (torch.randn(B, T, F_IN, generator=g, dtype=torch.float64), torch.randn(B, T, generator=g, dtype=torch.float64))
        for _ in range(STEPS)
    ]
    return dict(
        model=model,
        optimizer=torch.optim.RMSprop(model.parameters(), lr=1e-2),
        batches=batches,
        loss="smooth_l1",
        steps=STEPS,
    )
