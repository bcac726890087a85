"""A DeepSpeech-style CTC encoder as MLCommons' AlgoPerf LibriSpeech workload builds it: features
with a float padding mask (1.0 on padded frames) -> Conv2d subsampling (x4 in time, the mask
subsampled alongside with F.conv1d) -> linear -> bidirectional LSTM layers, each after a masked
batch norm, run through pack_padded_sequence on lengths taken with .cpu().numpy(), directions
summed -> residual feed-forward layers with a (1 + scale) layer norm -> layer norm -> linear;
the loss wrapper returns the CTC loss (per-sequence sums over the total target length). Written
for this corpus after the architecture of mlcommons/algorithmic-efficiency's DeepSpeech workload;
no upstream code is copied. No SpecAugment and no filterbank front end (inputs are features),
dropout 0, train mode. 16 input frames become 4 encoder steps."""

import torch
import torch.nn as nn
import torch.nn.functional as F

FEATURES, DIM, LSTM_LAYERS, FFN_LAYERS, VOCAB, FRAMES, BATCH, MAX_TARGET, STEPS = 8, 16, 2, 2, 8, 16, 3, 2, 5


def init_weights(module):
    """Xavier-uniform weights and zero biases on every Linear and Conv2d."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# Modelled on mlcommons/algorithmic-efficiency algoperf/workloads/librispeech_conformer/librispeech_pytorch/models.py (LayerNorm): same layers and forward idioms, written here (the upstream code is not copied).
class OffsetScaleLayerNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return F.layer_norm(x, (self.dim,), 1 + self.scale, self.bias, self.eps)


# Modelled on mlcommons/algorithmic-efficiency algoperf/workloads/librispeech_deepspeech/librispeech_pytorch/models.py (Conv2dSubsampling): same layers and forward idioms, written here (the upstream code is not copied).
class ConvSubsample(nn.Module):
    def __init__(self, n_features, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(1, dim, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1)
        freq = (n_features + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Linear(dim * freq, dim)

    @staticmethod
    def _halve_paddings(paddings):
        # a frame of the output is padded when the first input frame of its window is padded
        kernel = torch.ones(1, 1, 1, dtype=paddings.dtype)
        return F.conv1d(paddings.unsqueeze(1), kernel, stride=2).squeeze(1)

    def forward(self, x, paddings):
        y = F.relu(self.conv1(x.unsqueeze(1)))           # (B, C, T/2, F/2)
        y = F.relu(self.conv2(y))                        # (B, C, T/4, F/4)
        b, c, t, f = y.shape
        y = self.proj(y.permute(0, 2, 1, 3).reshape(b, t, c * f))
        p = self._halve_paddings(self._halve_paddings(paddings))
        return y, p


# Modelled on mlcommons/algorithmic-efficiency algoperf/workloads/librispeech_deepspeech/librispeech_pytorch/models.py (BatchNorm): same layers and forward idioms, written here (the upstream code is not copied).
class PaddedBatchNorm(nn.Module):
    def __init__(self, dim, momentum=0.999, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x, paddings):
        if self.training:
            keep = (1 - paddings).unsqueeze(-1)          # (B, T, 1)
            count = keep.sum()
            mean = (x * keep).sum(dim=(0, 1)) / count
            var = (((x - mean) * keep) ** 2).sum(dim=(0, 1)) / count
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean.detach())
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var.detach())
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * (1 + self.scale) + self.bias


# Modelled on mlcommons/algorithmic-efficiency algoperf/workloads/librispeech_deepspeech/librispeech_pytorch/models.py (BatchRNN): same layers and forward idioms, written here (the upstream code is not copied).
class PackedBiLSTM(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.bn = PaddedBatchNorm(dim)
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)

    def forward(self, x, paddings):
        x = self.bn(x, paddings)
        lengths = torch.sum(1 - paddings, dim=1).detach().cpu().numpy()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        return out[..., : self.dim] + out[..., self.dim:]


# Modelled on mlcommons/algorithmic-efficiency algoperf/workloads/librispeech_deepspeech/librispeech_pytorch/models.py (FeedForwardModule): same layers and forward idioms, written here (the upstream code is not copied).
class ResidualFFN(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = OffsetScaleLayerNorm(dim)
        self.lin = nn.Linear(dim, dim)

    def forward(self, x, paddings):
        y = F.relu(self.lin(self.norm(x))) * (1 - paddings).unsqueeze(-1)
        return x + y


# Modelled on mlcommons/algorithmic-efficiency algoperf/workloads/librispeech_deepspeech/librispeech_pytorch/models.py (DeepspeechEncoderDecoder): same layers and forward idioms, written here (the upstream code is not copied).
class SpeechEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.subsample = ConvSubsample(FEATURES, DIM)
        self.lstms = nn.ModuleList([PackedBiLSTM(DIM) for _ in range(LSTM_LAYERS)])
        self.ffns = nn.ModuleList([ResidualFFN(DIM) for _ in range(FFN_LAYERS)])
        self.final_norm = OffsetScaleLayerNorm(DIM)
        self.decoder = nn.Linear(DIM, VOCAB)
        self.apply(init_weights)

    def forward(self, feats, paddings):
        x, p = self.subsample(feats, paddings)
        for layer in self.lstms:
            x = layer(x, p)
        for layer in self.ffns:
            x = layer(x, p)
        return self.decoder(self.final_norm(x)), p


class CTCObjective(nn.Module):
    """The workload's loss: CTC per sequence (blank 0), summed, over the total target length."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.ctc = nn.CTCLoss(blank=0, reduction="none")

    def forward(self, feats, paddings, targets, target_paddings):
        logits, p = self.encoder(feats, paddings)
        logp = F.log_softmax(logits, dim=-1)
        in_len = torch.sum(1 - p, dim=1).long()
        tgt_len = torch.sum(1 - target_paddings, dim=1).long()
        per_seq = self.ctc(logp.transpose(0, 1), targets.long(), in_len, tgt_len)
        return per_seq.sum() / torch.clamp(tgt_len.sum(), min=1)


def make():
    torch.manual_seed(0)
    model = CTCObjective(SpeechEncoder()).double().train()
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(STEPS):
        feats = torch.randn(BATCH, FRAMES, FEATURES, generator=g, dtype=torch.float64)
        lengths = torch.randint(FRAMES - 4, FRAMES + 1, (BATCH,), generator=g)
        paddings = (torch.arange(FRAMES)[None, :] >= lengths[:, None]).double()
        tl = torch.randint(1, MAX_TARGET + 1, (BATCH,), generator=g)
        targets = torch.randint(1, VOCAB, (BATCH, MAX_TARGET), generator=g)
        tpad = (torch.arange(MAX_TARGET)[None, :] >= tl[:, None]).double()
        batches.append((feats, paddings, targets * (1 - tpad).long(), tpad))
    return dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), batches=batches, steps=STEPS)
