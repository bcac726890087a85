"""Recurrent layers and cells, kept whole: torch.export's `aten.lstm` / `gru` / `rnn_tanh` /
`rnn_relu` (padded `.input` form), jaxseq's `packed_rnn` (a layer fed `pack_padded_sequence`,
kept opaque during export: `jaxseq.port.export.OPAQUE`), and the single-step cells `lstm_cell`,
`gru_cell`, `rnn_tanh_cell`, `rnn_relu_cell`.

Each runs on `jaxseq.nn.recurrent.run_stack`, the implementation behind `jaxseq.LSTM` / `GRU` /
`RNN` and their hand-written kernels, so no recurrent layer is ever unrolled into its steps and a
converted layer compiles and trains as jaxseq's own. The flat weight list is torch's
`_flat_weights` order: per layer, per direction, w_ih, w_hh, [b_ih, b_hh], [w_hr].
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxseq.nn.recurrent import cell, run_stack
from jaxseq.port.registry import implements

MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}


def named_weights(params, has_biases: bool, num_layers: int, bidirectional: bool) -> dict:
    """torch's flat weight list as {torch parameter name: array}."""
    directions = ("", "_reverse")[: 2 if bidirectional else 1]
    per = len(params) // (num_layers * len(directions))
    names = ["weight_ih", "weight_hh", *(["bias_ih", "bias_hh"] if has_biases else [])]
    names += ["weight_hr"] if per == len(names) + 1 else []
    assert per == len(names), f"{len(params)} weights for {num_layers} layers, {len(directions)} directions"
    out, it = {}, iter(params)
    for layer in range(num_layers):
        for suffix in directions:
            for name in names:
                out[f"{name}_l{layer}{suffix}"] = next(it)
    return out


def _stack(mode, input, h0, c0, params, has_biases, num_layers, dropout, train, bidirectional, batch_first,
           lengths=None, key=None):
    """The padded (and, with lengths, packed) call of a torch recurrent layer: (output, h_n, c_n)."""
    weights = named_weights(params, has_biases, num_layers, bidirectional)
    unbatched = input.ndim == 2
    x = input[:, None] if unbatched else jnp.swapaxes(input, 0, 1) if batch_first else input
    if unbatched:
        h0 = h0[:, None]
        c0 = None if c0 is None else c0[:, None]
    dropout_key = key() if train and dropout > 0 and num_layers > 1 else None
    out, h_n, c_n = run_stack(
        mode, weights, x.astype(h0.dtype), h0, c0, lengths, num_layers=num_layers, bidirectional=bidirectional,
        dropout=dropout, dropout_key=dropout_key,
    )
    if unbatched:
        return out[:, 0], h_n[:, 0], None if c_n is None else c_n[:, 0]
    return (jnp.swapaxes(out, 0, 1) if batch_first else out), h_n, c_n


@implements("aten.lstm.input", random=True)
def lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first, *, key):
    return _stack("LSTM", input, hx[0], hx[1], params, has_biases, num_layers, dropout, train, bidirectional,
                  batch_first, key=key)


def _padded(mode: str):
    def layer(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first, *, key):
        out, h_n, _ = _stack(mode, input, hx, None, params, has_biases, num_layers, dropout, train, bidirectional,
                             batch_first, key=key)
        return out, h_n

    layer.__name__ = mode.lower()
    return layer


gru = implements("aten.gru.input", random=True)(_padded("GRU"))
rnn_tanh = implements("aten.rnn_tanh.input", random=True)(_padded("RNN_TANH"))
rnn_relu = implements("aten.rnn_relu.input", random=True)(_padded("RNN_RELU"))


@implements("jaxseq.packed_rnn.default", random=True)
def packed_rnn(input, lengths, hx, params, mode, has_biases, num_layers, dropout, train, bidirectional,
               batch_first, *, key):
    """A recurrent layer over `pack_padded_sequence(input, lengths, batch_first)`, on the padded
    input and its lengths: (padded output, zero past each length; h_n; c_n, empty but for LSTM).
    Any order of lengths is accepted, as with enforce_sorted=False."""
    h0, c0 = (hx[0], hx[1]) if mode == "lstm" else (hx[0], None)
    out, h_n, c_n = _stack(MODES[mode], input, h0, c0, params, has_biases, num_layers, dropout, train,
                           bidirectional, batch_first, lengths=jnp.asarray(lengths).astype(jnp.int32), key=key)
    return out, h_n, jnp.zeros((0,), out.dtype) if c_n is None else c_n


def _cell(mode, input, h, c, w_ih, w_hh, b_ih, b_hh):
    weights = {"weight_hh": w_hh, **({} if b_hh is None else {"bias_hh": b_hh})}
    xw = input @ w_ih.T + (0 if b_ih is None else b_ih)
    return cell(mode, weights, xw, h, c)


@implements("aten.lstm_cell.default")
def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _cell("LSTM", input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh)


@implements("aten.gru_cell.default")
def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _cell("GRU", input, hx, None, w_ih, w_hh, b_ih, b_hh)[0]


@implements("aten.rnn_tanh_cell.default")
def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _cell("RNN_TANH", input, hx, None, w_ih, w_hh, b_ih, b_hh)[0]


@implements("aten.rnn_relu_cell.default")
def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return _cell("RNN_RELU", input, hx, None, w_ih, w_hh, b_ih, b_hh)[0]
