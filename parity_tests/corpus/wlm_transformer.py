"""Transformer language model: scaled embedding + sinusoidal positional encoding ->
nn.TransformerEncoder under a causal float mask -> linear decoder -> log_softmax (written for this
corpus after the architecture of pytorch/examples' word_language_model; no upstream code is
copied). Dropout 0, train mode."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, D_MODEL, HEADS, FF, LAYERS, BPTT, BATCH, STEPS = 20, 16, 2, 16, 2, 6, 3, 5


# Modelled on pytorch/examples word_language_model/model.py (PositionalEncoding): same layers and forward idioms, written here (the upstream code is not copied).
class SinusoidPositions(nn.Module):
    def __init__(self, d_model, dropout=0.0, max_len=64):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        pos = torch.arange(max_len, dtype=torch.float).unsqueeze(1)
        freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("pe", table.unsqueeze(1))  # (max_len, 1, d_model): sequence first

    def forward(self, x):
        return self.dropout(x + self.pe[: x.size(0)])


# Modelled on pytorch/examples word_language_model/model.py (TransformerModel): same layers and forward idioms, written here (the upstream code is not copied).
class CausalTransformerLM(nn.Module):
    def __init__(self, vocab, d_model, heads, ff, layers, dropout=0.0):
        super().__init__()
        self.d_model = d_model
        self.src_mask = None
        self.encoder = nn.Embedding(vocab, d_model)
        self.pos_encoder = SinusoidPositions(d_model, dropout)
        block = nn.TransformerEncoderLayer(d_model, heads, ff, dropout)
        self.transformer_encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.decoder = nn.Linear(d_model, vocab)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    @staticmethod
    def causal_mask(n):
        # 0 on and below the diagonal, -inf above it
        return torch.log(torch.tril(torch.ones(n, n)))

    def forward(self, src, has_mask=True):
        x = self.pos_encoder(self.encoder(src) * math.sqrt(self.d_model))
        if has_mask:
            if self.src_mask is None or self.src_mask.size(0) != len(src):
                self.src_mask = self.causal_mask(len(src)).to(x)
            mask = self.src_mask
        else:
            mask = None
        x = self.transformer_encoder(x, mask)
        return F.log_softmax(self.decoder(x), dim=-1)


class FlatOutput(nn.Module):
    """The training loop's output.view(-1, vocab) before NLLLoss, as a module."""

    def __init__(self, lm, vocab):
        super().__init__()
        self.lm, self.vocab = lm, vocab

    def forward(self, src):
        return self.lm(src).view(-1, self.vocab)


def make():
    torch.manual_seed(0)
    model = FlatOutput(CausalTransformerLM(VOCAB, D_MODEL, HEADS, FF, LAYERS), VOCAB).double().train()
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, VOCAB, (STEPS * BPTT + 1, BATCH), generator=g)
    batches = [(data[i:i + BPTT], data[i + 1:i + 1 + BPTT].reshape(-1)) for i in range(0, STEPS * BPTT, BPTT)]
    # the example trains with plain SGD lr 20 and clip 0.25; lr 20 blows the loss up to ~1e8 within
    # 5 steps at these sizes, so lr 1
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                batches=batches, loss="nll", clip_grad_norm=0.25, steps=STEPS)
