"""Sequence-to-sequence translation: a GRU encoder and a GRU decoder with additive (Bahdanau)
attention, decoding MAX_LENGTH steps from SOS with teacher forcing, log_softmax outputs (written
for this corpus after the architecture of pytorch/tutorials' seq2seq_translation_tutorial; no
upstream code is copied). Dropout 0, train mode."""

import torch
import torch.nn as nn
import torch.nn.functional as F

SOS, EOS = 0, 1
IN_WORDS, OUT_WORDS, HIDDEN, MAX_LENGTH, BATCH, STEPS = 12, 10, 16, 4, 3, 5


# Modelled on pytorch/tutorials intermediate_source/seq2seq_translation_tutorial.py (EncoderRNN): same layers and forward idioms, written here (the upstream code is not copied).
class GRUEncoder(nn.Module):
    def __init__(self, n_words, hidden, dropout_p=0.0):
        super().__init__()
        self.embedding = nn.Embedding(n_words, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, ids):
        return self.gru(self.dropout(self.embedding(ids)))  # (outputs (B, T, H), last (1, B, H))


# Modelled on pytorch/tutorials intermediate_source/seq2seq_translation_tutorial.py (BahdanauAttention): same layers and forward idioms, written here (the upstream code is not copied).
class AdditiveAttention(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.Wa = nn.Linear(hidden, hidden)
        self.Ua = nn.Linear(hidden, hidden)
        self.Va = nn.Linear(hidden, 1)

    def forward(self, query, keys):
        # query (B, 1, H), keys (B, T, H) -> energies (B, 1, T)
        energy = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys))).squeeze(2).unsqueeze(1)
        weights = F.softmax(energy, dim=-1)
        return torch.bmm(weights, keys), weights


# Modelled on pytorch/tutorials intermediate_source/seq2seq_translation_tutorial.py (AttnDecoderRNN): same layers and forward idioms, written here (the upstream code is not copied).
class AttentionGRUDecoder(nn.Module):
    def __init__(self, hidden, n_words, dropout_p=0.0):
        super().__init__()
        self.embedding = nn.Embedding(n_words, hidden)
        self.attention = AdditiveAttention(hidden)
        self.gru = nn.GRU(2 * hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_words)
        self.dropout = nn.Dropout(dropout_p)

    def step(self, token, state, memory):
        emb = self.dropout(self.embedding(token))               # (B, 1, H)
        context, weights = self.attention(state.permute(1, 0, 2), memory)
        out, state = self.gru(torch.cat((emb, context), dim=2), state)
        return self.out(out), state, weights

    def forward(self, memory, state, target=None):
        token = torch.empty(memory.size(0), 1, dtype=torch.long).fill_(SOS)
        logits, attn = [], []
        for t in range(MAX_LENGTH):
            y, state, w = self.step(token, state, memory)
            logits.append(y)
            attn.append(w)
            if target is not None:
                token = target[:, t].unsqueeze(1)                 # teacher forcing
            else:
                token = y.topk(1)[1].squeeze(-1).detach()         # greedy
        return F.log_softmax(torch.cat(logits, dim=1), dim=-1), state, torch.cat(attn, dim=1)


class EncoderDecoder(nn.Module):
    """Runs both halves as the tutorial's training epoch does; flat (B * T, words) log-probs out."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, src, tgt):
        memory, last = self.encoder(src)
        logp, _, _ = self.decoder(memory, last, tgt)
        return logp.view(-1, logp.size(-1))


def make():
    torch.manual_seed(0)
    model = EncoderDecoder(GRUEncoder(IN_WORDS, HIDDEN), AttentionGRUDecoder(HIDDEN, OUT_WORDS)).double().train()
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(STEPS):
        # ids, then EOS, then 0 padding up to MAX_LENGTH
        src = torch.zeros(BATCH, MAX_LENGTH, dtype=torch.long)
        tgt = torch.zeros(BATCH, MAX_LENGTH, dtype=torch.long)
        for b in range(BATCH):
            n, m = (int(v) for v in torch.randint(2, MAX_LENGTH, (2,), generator=g))
            src[b, :n - 1] = torch.randint(2, IN_WORDS, (n - 1,), generator=g)
            src[b, n - 1] = EOS
            tgt[b, :m - 1] = torch.randint(2, OUT_WORDS, (m - 1,), generator=g)
            tgt[b, m - 1] = EOS
        batches.append((src, tgt, tgt.view(-1)))
    # the tutorial: one Adam(lr=0.001) per half; one over both is the same update
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=0.001),
                batches=batches, loss="nll", steps=STEPS)
