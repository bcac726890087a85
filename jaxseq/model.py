"""The model: an LSTM layer with PyTorch's parameterization, and LSTM + linear head.

Parameters are stored exactly as torch.nn.LSTM stores them (same names, shapes,
gate order), so conversion is a table of copies (see `jaxseq.convert`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def enable_dtype(dtype) -> jnp.dtype:
    """Returns `dtype` as a JAX dtype, switching JAX's x64 mode on for float64 only."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return dtype


def torch_uniform(fan_in: int) -> nnx.Initializer:
    """PyTorch's LSTM and Linear initialiser: uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class LSTM(nnx.Module):
    """One LSTM layer, parameterized and called like `torch.nn.LSTM(I, H, batch_first=True)`.

    With gates in PyTorch's order i, f, g, o, for each time step t:

        i, f, g, o = split(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh, 4)
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    Both biases are kept, as in PyTorch: under SGD or Adam each one moves on its
    own, so their sum moves twice as fast as a single bias would.

    init="torch" draws all four tensors uniformly in ±1/sqrt(H) (PyTorch's rule,
    JAX's random numbers); init="flax" uses the stock `nnx.LSTMCell` initialisers
    (LeCun normal input kernels, orthogonal recurrent kernels per gate, zero biases).

    >>> lstm = LSTM(1, 100, rngs=nnx.Rngs(0))
    >>> output_BxTxH, (h_n_1xBxH, c_n_1xBxH) = lstm(jnp.zeros((2, 21, 1)))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        init: str = "torch",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.input_size = input_size
        self.hidden_size = hidden_size
        I, H = input_size, hidden_size
        if init == "torch":
            uniform = torch_uniform(H)
            w_ih = uniform(rngs.params(), (4 * H, I), param_dtype)
            w_hh = uniform(rngs.params(), (4 * H, H), param_dtype)
            b_ih = uniform(rngs.params(), (4 * H,), param_dtype)
            b_hh = uniform(rngs.params(), (4 * H,), param_dtype)
        elif init == "flax":
            lecun = nnx.initializers.lecun_normal()
            orthogonal = nnx.initializers.orthogonal()
            w_ih = jnp.concatenate([lecun(rngs.params(), (I, H), param_dtype).T for _ in range(4)])
            w_hh = jnp.concatenate([orthogonal(rngs.params(), (H, H), param_dtype).T for _ in range(4)])
            b_ih = jnp.zeros((4 * H,), param_dtype)
            b_hh = jnp.zeros((4 * H,), param_dtype)
        else:
            raise ValueError(f"init must be 'torch' or 'flax'; got {init!r}")
        self.weight_ih = nnx.Param(w_ih)  # (4H, I)
        self.weight_hh = nnx.Param(w_hh)  # (4H, H)
        self.bias_ih = nnx.Param(b_ih)  # (4H,)
        self.bias_hh = nnx.Param(b_hh)  # (4H,)

    def __call__(self, x_BxTxI, state=None):
        """Runs the layer over a batch-first sequence.

        Args:
          x_BxTxI: inputs, shape (B, T, I).
          state: optional (h0_1xBxH, c0_1xBxH), as PyTorch takes it; zeros when None.
        Returns:
          (output_BxTxH, (h_n_1xBxH, c_n_1xBxH)), as PyTorch returns it.
        """
        w_ih = self.weight_ih[...]
        w_hh_Hx4H = self.weight_hh[...].T
        dtype = w_ih.dtype
        x_BxTxI = jnp.asarray(x_BxTxI, dtype)
        B, T, _ = x_BxTxI.shape
        H = self.hidden_size
        if state is None:
            h_BxH = jnp.zeros((B, H), dtype)
            c_BxH = jnp.zeros((B, H), dtype)
        else:
            h_BxH, c_BxH = (jnp.asarray(s, dtype)[0] for s in state)

        # The input projection does not depend on the state: one matmul for all steps.
        xw_TxBx4H = jnp.einsum("bti,gi->tbg", x_BxTxI, w_ih) + (self.bias_ih[...] + self.bias_hh[...])

        def step(carry, xw_Bx4H):
            h_BxH, c_BxH = carry
            gates_Bx4H = xw_Bx4H + h_BxH @ w_hh_Hx4H
            i, f, g, o = jnp.split(gates_Bx4H, 4, axis=-1)
            c_BxH = jax.nn.sigmoid(f) * c_BxH + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_BxH = jax.nn.sigmoid(o) * jnp.tanh(c_BxH)
            return (h_BxH, c_BxH), h_BxH

        (h_BxH, c_BxH), out_TxBxH = jax.lax.scan(step, (h_BxH, c_BxH), xw_TxBx4H, unroll=min(T, 32))
        return jnp.swapaxes(out_TxBxH, 0, 1), (h_BxH[None], c_BxH[None])


class Model(nnx.Module):
    """The seed question's model: LSTM, then a linear head at every time step.

    (B, T, I) -> (B, T, O). Names mirror torchseq's module (`lstm`, `linear`).

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
        init: str = "torch",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.lstm = LSTM(input_size, hidden_size, init=init, param_dtype=param_dtype, rngs=rngs)
        if init == "torch":
            kernel_init, bias_init = torch_uniform(hidden_size), torch_uniform(hidden_size)
        else:
            kernel_init, bias_init = nnx.initializers.lecun_normal(), nnx.initializers.zeros_init()
        self.linear = nnx.Linear(
            hidden_size,
            output_size,
            kernel_init=kernel_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
            dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x_BxTxI):
        output_BxTxH, _ = self.lstm(x_BxTxI)
        return self.linear(output_BxTxH)
