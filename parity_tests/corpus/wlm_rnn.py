"""Word-level language model: embedding -> multi-layer LSTM -> linear decoder tied to the
embedding, log-probabilities out, the (h, c) state passed in and returned (written for this corpus
after the architecture of pytorch/examples' word_language_model; no upstream code is copied)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, WIDTH, LAYERS, BPTT, BATCH, STEPS = 20, 16, 2, 6, 3, 5


# Modelled on pytorch/examples word_language_model/model.py (RNNModel): same layers and forward idioms, written here (the upstream code is not copied).
class TiedLSTMLanguageModel(nn.Module):
    def __init__(self, vocab, width, layers, dropout=0.0):
        super().__init__()
        self.vocab, self.width, self.layers = vocab, width, layers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, width)
        self.rnn = nn.LSTM(width, width, layers, dropout=dropout)  # (T, B, E): sequence first
        self.decoder = nn.Linear(width, vocab)
        self.decoder.weight = self.encoder.weight  # weight tying (needs hidden size == embedding size)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch):
        w = next(self.parameters())
        return (w.new_zeros(self.layers, batch, self.width), w.new_zeros(self.layers, batch, self.width))

    def forward(self, tokens, hidden):
        seq, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        logits = self.decoder(self.drop(seq)).view(-1, self.vocab)
        return F.log_softmax(logits, dim=1), hidden


def _model():
    torch.manual_seed(0)
    return TiedLSTMLanguageModel(VOCAB, WIDTH, LAYERS).double().train()


def _stream(steps=STEPS):
    """A (length, batch) token stream cut into BPTT chunks; targets are the next tokens, flattened."""
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, VOCAB, (steps * BPTT + 1, BATCH), generator=g)
    return [(data[i:i + BPTT], data[i + 1:i + 1 + BPTT].reshape(-1)) for i in range(0, steps * BPTT, BPTT)]


def make():
    """Every step starts from init_hidden; plain SGD lr 20 and clip 0.25 as the example trains."""
    model = _model()
    h0 = model.init_hidden(BATCH)
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=20.0),
                batches=[(x, h0, y) for x, y in _stream()], loss="nll", clip_grad_norm=0.25, steps=STEPS)


def make_upstream():
    """The example's loop: the hidden state is carried, detached, from chunk to chunk."""
    model = _model()
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=20.0), batches=_stream(),
                loss=nn.NLLLoss(), clip_grad_norm=0.25, hidden=model.init_hidden(BATCH), steps=STEPS)
