"""The model: a recurrent layer (LSTM, GRU or RNN) and a linear head, as torchseq's.

`jaxseq.nn.model.Architecture` is the one description of it (torch's vocabulary: hidden_size,
num_layers) from which both frameworks build it: `Architecture.build` for JAX (this Model),
`torchseq.model.build` for PyTorch.
Parameters are stored exactly as torch.nn.LSTM/GRU/RNN and nn.Linear store them (names, shapes,
gate order, layouts), so a parameter's path joined by "." is its torch state_dict key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseq.nn import recurrent
from jaxseq.nn.layers import Linear

class Architecture(NamedTuple):
    """What a Model is: the layer kind, sizes, depth and directions (torch.nn's option names)."""

    cell: str = "lstm"  # "lstm", "gru" or "rnn" (tanh)
    input_size: int = 1
    hidden_size: int = 100
    output_size: int = 1
    num_layers: int = 1
    bidirectional: bool = False

    @classmethod
    def of_run(cls, config, input_size: int, output_size: int) -> Architecture:
        """The architecture a run trains, for data of these feature sizes. `config`: the
        application's TrainConfig (read for cell, hidden, layers, bidirectional; not imported here,
        as the layers sit below the application)."""
        return cls(config.cell, input_size, config.hidden, output_size, config.layers, config.bidirectional)

    @property
    def features(self) -> int:
        """What the head sees: both directions' outputs, concatenated."""
        return self.hidden_size * (2 if self.bidirectional else 1)

    def build(self, *, dtype="float32", seed: int = 0, init: str = "torch"):
        """The `jaxseq.Model` of this architecture, initialised by `init` from `seed` (JAX's random numbers)."""
        return Model(**self._asdict(), init=init, param_dtype=enable_dtype(dtype), rngs=nnx.Rngs(seed))


LAYERS = {"lstm": recurrent.LSTM, "gru": recurrent.GRU, "rnn": recurrent.RNN}


def enable_dtype(dtype) -> jnp.dtype:
    """Returns `dtype` as a JAX dtype, switching JAX's x64 mode on for float64 only."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return dtype


class Model(nnx.Module):
    """The seed question's model, generalised as torchseq's: a recurrent layer, then a linear head
    at every time step. (B, T, I) -> (B, T, O).

    The recurrent layer (`jaxseq.nn.recurrent`, batch_first) is the attribute named by `cell`, so
    parameter paths read like PyTorch's keys (`lstm.weight_ih_l0`, `gru.weight_hh_l1_reverse`,
    `linear.weight`). init="torch" draws every tensor as PyTorch does (JAX's random numbers);
    init="flax" (one-layer, one-direction LSTM only) uses the stock `nnx.LSTMCell` initialisers:
    LeCun normal input kernels, orthogonal recurrent kernels per gate, zero biases, and LeCun
    normal / zero for the head.

    >>> model = Model(hidden_size=100, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((1, 21, 1))).shape
    (1, 21, 1)
    """

    def __init__(
        self,
        input_size: int = 1,
        hidden_size: int = 100,
        output_size: int = 1,
        *,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        init: str = "torch",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}; got {cell!r}")
        if init not in ("torch", "flax"):
            raise ValueError(f"init must be 'torch' or 'flax'; got {init!r}")
        if init == "flax" and (cell, num_layers, bidirectional) != ("lstm", 1, False):
            raise ValueError("init='flax' is for the single-layer, one-direction LSTM only")
        self.cell = cell
        layer = LAYERS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        setattr(self, cell, layer)
        features = hidden_size * (2 if bidirectional else 1)
        self.linear = Linear(features, output_size, param_dtype=param_dtype, rngs=rngs)
        if init == "flax":
            _flax_init(self, rngs)

    @property
    def recurrent(self) -> recurrent.RNNBase:
        """The recurrent layer (`self.lstm`, `self.gru` or `self.rnn`)."""
        return getattr(self, self.cell)

    @property
    def architecture(self) -> Architecture:
        layer = self.recurrent
        return Architecture(
            self.cell,
            layer.input_size,
            layer.hidden_size,
            self.linear.out_features,
            layer.num_layers,
            layer.bidirectional,
        )

    def __call__(self, x_BxTxI, lengths=None):
        """(B, T, I) -> (B, T, O). `lengths` (B,): sequences padded at the end, valid for their first
        lengths[b] steps, as with PyTorch's packed sequences (a reverse direction starts at each
        sequence's last valid step). Outputs at padded steps are not meaningful."""
        output_BxTxF, _ = self.recurrent(x_BxTxI, lengths=lengths)
        return self.linear(output_BxTxF)


def _flax_init(model: Model, rngs: nnx.Rngs) -> None:
    """Re-draws the one-layer LSTM and the head with the stock Flax initialisers (see Model)."""
    lstm, dtype = model.lstm, model.lstm.weight_ih_l0[...].dtype
    I, H = lstm.input_size, lstm.hidden_size
    lecun, orthogonal = nnx.initializers.lecun_normal(), nnx.initializers.orthogonal()
    lstm.weight_ih_l0 = nnx.Param(jnp.concatenate([lecun(rngs.params(), (I, H), dtype).T for _ in range(4)]))
    lstm.weight_hh_l0 = nnx.Param(jnp.concatenate([orthogonal(rngs.params(), (H, H), dtype).T for _ in range(4)]))
    lstm.bias_ih_l0 = nnx.Param(jnp.zeros((4 * H,), dtype))
    lstm.bias_hh_l0 = nnx.Param(jnp.zeros((4 * H,), dtype))
    head = model.linear
    head.weight = nnx.Param(lecun(rngs.params(), (head.in_features, head.out_features), dtype).T)
    head.bias = nnx.Param(jnp.zeros((head.out_features,), dtype))
