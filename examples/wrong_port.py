"""A hand-written JAX port with a training bug that its forward pass does not show; `jaxseq check`
catches it and names the step and the parameter.

    jaxseq check examples/wrong_port.py      # exits 1: diverges at step 1, first in `lstm.bias_hh_l0`

The torch model is an LSTM regressor. The port (`Port`) is an NNX module written by hand, with a
`lax.scan` LSTM. It keeps torch's names, so `check` loads torch's weights into it by name, and its
forward pass is exact. Its mistake: an LSTM has two biases per gate, b_ih and b_hh, and only their
sum enters the gates, so the port folds them into one trainable bias — it trains `bias_ih_l0` and
holds `bias_hh_l0` as a constant (a Buffer, not a Param). The forward and the loss agree; but
torch trains both biases, so in torch their sum moves twice as far each step. After the first
Adam step `lstm.bias_hh_l0` differs by about the learning rate, and the runs part from there.
The fix: make `bias_hh_l0` an nnx.Param, as torch's is.
"""

import jax
import jax.numpy as jnp
import torch
from flax import nnx
from torch import nn

import jaxseq.nn

I, H, O = 3, 8, 1  # input features, hidden units, outputs
B, T = 4, 10


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(I, H, batch_first=True)
        self.head = nn.Linear(H, O)

    def forward(self, x_BxTxI):
        h_BxTxH, _ = self.lstm(x_BxTxI)
        return self.head(h_BxTxH)


class FoldedBiasLSTM(nnx.Module):
    """One layer, batch_first, torch's gate order (i, f, g, o) and weight layouts."""

    def __init__(self, input_size: int, hidden_size: int):
        def zeros(shape):  # check loads torch's values over these
            return jnp.zeros(shape, jnp.float64)

        self.hidden_size = hidden_size
        self.weight_ih_l0 = nnx.Param(zeros((4 * hidden_size, input_size)))
        self.weight_hh_l0 = nnx.Param(zeros((4 * hidden_size, hidden_size)))
        self.bias_ih_l0 = nnx.Param(zeros((4 * hidden_size,)))
        self.bias_hh_l0 = jaxseq.nn.Buffer(zeros((4 * hidden_size,)))  # THE BUG: torch trains it

    def __call__(self, x_BxTxI):
        B = x_BxTxI.shape[0]
        bias_4H = self.bias_ih_l0[...] + self.bias_hh_l0[...]  # one bias per gate
        w_ih, w_hh = self.weight_ih_l0[...], self.weight_hh_l0[...]

        def cell(carry, x_BxI):
            h_BxH, c_BxH = carry
            i, f, g, o = jnp.split(x_BxI @ w_ih.T + h_BxH @ w_hh.T + bias_4H, 4, axis=-1)
            c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
            return (h_BxH, c_BxH), h_BxH

        zeros_BxH = jnp.zeros((B, self.hidden_size), x_BxTxI.dtype)
        (h_BxH, c_BxH), h_TxBxH = jax.lax.scan(cell, (zeros_BxH, zeros_BxH), jnp.swapaxes(x_BxTxI, 0, 1))
        return jnp.swapaxes(h_TxBxH, 0, 1), (h_BxH[None], c_BxH[None])


class Port(nnx.Module):
    def __init__(self):
        self.lstm = FoldedBiasLSTM(I, H)
        self.head = jaxseq.nn.Linear(H, O, param_dtype=jnp.float64, rngs=nnx.Rngs(0))

    def __call__(self, x_BxTxI):
        h_BxTxH, _ = self.lstm(x_BxTxI)
        return self.head(h_BxTxH)


def make():
    torch.manual_seed(0)
    model = Regressor().double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, I, generator=g, dtype=torch.float64)
    y = x.cumsum(dim=1)[..., :1] / T  # a running sum of the first feature
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    jax.config.update("jax_enable_x64", True)  # the port is float64, as the torch model
    return dict(model=model, optimizer=optimizer, loss="mse", batches=(x, y), steps=100, jax_model=Port())


if __name__ == "__main__":
    from jaxseq import parity

    print(parity.check(**make()).table())
