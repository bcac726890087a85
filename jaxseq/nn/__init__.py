"""The layer library: torch-exact layers in Flax NNX, holding their tensors under torch's names and
in torch's layouts, so a state_dict moves in and out by key with nothing transposed.

- `layers`: Linear, Embedding, LayerNorm, Conv1d, BatchNorm1d, Dropout, activations, containers,
  and the functional forms they use (`embedding`, `layer_norm`, `conv1d`, ...).
- `recurrent`: torch.nn.LSTM / GRU / RNN with every option (layers, directions, projections,
  lengths), built on `kernels`.
- `kernels`: one direction of one LSTM or GRU layer over a whole sequence, with a hand-written
  backward pass.
- `buckets`: `pad_to_bucket`, a batch padded to one of a few lengths, so that varying lengths
  compile once per bucket (exact for recurrent layers given the lengths).
- `model`: the seed question's model (a recurrent layer and a linear head) and its `Architecture`.

The lowest layer of jaxseq: it imports nothing of the rest (see docs/architecture.md).
"""

from jaxseq.nn.buckets import bucket_length, pad_to_bucket
from jaxseq.nn.layers import (
    GELU,
    BatchNorm1d,
    Buffer,
    Conv1d,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    Module,
    ModuleDict,
    ModuleList,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    conv1d,
    dropout,
    embedding,
    flatten,
    gelu,
    layer_norm,
    leaky_relu,
    set_training,
    softmax_dim,
    torch_uniform,
)
from jaxseq.nn.model import Architecture, Model, enable_dtype
from jaxseq.nn.recurrent import GRU, LSTM, RNN, RNNBase

__all__ = [
    "Architecture", "BatchNorm1d", "Buffer", "Conv1d", "Dropout", "Embedding", "Flatten", "GELU", "GRU", "Identity",
    "LSTM", "LayerNorm", "LeakyReLU", "Linear", "LogSoftmax", "Model", "Module", "ModuleDict", "ModuleList", "RNN",
    "RNNBase", "ReLU", "Sequential", "SiLU", "Sigmoid", "Softmax", "Tanh", "bucket_length", "conv1d", "dropout",
    "embedding", "enable_dtype", "flatten", "gelu", "layer_norm", "leaky_relu", "pad_to_bucket", "set_training",
    "softmax_dim", "torch_uniform",
]
