"""The model: a recurrent layer (LSTM, GRU or RNN) and a linear head, as torchseq's.

Parameters are stored exactly as torch.nn.LSTM/GRU/RNN and nn.Linear store them (same names,
shapes, gate order), so conversion is a table of copies (see `jaxseq.convert`). The seed's
configuration (one LSTM layer, one direction) runs on `LSTM` below, whose backward pass is
written by hand; every other configuration on the general layers of `jaxseq.recurrent`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseq import recurrent
from jaxseq.recurrent import torch_uniform


def enable_dtype(dtype) -> jnp.dtype:
    """Returns `dtype` as a JAX dtype, switching JAX's x64 mode on for float64 only."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return dtype


class LSTM(nnx.Module):
    """One LSTM layer, parameterized and called like `torch.nn.LSTM(I, H, batch_first=True)`.

    The parameters are torch's: weight_ih_l0 (4H, I), weight_hh_l0 (4H, H), bias_ih_l0 and
    bias_hh_l0 (4H,).

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

    num_layers = 1  # as `jaxseq.recurrent.LSTM`'s, which serves every other configuration
    bidirectional = False

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
        self.weight_ih_l0 = nnx.Param(w_ih)  # (4H, I)
        self.weight_hh_l0 = nnx.Param(w_hh)  # (4H, H)
        self.bias_ih_l0 = nnx.Param(b_ih)  # (4H,)
        self.bias_hh_l0 = nnx.Param(b_hh)  # (4H,)

    def __call__(self, x_BxTxI, state=None):
        """Runs the layer over a batch-first sequence.

        Args:
          x_BxTxI: inputs, shape (B, T, I).
          state: optional (h0_1xBxH, c0_1xBxH), as PyTorch takes it; zeros when None.
        Returns:
          (output_BxTxH, (h_n_1xBxH, c_n_1xBxH)), as PyTorch returns it.
        """
        w_ih_4HxI = self.weight_ih_l0[...]
        dtype = w_ih_4HxI.dtype
        x_BxTxI = jnp.asarray(x_BxTxI, dtype)
        B, _, _ = x_BxTxI.shape
        H = self.hidden_size
        if state is None:
            h0_BxH = jnp.zeros((B, H), dtype)
            c0_BxH = jnp.zeros((B, H), dtype)
        else:
            h0_BxH, c0_BxH = (jnp.asarray(s, dtype)[0] for s in state)

        h_TxBxH, c_n_BxH = lstm_layer(
            jnp.swapaxes(x_BxTxI, 0, 1),  # time-major inside
            w_ih_4HxI,
            self.weight_hh_l0[...],
            self.bias_ih_l0[...],
            self.bias_hh_l0[...],
            h0_BxH,
            c0_BxH,
        )
        return jnp.swapaxes(h_TxBxH, 0, 1), (h_TxBxH[-1][None], c_n_BxH[None])


def gate_activations(gates_Bx4H):
    """[sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)] for gates = [i, f, g, o], in one elementwise pass.

    Uses sigmoid(x) = (1 + tanh(x / 2)) / 2, so a single tanh serves all four blocks.
    """
    H = gates_Bx4H.shape[-1] // 4
    is_g_4H = jnp.arange(4 * H) // H == 2
    tanh_Bx4H = jnp.tanh(jnp.where(is_g_4H, gates_Bx4H, 0.5 * gates_Bx4H))
    return jnp.where(is_g_4H, tanh_Bx4H, 0.5 + 0.5 * tanh_Bx4H)


def _lstm_scan(xw_TxBx4H, w_hh_4HxH, h0_BxH, c0_BxH):
    """The recurrence, saving what the backward pass needs: (h_TxBxH, c_TxBxH, act_TxBx4H)."""

    def step(carry, xw_Bx4H):
        h_BxH, c_BxH = carry
        # h W_hh^T as dot_general(h, W_hh) contracting H: XLA then calls a plain matvec/GEMM
        # instead of fusing a transpose of W_hh into a loop (about 1.4x faster at B=1).
        act_Bx4H = gate_activations(xw_Bx4H + jnp.einsum("bh,gh->bg", h_BxH, w_hh_4HxH))
        i, f, g, o = jnp.split(act_Bx4H, 4, axis=-1)
        c_BxH = f * c_BxH + i * g
        h_BxH = o * jnp.tanh(c_BxH)
        return (h_BxH, c_BxH), (h_BxH, c_BxH, act_Bx4H)

    _, (h_TxBxH, c_TxBxH, act_TxBx4H) = jax.lax.scan(step, (h0_BxH, c0_BxH), xw_TxBx4H)
    return h_TxBxH, c_TxBxH, act_TxBx4H


@jax.custom_vjp
def lstm_layer(x_TxBxI, w_ih_4HxI, w_hh_4HxH, b_ih_4H, b_hh_4H, h0_BxH, c0_BxH):
    """The LSTM layer on a time-major sequence. Returns (h_TxBxH, c_T_BxH).

    The input projection xw_t = x_t W_ih^T + b_ih + b_hh does not depend on the state, so it is
    one matmul over all steps; then for t = 1..T: i, f, g, o = split(xw_t + h_{t-1} W_hh^T, 4);
    c_t = s(f) c_{t-1} + s(i) tanh(g); h_t = s(o) tanh(c_t), with s = sigmoid.

    Its backward pass (`_lstm_layer_bwd`) is written by hand so that all four parameter
    gradients come from one matmul over all steps (see there), rather than T outer products
    accumulated inside the reverse scan.
    """
    xw_TxBx4H = _input_projection(x_TxBxI, w_ih_4HxI, b_ih_4H, b_hh_4H)
    h_TxBxH, c_TxBxH, _ = _lstm_scan(xw_TxBx4H, w_hh_4HxH, h0_BxH, c0_BxH)
    return h_TxBxH, c_TxBxH[-1]


def _input_projection(x_TxBxI, w_ih_4HxI, b_ih_4H, b_hh_4H):
    return jnp.einsum("tbi,gi->tbg", x_TxBxI, w_ih_4HxI) + (b_ih_4H + b_hh_4H)


def _lstm_layer_fwd(x_TxBxI, w_ih_4HxI, w_hh_4HxH, b_ih_4H, b_hh_4H, h0_BxH, c0_BxH):
    xw_TxBx4H = _input_projection(x_TxBxI, w_ih_4HxI, b_ih_4H, b_hh_4H)
    h_TxBxH, c_TxBxH, act_TxBx4H = _lstm_scan(xw_TxBx4H, w_hh_4HxH, h0_BxH, c0_BxH)
    residuals = (x_TxBxI, w_ih_4HxI, w_hh_4HxH, h_TxBxH, c_TxBxH, act_TxBx4H, h0_BxH, c0_BxH)
    return (h_TxBxH, c_TxBxH[-1]), residuals


def _lstm_layer_bwd(residuals, cotangents):
    """Backpropagation through time. With dh_t the gradient reaching h_t (from the output and
    from step t+1) and dc_t the one reaching c_t:

        dc_t += dh_t s(o) (1 - tanh(c_t)^2)
        dgates_t = [dc_t tanh(g) s(i)(1 - s(i)),  dc_t c_{t-1} s(f)(1 - s(f)),
                    dc_t s(i) (1 - tanh(g)^2),    dh_t tanh(c_t) s(o)(1 - s(o))]
        dh_{t-1} += dgates_t W_hh,   dc_{t-1} = dc_t s(f)

    Then, summing over (t, b), with z_t = [h_{t-1}, x_t, 1]:

        [dW_hh^T; dW_ih^T; db] = sum_t z_t^T dgates_t       (one matmul)

    and db_ih = db_hh = db; dx_t = dgates_t W_ih. The matmul contracts the leading (t, b) axes
    of both operands, so XLA lays out only the small z transposed, not dgates (4x larger).
    """
    x_TxBxI, w_ih_4HxI, w_hh_4HxH, h_TxBxH, c_TxBxH, act_TxBx4H, h0_BxH, c0_BxH = residuals
    dh_TxBxH, dc_n_BxH = cotangents
    H, I = w_hh_4HxH.shape[1], w_ih_4HxI.shape[1]
    is_g_4H = jnp.arange(4 * H) // H == 2
    c_prev_TxBxH = jnp.concatenate([c0_BxH[None], c_TxBxH[:-1]])

    def step(carry, xs):
        dh_next_BxH, dc_BxH = carry  # dh_next: the part of dh_t coming from step t+1
        dh_out_BxH, act_Bx4H, c_BxH, c_prev_BxH = xs
        i, f, g, o = jnp.split(act_Bx4H, 4, axis=-1)
        dh_BxH = dh_out_BxH + dh_next_BxH
        tanh_c_BxH = jnp.tanh(c_BxH)
        dc_BxH = dc_BxH + dh_BxH * o * (1 - tanh_c_BxH * tanh_c_BxH)
        # All four blocks in one elementwise pass: dgates = upstream * other * slope(act)
        upstream_Bx4H = jnp.concatenate([dc_BxH, dc_BxH, dc_BxH, dh_BxH], axis=-1)
        other_Bx4H = jnp.concatenate([g, c_prev_BxH, i, tanh_c_BxH], axis=-1)
        slope_Bx4H = jnp.where(is_g_4H, 1 - act_Bx4H * act_Bx4H, act_Bx4H * (1 - act_Bx4H))
        dgates_Bx4H = upstream_Bx4H * other_Bx4H * slope_Bx4H
        dh_prev_BxH = jnp.einsum("bg,gh->bh", dgates_Bx4H, w_hh_4HxH)
        return (dh_prev_BxH, dc_BxH * f), dgates_Bx4H

    zeros_BxH = jnp.zeros_like(dc_n_BxH)
    (dh0_BxH, dc0_BxH), dgates_TxBx4H = jax.lax.scan(
        step, (zeros_BxH, dc_n_BxH), (dh_TxBxH, act_TxBx4H, c_TxBxH, c_prev_TxBxH), reverse=True
    )
    z_TxBxK = jnp.concatenate(
        [jnp.concatenate([h0_BxH[None], h_TxBxH[:-1]]), x_TxBxI, jnp.ones_like(x_TxBxI[..., :1])], axis=-1
    )
    # As (T*B, K) and (T*B, 4H): XLA may not then reorder (t, b) and transpose dgates to match.
    T, B, K = z_TxBxK.shape
    dzw_Kx4H = jnp.einsum("nk,ng->kg", z_TxBxK.reshape(T * B, K), dgates_TxBx4H.reshape(T * B, 4 * H))
    dw_hh_4HxH, dw_ih_4HxI, db_4H = dzw_Kx4H[:H].T, dzw_Kx4H[H : H + I].T, dzw_Kx4H[H + I]
    dx_TxBxI = jnp.einsum("tbg,gi->tbi", dgates_TxBx4H, w_ih_4HxI).astype(x_TxBxI.dtype)
    return dx_TxBxI, dw_ih_4HxI, dw_hh_4HxH, db_4H, db_4H, dh0_BxH, dc0_BxH


lstm_layer.defvjp(_lstm_layer_fwd, _lstm_layer_bwd)


LAYERS = {"lstm": recurrent.LSTM, "gru": recurrent.GRU, "rnn": recurrent.RNN}


class Model(nnx.Module):
    """The seed question's model, generalised as torchseq's: a recurrent layer, then a linear head
    at every time step. (B, T, I) -> (B, T, O).

    The recurrent layer is the attribute named by `cell` ("lstm", "gru" or "rnn"), as in torchseq,
    so parameter paths read like PyTorch's keys (`lstm.weight_ih_l0`, `gru.weight_hh_l1_reverse`).
    With `num_layers` 1 and one direction, the LSTM is `jaxseq.model.LSTM` (fast backward pass);
    otherwise it is `jaxseq.recurrent.LSTM`/`GRU`/`RNN` (batch_first). The head sees both
    directions' outputs, concatenated (D*H features).

    >>> model = Model(hidden_size=100, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((1, 21, 1))).shape
    (1, 21, 1)
    >>> Model(1, 16, 1, cell="gru", num_layers=2, bidirectional=True, rngs=nnx.Rngs(0)).gru.num_layers
    2
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
        self.cell = cell
        if (cell, num_layers, bidirectional) == ("lstm", 1, False):
            layer = LSTM(input_size, hidden_size, init=init, param_dtype=param_dtype, rngs=rngs)
        elif init != "torch":
            raise ValueError(f"init={init!r} is for the single-layer, one-direction LSTM only")
        else:
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
        if init == "torch":  # nn.Linear's rule: uniform in ±1/sqrt(fan_in)
            kernel_init, bias_init = torch_uniform(features), torch_uniform(features)
        else:
            kernel_init, bias_init = nnx.initializers.lecun_normal(), nnx.initializers.zeros_init()
        self.linear = nnx.Linear(
            features,
            output_size,
            kernel_init=kernel_init,
            bias_init=bias_init,
            param_dtype=param_dtype,
            dtype=param_dtype,
            rngs=rngs,
        )

    @property
    def recurrent(self) -> nnx.Module:
        """The recurrent layer (`self.lstm`, `self.gru` or `self.rnn`)."""
        return getattr(self, self.cell)

    @property
    def input_size(self) -> int:
        return self.recurrent.input_size

    def __call__(self, x_BxTxI, lengths=None):
        """(B, T, I) -> (B, T, O). `lengths` (B,): sequences padded at the end, valid for their first
        lengths[b] steps. Only a reverse direction needs them (it then starts at each sequence's
        last valid step, as with PyTorch's packed sequences); a forward direction's output at a
        valid step never depends on the padding. Outputs at padded steps are not meaningful."""
        layer = self.recurrent
        if lengths is not None and layer.bidirectional:
            output_BxTxF, _ = layer(x_BxTxI, lengths=lengths)
        else:
            output_BxTxF, _ = layer(x_BxTxI)
        return self.linear(output_BxTxF)
