"""Any PyTorch model whose forward torch.fx can trace, as a Flax NNX module.

    >>> converted = from_torch(torch_model)              # parameters and buffers copied exactly
    >>> logits = converted(token_ids)                    # the traced forward, run with jax.numpy
    >>> torch_model.load_state_dict(to_torch_state_dict(converted))  # and back, bit-exact

How it works. torch.fx traces `forward` into a graph of nodes: `call_module` for the torch.nn layers
jaxseq has (`LAYERS`: jaxseq.nn's layers and torch.nn.LSTM/GRU/RNN, which stay single nodes),
`call_function` / `call_method` for everything else, `get_attr` for parameters used directly
(a bare nn.Parameter, or `F.linear(x, self.embed.weight)` for tied weights). Every node is checked
against the registry (`OPS`, one small jax.numpy function per op, `@implements(...)` naming the
torch functions and Tensor methods it stands for) when converting, so an unsupported op fails in
`from_torch`, by name, with the line of `forward` that called it. The converted module holds the
torch module's parameters and buffers under their torch paths (`converted.encoder.gru.weight_ih_l0`
is torch's `encoder.gru.weight_ih_l0`) and the graph as static data; calling it runs the nodes in
order with jax.numpy (`Interpreter`, after torch.fx.Interpreter), a pure function of the
parameters once split, so it works under jax.jit / nnx.jit and jax.grad.

Modes. The forward is traced twice, in torch's eval mode and in train mode (so `self.training`
read in forward, e.g. `F.dropout(x, training=self.training)`, gives one graph per mode), and the
converted module's `training` flag picks the graph: `converted.eval()` / `converted.train()`, as in
torch. Training mode draws dropout masks from `converted.fx_rngs` (JAX's random numbers: the same
distribution as torch's, not the same draws) and updates BatchNorm1d's running statistics.

Conventions that differ from torch:
- `pack_padded_sequence` gives a `Packed` (the padded data, lengths, batch_first) that recurrent
  layers read with `lengths=` (see jaxseq.recurrent); any order of lengths is accepted
  (enforce_sorted is not checked). `pad_packed_sequence` pads to the input's full length T (as
  torch with total_length=T: padded steps are `padding_value`), not to max(lengths), whose
  value-dependent shape JAX cannot jit; pass total_length=T in forward to match torch exactly.
- Arguments are what forward was traced with: an argument with a default of None (`lengths=None`)
  is traced as given, so pass it.
- Integer tensors are int32 unless JAX's x64 mode is on (it is switched on for float64 models).

Not supported (ConversionError at conversion): data-dependent Python control flow in forward
(torch.fx cannot trace it), functions and methods outside `OPS`, torch.nn layers outside `LAYERS`
(e.g. Conv2d, Transformer), forwards taking *args or **kwargs. Loss modules (nn.CrossEntropyLoss,
...) are traced through to their functional form. torch is imported only by `from_torch`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import re
import traceback
import typing
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq import nn
from jaxseq.errors import ConversionError

HAND_WRITTEN = (
    "Write that part by hand: a small flax.nnx.Module of jaxseq.nn / jaxseq.recurrent layers, with the "
    "weights loaded by name from the torch state_dict (layer.weight = nnx.Param(jnp.asarray(sd['path.weight'])))"
    ", or convert the parts torch.fx can trace with from_torch(submodule) and compose them."
)

# ---------------------------------------------------------------------------------------------
# The registry: every supported torch function, Tensor method and Python operator is one small
# jax.numpy function below, registered under the torch names it stands for. Names are resolved
# when converting (torch is not imported here): "torch.cat" is the function torch.cat,
# "Tensor.cat" the method, "operator.add" Python's `+`. An option annotated Literal[...] (or None)
# accepts only those values, checked when converting.


class Op(NamedTuple):
    """A registry entry: the jax.numpy function, the torch names it implements, whether it draws
    random numbers (then it is also passed `rngs`, the converted module's nnx.Rngs)."""

    fn: Callable
    names: tuple[str, ...]
    random: bool = False

    @property
    def name(self) -> str:
        return self.names[0]


OPS: list[Op] = []


def implements(*names: str, random: bool = False):
    """Registers the decorated function as the jax.numpy version of torch's `names`."""

    def register(fn):
        OPS.append(Op(fn, names, random))
        return fn

    return register


def supported() -> dict[str, tuple[str, ...]]:
    """The registry as {jax.numpy function: the torch functions, methods and operators it implements}."""
    return {op.fn.__name__: op.names for op in OPS}


@functools.cache
def _tables() -> tuple[dict, dict]:
    """({torch function object: Op}, {Tensor method name: Op}), resolving the registry's names."""
    functions, methods = {}, {}
    for op in OPS:
        for name in op.names:
            if name.startswith("Tensor."):
                methods[name.removeprefix("Tensor.")] = op
            else:
                target = _resolve(name)
                if target is not None:
                    functions[target] = op
    return functions, methods


def _resolve(qualified: str):
    """The object a dotted name names ("torch.nn.functional.relu"), or None where this torch lacks it."""
    module, _, attr = qualified.rpartition(".")
    parts = []
    while module:
        try:
            obj = importlib.import_module(module)
            break
        except ImportError:
            module, _, part = module.rpartition(".")
            parts.insert(0, part)
    else:
        return None
    for part in (*parts, attr):
        obj = getattr(obj, part, None)
    return obj


Reduction = Literal["mean", "sum", "none"]


def _reduce(loss, reduction: str):
    return jnp.mean(loss) if reduction == "mean" else jnp.sum(loss) if reduction == "sum" else loss


def _dims(dim):
    """torch's dim argument (int, list or tuple) as what jax.numpy takes."""
    return tuple(dim) if isinstance(dim, list | tuple) else dim


def _dtype(dtype):
    """A dtype as JAX has it now: int64 is int32 and float64 float32 without x64, as JAX would make them."""
    return jax.dtypes.canonicalize_dtype(dtype)


def _shape_args(shape: tuple) -> tuple:
    """torch's size arguments, given spread out (x.view(2, 3)) or as one sequence (x.view((2, 3)))."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list) else tuple(shape)


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


# arithmetic (on arrays, and on Python numbers such as sizes) ---------------------------------


@implements("operator.add", "torch.add", "Tensor.add")
def add(input, other, *, alpha=1):
    return input + other if alpha == 1 else input + alpha * other


@implements("operator.sub", "torch.sub", "Tensor.sub")
def sub(input, other, *, alpha=1):
    return input - other if alpha == 1 else input - alpha * other


@implements("operator.mul", "torch.mul", "Tensor.mul")
def mul(input, other):
    return input * other


@implements("operator.truediv", "torch.div", "torch.true_divide", "Tensor.div")
def div(input, other, *, rounding_mode: Literal[None, "trunc", "floor"] = None):
    if rounding_mode == "floor":
        return input // other
    if rounding_mode == "trunc":
        return jnp.trunc(input / other).astype(jnp.result_type(input, other))
    return input / other


@implements("operator.floordiv")
def floordiv(input, other):
    """`//`: floor division, as torch's (since 1.13) and Python's."""
    return input // other


@implements("operator.neg", "torch.neg", "Tensor.neg")
def neg(input):
    return -input


@implements("operator.pow", "torch.pow", "Tensor.pow")
def pow_(input, exponent):
    return input**exponent


@implements("operator.matmul", "torch.matmul", "Tensor.matmul", "torch.bmm", "Tensor.bmm", "torch.mm", "Tensor.mm")
def matmul(input, other):
    return jnp.matmul(input, other)


@implements("torch.nn.functional.linear")
def linear(input, weight, bias=None):
    """x W^T + b with torch's weight layout (out_features, in_features)."""
    y = jnp.einsum("...i,oi->...o", input, weight)
    return y if bias is None else y + bias


# shapes ------------------------------------------------------------------------------------


@implements("torch.cat", "torch.concat", "torch.concatenate")
def cat(tensors, dim=0):
    return jnp.concatenate(tensors, axis=dim)


@implements("torch.stack")
def stack(tensors, dim=0):
    return jnp.stack(tensors, axis=dim)


@implements("Tensor.view", "Tensor.reshape", "torch.reshape")
def reshape(input, *shape):
    return jnp.reshape(input, _shape_args(shape))


@implements("Tensor.permute", "torch.permute")
def permute(input, *dims):
    return jnp.transpose(input, _shape_args(dims))


@implements("Tensor.transpose", "torch.transpose")
def transpose(input, dim0, dim1):
    return jnp.swapaxes(input, dim0, dim1)


@implements("torch.flatten", "Tensor.flatten")
def flatten(input, start_dim=0, end_dim=-1):
    return nn.flatten(input, start_dim, end_dim)


@implements("Tensor.squeeze", "torch.squeeze")
def squeeze(input, dim=None):
    """Drops the given axes of size 1 (all of them when dim is None); other sizes are kept, as torch."""
    if dim is None:
        return jnp.squeeze(input)
    dims = dim if isinstance(dim, tuple | list) else (dim,)
    return jnp.squeeze(input, tuple(d % input.ndim for d in dims if input.shape[d] == 1))


@implements("Tensor.unsqueeze", "torch.unsqueeze")
def unsqueeze(input, dim):
    return jnp.expand_dims(input, dim)


@implements("Tensor.contiguous", "Tensor.cpu", "Tensor.clone", "torch.clone")
def identity(input, *args, **kwargs):
    """Memory layout, device and copies do not change values: the input itself."""
    return input


@implements("Tensor.size")
def size(input, dim=None):
    return tuple(jnp.shape(input)) if dim is None else jnp.shape(input)[dim]


@implements("builtins.getattr")
def getattr_(obj, name: Literal["shape", "dtype", "ndim", "T", "device", "values", "indices"]):
    """`x.shape`, `x.dtype`, `x.ndim`, `x.T`, `x.device` (None: JAX places arrays itself), and
    `.values` / `.indices` of torch.max(x, dim)."""
    if name == "device":
        return None
    if name == "shape":
        return tuple(jnp.shape(obj))
    return getattr(jnp.asarray(obj) if _is_array(obj) else obj, name)


@implements("operator.getitem")
def getitem(obj, index):
    """Indexing and slicing of arrays (ints, slices, None, Ellipsis, integer or boolean tensors,
    lists) as torch's, and of Python tuples, lists and dicts (a layer's outputs, sizes)."""
    if not _is_array(obj):
        return obj[index]
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(jnp.asarray(p) if isinstance(p, list) else p for p in parts)
    return jnp.asarray(obj)[parts if isinstance(index, tuple) else parts[0]]


# reductions ----------------------------------------------------------------------------------


@implements("torch.sum", "Tensor.sum")
def sum_(input, dim=None, keepdim=False, *, dtype=None):
    return jnp.sum(input, _dims(dim), dtype=None if dtype is None else _dtype(dtype), keepdims=keepdim)


@implements("torch.mean", "Tensor.mean")
def mean(input, dim=None, keepdim=False, *, dtype=None):
    return jnp.mean(input, _dims(dim), dtype=None if dtype is None else _dtype(dtype), keepdims=keepdim)


class MaxResult(NamedTuple):
    """torch.max(x, dim)'s (values, indices)."""

    values: jax.Array
    indices: jax.Array


@implements("torch.max", "Tensor.max")
def max_(input, dim=None, keepdim=False, *, other=None):
    """torch.max(x): the largest element; torch.max(x, dim, keepdim): (values, indices), the index
    of the first largest; torch.max(x, y) or (x, other=y): the elementwise maximum."""
    if other is not None or _is_array(dim):
        return jnp.maximum(input, other if other is not None else dim)
    if dim is None:
        return jnp.max(input)
    return MaxResult(jnp.max(input, dim, keepdims=keepdim), jnp.argmax(input, dim, keepdims=keepdim))


# elementwise and normalising functions ---------------------------------------------------------


@implements("torch.exp", "Tensor.exp")
def exp(input):
    return jnp.exp(input)


@implements("torch.log", "Tensor.log")
def log(input):
    return jnp.log(input)


@implements("torch.tanh", "Tensor.tanh", "torch.nn.functional.tanh")
def tanh(input):
    return jnp.tanh(input)


@implements("torch.sigmoid", "Tensor.sigmoid", "torch.nn.functional.sigmoid")
def sigmoid(input):
    return jax.nn.sigmoid(input)


@implements("torch.relu", "Tensor.relu", "torch.nn.functional.relu")
def relu(input, inplace=False):
    return jax.nn.relu(input)


@implements("torch.nn.functional.gelu")
def gelu(input, approximate: Literal["none", "tanh"] = "none"):
    return nn.gelu(input, approximate)


@implements("torch.nn.functional.silu")
def silu(input, inplace=False):
    return jax.nn.silu(input)


@implements("torch.nn.functional.leaky_relu")
def leaky_relu(input, negative_slope=0.01, inplace=False):
    return nn.leaky_relu(input, negative_slope)


@implements("torch.nn.functional.softmax", "torch.softmax", "Tensor.softmax")
def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        input = input.astype(_dtype(dtype))
    return jax.nn.softmax(input, axis=nn.softmax_dim(jnp.ndim(input), dim))


@implements("torch.nn.functional.log_softmax", "torch.log_softmax", "Tensor.log_softmax")
def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        input = input.astype(_dtype(dtype))
    return jax.nn.log_softmax(input, axis=nn.softmax_dim(jnp.ndim(input), dim))


@implements("torch.nn.functional.dropout", random=True)
def dropout(input, p=0.5, training=True, inplace=False, *, rngs):
    """The identity unless training (torch's `training` argument, usually self.training, fixed per
    mode when tracing); then inverted dropout with the converted module's rngs (not bit-exact)."""
    if not training or p == 0:
        return input
    return nn.dropout(rngs.dropout(), input, p)


@implements("torch.nn.functional.pad")
def pad(input, pad, mode: Literal["constant"] = "constant", value=None):
    """Constant padding; `pad` lists (before, after) pairs from the last axis backwards; negative
    amounts crop, as torch."""
    x = jnp.asarray(input)
    pads = [(0, 0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        pads[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1], 0)
    return jax.lax.pad(x, jnp.asarray(0 if value is None else value, x.dtype), pads)


@implements("torch.nn.functional.embedding")
def embedding(
    input,
    weight,
    padding_idx=None,
    max_norm: None = None,
    norm_type=2.0,
    scale_grad_by_freq: Literal[False] = False,
    sparse=False,
):
    return nn.embedding(input, weight, padding_idx)


@implements("torch.nn.functional.layer_norm")
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    return nn.layer_norm(input, normalized_shape, weight, bias, eps)


@implements("torch.gather", "Tensor.gather")
def gather(input, dim, index, *, sparse_grad=False):
    """out[i][j] = input[i][index[i][j]] (dim 1); index may be smaller than input off `dim`, as torch."""
    index = jnp.asarray(index)
    axis = dim % input.ndim
    input = input[tuple(slice(None) if d == axis else slice(0, index.shape[d]) for d in range(input.ndim))]
    return jnp.take_along_axis(input, index, axis=axis)


# creation (sizes known when tracing with JAX: shapes are static) and dtypes ---------------------


@implements("torch.arange")
def arange(start, end=None, step=1, *, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False):
    """torch.arange: integers (int64, or int32 without x64) from integer arguments, else torch's
    default float32, unless dtype is given."""
    if dtype is None and not all(isinstance(v, int) for v in (start, end, step) if v is not None):
        dtype = jnp.float32
    return jnp.arange(start, end, step, dtype=None if dtype is None else _dtype(dtype))


@implements("torch.zeros_like")
def zeros_like(input, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    return jnp.zeros_like(input, dtype=None if dtype is None else _dtype(dtype))


@implements("torch.ones_like")
def ones_like(input, *, dtype=None, layout=None, device=None, requires_grad=False, memory_format=None):
    return jnp.ones_like(input, dtype=None if dtype is None else _dtype(dtype))


@implements("Tensor.to")
def to(input, *args, dtype=None, device=None, non_blocking=False, copy=False, memory_format=None):
    """x.to(dtype), x.to(other) (other's dtype), x.to(device) (no change), in any combination."""
    for arg in args:
        if isinstance(arg, np.dtype):
            dtype = arg
        elif _is_array(arg):
            dtype = arg.dtype
    return input if dtype is None else jnp.asarray(input).astype(_dtype(dtype))


@implements("Tensor.float")
def float_(input, memory_format=None):
    return jnp.asarray(input).astype(jnp.float32)


@implements("Tensor.double")
def double(input, memory_format=None):
    return jnp.asarray(input).astype(_dtype(jnp.float64))


@implements("Tensor.long")
def long(input, memory_format=None):
    return jnp.asarray(input).astype(_dtype(jnp.int64))


# losses, with torch's reductions ---------------------------------------------------------------


@implements("torch.nn.functional.mse_loss")
def mse_loss(
    input, target, size_average: None = None, reduce: None = None, reduction: Reduction = "mean", weight: None = None
):
    return _reduce(jnp.square(input - target), reduction)


@implements("torch.nn.functional.l1_loss")
def l1_loss(
    input, target, size_average: None = None, reduce: None = None, reduction: Reduction = "mean", weight: None = None
):
    return _reduce(jnp.abs(input - target), reduction)


@implements("torch.nn.functional.smooth_l1_loss")
def smooth_l1_loss(
    input, target, size_average: None = None, reduce: None = None, reduction: Reduction = "mean", beta=1.0
):
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (beta = 0: |d|)."""
    d = jnp.abs(input - target)
    loss = d if beta == 0 else jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce(loss, reduction)


@implements("torch.nn.functional.huber_loss")
def huber_loss(input, target, reduction: Reduction = "mean", delta=1.0, weight: None = None):
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere."""
    d = jnp.abs(input - target)
    return _reduce(jnp.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


def _class_weights(weight, ndim: int, class_dim: int):
    """A (C,) weight shaped to broadcast against (N, C, d...) along the class axis."""
    return jnp.reshape(weight, [-1 if d == class_dim else 1 for d in range(ndim)])


@implements("torch.nn.functional.nll_loss")
def nll_loss(
    input,
    target,
    weight=None,
    size_average: None = None,
    ignore_index=-100,
    reduce: None = None,
    reduction: Reduction = "mean",
):
    """-w[t] input[t] per element (input holds log-probabilities, classes on axis 1, or 0 when
    unbatched); elements whose target is ignore_index count 0. 'mean' divides by the summed weights
    of the counted elements (their number without weights), as torch."""
    class_dim = 0 if input.ndim == 1 else 1
    target = jnp.asarray(target)
    ignored = target == ignore_index
    safe = jnp.where(ignored, 0, target)
    picked = jnp.squeeze(jnp.take_along_axis(input, jnp.expand_dims(safe, class_dim), axis=class_dim), class_dim)
    w = jnp.ones_like(picked) if weight is None else jnp.take(weight, safe)
    w = jnp.where(ignored, 0, w)
    loss = -picked * w
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(w)
    return _reduce(loss, reduction)


@implements("torch.nn.functional.cross_entropy")
def cross_entropy(
    input,
    target,
    weight=None,
    size_average: None = None,
    ignore_index=-100,
    reduce: None = None,
    reduction: Reduction = "mean",
    label_smoothing=0.0,
):
    """torch's cross_entropy: log_softmax over the class axis (1, or 0 when unbatched) then, for
    class-index targets, nll_loss, mixed with label smoothing e as torch does:

        (1 - e) nll + e / C * smooth,  smooth = -sum_c w_c log p_c   (0 where ignored)

    with smooth reduced as nll ('mean': divided by the counted elements' summed target weights).
    Probability targets (float, the input's shape): -sum_c w_c t_c log p_c with t smoothed to
    t (1 - e) + e / C; 'mean' divides by the number of elements N*d...
    """
    class_dim = 0 if input.ndim == 1 else 1
    C = input.shape[class_dim]
    logp = jax.nn.log_softmax(input, axis=class_dim)
    w = 1 if weight is None else _class_weights(weight, input.ndim, class_dim)
    target = jnp.asarray(target)
    if jnp.issubdtype(target.dtype, jnp.floating):
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / C
        terms = logp * target * w
        if reduction == "mean":
            return -jnp.sum(terms) / (input.size / C)
        return -jnp.sum(terms) if reduction == "sum" else -jnp.sum(terms, class_dim)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0:
        return nll
    ignored = target == ignore_index
    smooth = jnp.where(ignored, 0, -jnp.sum(logp * w, class_dim))
    if reduction == "mean":
        counted = jnp.where(ignored, 0, 1 if weight is None else jnp.take(weight, jnp.where(ignored, 0, target)))
        smooth = jnp.sum(smooth) / jnp.sum(counted)
    else:
        smooth = _reduce(smooth, reduction)
    return (1 - label_smoothing) * nll + smooth * (label_smoothing / C)


@implements("torch.nn.functional.binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(
    input,
    target,
    weight=None,
    size_average: None = None,
    reduce: None = None,
    reduction: Reduction = "mean",
    pos_weight=None,
):
    """torch's formula: (1 - t) x - (1 + (pos_weight - 1) t) log(sigmoid(x)), times weight."""
    log_sigmoid = jax.nn.log_sigmoid(input)
    if pos_weight is not None:
        log_sigmoid = log_sigmoid * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input - log_sigmoid
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# packed sequences --------------------------------------------------------------------------


class Packed(NamedTuple):
    """What pack_padded_sequence gives in JAX: the padded data as it was (B, T, ...) if
    batch_first else (T, B, ...), and the (B,) lengths. Recurrent layers run it with `lengths=`."""

    data: jax.Array
    lengths: jax.Array
    batch_first: bool


@implements("torch.nn.utils.rnn.pack_padded_sequence")
def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    return Packed(jnp.asarray(input), jnp.asarray(lengths), batch_first)


@implements("torch.nn.utils.rnn.pad_packed_sequence")
def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """(padded output, lengths). The output is T steps long, T the packed input's length (torch:
    max(lengths)), or total_length; steps past each length hold padding_value."""
    if not isinstance(sequence, Packed):
        raise TypeError(f"pad_packed_sequence expects a packed sequence; got {type(sequence).__name__}")
    x = sequence.data if sequence.batch_first == batch_first else jnp.swapaxes(sequence.data, 0, 1)
    time_axis = 1 if batch_first else 0
    T = x.shape[time_axis]
    steps = jnp.arange(T)
    valid = steps[None, :] < sequence.lengths[:, None] if batch_first else steps[:, None] < sequence.lengths[None, :]
    x = jnp.where(jnp.reshape(valid, valid.shape + (1,) * (x.ndim - 2)), x, jnp.asarray(padding_value, x.dtype))
    if total_length is not None and total_length != T:
        if total_length < T:
            x = jax.lax.slice_in_dim(x, 0, total_length, axis=time_axis)
        else:
            widths = [(0, 0)] * x.ndim
            widths[time_axis] = (0, total_length - T)
            x = jnp.pad(x, widths, constant_values=padding_value)
    return x, sequence.lengths


# ---------------------------------------------------------------------------------------------
# Layers: the torch.nn classes that stay single nodes, and how each becomes a jaxseq layer. A
# converter builds the layer from the torch module's options; `_load_tensors` then copies every
# parameter and buffer into the attribute of the same name, checking its shape.

LAYERS: dict[str, Callable] = {}


def converts(*torch_classes: str):
    """Registers the decorated `(torch_module, rngs) -> nnx.Module` for torch.nn classes by name."""

    def register(fn):
        for name in torch_classes:
            LAYERS[name] = fn
        return fn

    return register


def _abstract(make):
    """The layer `make()` builds, without computing its initial values (they are replaced)."""
    return nnx.eval_shape(make)


@converts("torch.nn.Linear")
def _linear(m, rngs):
    return _abstract(lambda: nn.Linear(m.in_features, m.out_features, m.bias is not None, rngs=nnx.Rngs(0)))


@converts("torch.nn.Embedding")
def _embedding(m, rngs):
    options = dict(max_norm=m.max_norm, scale_grad_by_freq=m.scale_grad_by_freq, sparse=m.sparse)
    return _abstract(
        lambda: nn.Embedding(m.num_embeddings, m.embedding_dim, m.padding_idx, **options, rngs=nnx.Rngs(0))
    )


@converts("torch.nn.LayerNorm")
def _layer_norm(m, rngs):
    affine, bias = m.elementwise_affine, m.bias is not None
    return _abstract(lambda: nn.LayerNorm(m.normalized_shape, m.eps, affine, bias))


@converts("torch.nn.Conv1d")
def _conv1d(m, rngs):
    padding = m.padding if isinstance(m.padding, str) else m.padding[0]
    return _abstract(
        lambda: nn.Conv1d(
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            padding,
            m.dilation,
            m.groups,
            m.bias is not None,
            m.padding_mode,
            rngs=nnx.Rngs(0),
        )
    )


@converts("torch.nn.BatchNorm1d")
def _batch_norm(m, rngs):
    return _abstract(lambda: nn.BatchNorm1d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats))


@converts("torch.nn.Dropout")
def _dropout(m, rngs):
    return nn.Dropout(m.p, m.inplace, rngs=rngs)


@converts("torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN")
def _recurrent(m, rngs):
    from jaxseq.convert import recurrent_from_torch

    return recurrent_from_torch(m)


converts("torch.nn.ReLU")(lambda m, rngs: nn.ReLU())
converts("torch.nn.LeakyReLU")(lambda m, rngs: nn.LeakyReLU(m.negative_slope))
converts("torch.nn.GELU")(lambda m, rngs: nn.GELU(m.approximate))
converts("torch.nn.Tanh")(lambda m, rngs: nn.Tanh())
converts("torch.nn.Sigmoid")(lambda m, rngs: nn.Sigmoid())
converts("torch.nn.SiLU")(lambda m, rngs: nn.SiLU())
converts("torch.nn.Softmax")(lambda m, rngs: nn.Softmax(m.dim))
converts("torch.nn.LogSoftmax")(lambda m, rngs: nn.LogSoftmax(m.dim))
converts("torch.nn.Identity")(lambda m, rngs: nn.Identity())
converts("torch.nn.Flatten")(lambda m, rngs: nn.Flatten(m.start_dim, m.end_dim))


@functools.cache
def _layer_table() -> dict:
    """{torch class: converter}, resolving LAYERS' names."""
    return {cls: fn for name, fn in LAYERS.items() if (cls := _resolve(name)) is not None}


def _torch_class(m):
    """The torch.nn class a module is, for conversion: its own class, or the torch.nn class it
    derives from if it keeps torch's forward (`class MyLSTM(nn.LSTM): pass` is an nn.LSTM); None
    for a module whose forward is the user's (traced through)."""
    owner = next(c for c in type(m).__mro__ if "forward" in vars(c))
    if not owner.__module__.startswith("torch."):
        return None
    return next(c for c in type(m).__mro__ if c.__module__.startswith("torch."))


def _is_torch_layer(m) -> bool:
    """A torch.nn module that stays one node: its forward is torch.nn's, and it is neither a
    container (traced through) nor a loss (traced through to its functional form)."""
    import torch

    if isinstance(m, torch.nn.Sequential | torch.nn.ModuleList | torch.nn.ModuleDict):
        return False
    cls = _torch_class(m)
    return cls is not None and not issubclass(cls, torch.nn.modules.loss._Loss)


# ---------------------------------------------------------------------------------------------
# The converted module.


class Inlined(nn.Module):
    """A torch submodule whose forward was traced into the graph (a user module, a loss, or a
    torch.nn layer that is never called): its parameters, buffers and children, under their names."""

    def __init__(self, torch_class: str):
        self.training = True
        self.fx_class = torch_class


class TracedModule(nn.Module):
    """A torch module converted by `from_torch`: its parameters and buffers under their torch paths,
    its forward as a static graph per mode, run by `Interpreter` on `__call__(*args, **kwargs)`."""

    def __init__(self, torch_class: str, programs: tuple, state_dict: tuple, rngs: nnx.Rngs):
        self.training = True
        self.fx_class = torch_class
        self.fx_programs = programs  # (eval-mode program, train-mode program)
        self.fx_state_dict = state_dict  # ((torch state_dict key, torch dtype name), ...) in torch's order
        self.fx_rngs = rngs

    def __call__(self, *args, **kwargs):
        return Interpreter(self).run(self.fx_programs[bool(self.training)], args, kwargs)


RESERVED = frozenset({"training", "fx_class", "fx_programs", "fx_state_dict", "fx_rngs", "_names"})


class Ref(NamedTuple):
    """An argument that is an earlier node's value."""

    name: str


class ListArg(NamedTuple):
    items: tuple


class DictArg(NamedTuple):
    items: tuple  # ((key, value), ...)


class SliceArg(NamedTuple):
    start: object
    stop: object
    step: object


class Const(NamedTuple):
    """A tensor constant of the graph (a plain tensor attribute, or one made in forward)."""

    dtype: str
    shape: tuple
    values: tuple

    def array(self):
        return jnp.asarray(np.array(self.values, self.dtype).reshape(self.shape))


class Instruction(NamedTuple):
    """One graph node: op ("placeholder", "get_attr", "call_function", "call_method", "call_module",
    "output"), its name, its target (an argument name, a path, a Const, an Op), its encoded args and
    kwargs, and where in forward it came from (for messages)."""

    op: str
    name: str
    target: object
    args: tuple
    kwargs: tuple  # ((name, value), ...)
    where: str


class Interpreter:
    """Runs a converted graph with jax.numpy, as torch.fx.Interpreter runs one with torch: node by
    node in order, each dispatched on its op to the method of that name, values kept by node name."""

    def __init__(self, module: TracedModule):
        self.module = module
        self.env: dict[str, object] = {}

    def run(self, program: tuple[Instruction, ...], args, kwargs):
        self.args, self.kwargs = list(args), dict(kwargs)
        for ins in program:
            try:
                value = getattr(self, ins.op)(ins.target, self.load(ins.args), dict(self.load(ins.kwargs)))
            except Exception as e:
                e.add_note(f"jaxseq.fx: in graph node {ins.name!r} ({ins.where})")
                raise
            if ins.op == "output":
                return value
            self.env[ins.name] = value
        raise AssertionError("a graph ends with its output node")

    def load(self, arg):
        """An encoded argument with the environment's values in place of Refs."""
        if isinstance(arg, Ref):
            return self.env[arg.name]
        if isinstance(arg, ListArg):
            return [self.load(a) for a in arg.items]
        if isinstance(arg, DictArg):
            return {k: self.load(v) for k, v in arg.items}
        if isinstance(arg, SliceArg):
            return slice(self.load(arg.start), self.load(arg.stop), self.load(arg.step))
        if type(arg) is tuple:
            return tuple(self.load(a) for a in arg)
        return arg

    def placeholder(self, name, args, kwargs):
        if self.args:
            value = self.args.pop(0)
        elif name in self.kwargs:
            value = self.kwargs.pop(name)
        elif args:
            value = args[0]  # forward's default
        else:
            raise TypeError(f"{self.module.fx_class}.forward() missing argument {name!r}")
        return jax.tree.map(_as_jax, value)

    def get_attr(self, target, args, kwargs):
        if isinstance(target, Const):
            return target.array()
        return _walk(self.module, target)[...]

    def call_function(self, op: Op, args, kwargs):
        if op.random:
            kwargs["rngs"] = self.module.fx_rngs
        return op.fn(*args, **kwargs)

    call_method = call_function  # args[0] is the tensor

    def call_module(self, path: str, args, kwargs):
        from jaxseq.nn.recurrent import RNNBase

        layer = _walk(self.module, path)
        if isinstance(layer, RNNBase):
            return self._recurrent(layer, *args, **kwargs)
        return layer(*args, **kwargs)

    def output(self, target, args, kwargs):
        if self.args or self.kwargs:
            unused = [f"{len(self.args)} positional"] if self.args else []
            raise TypeError(f"{self.module.fx_class}.forward() got unexpected arguments: {unused + list(self.kwargs)}")
        return args[0]

    def _recurrent(self, layer, input, hx=None):
        """A torch recurrent layer's call: on a Packed input with its lengths (the output is packed
        too); dropout between layers in training mode."""
        key = None
        if getattr(layer, "training", False) and layer.dropout > 0 and layer.num_layers > 1:
            key = self.module.fx_rngs.dropout()
        if isinstance(input, Packed):
            x = input.data if input.batch_first == layer.batch_first else jnp.swapaxes(input.data, 0, 1)
            output, state = layer(x, hx, lengths=input.lengths, dropout_key=key)
            return Packed(output, input.lengths, layer.batch_first), state
        return layer(input, hx, dropout_key=key)


def _as_jax(value):
    """NumPy arrays (and torch tensors, for convenience) as JAX arrays; anything else as it is."""
    if isinstance(value, np.ndarray):
        return jnp.asarray(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return jnp.asarray(value.detach().cpu().numpy())
    return value


def _walk(root, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------
# Conversion.


def from_torch(module, *, rngs: nnx.Rngs | None = None) -> TracedModule:
    """The NNX module that runs `module`'s forward with jax.numpy, holding its parameters and buffers.

    Args:
      module: a torch.nn.Module whose forward torch.fx can trace, built of torch.nn layers in
        `LAYERS` (called as single nodes) and ops in `OPS`. Its mode (train/eval) carries over.
      rngs: the random numbers of training mode (dropout); nnx.Rngs(0) when None.
    Returns:
      A TracedModule: `converted(*args, **kwargs)` returns what forward returns (arrays, tuples,
      lists, dicts), given NumPy or JAX arrays. Parameters are nnx.Param, BatchNorm's running
      statistics nnx.BatchStat, other buffers jaxseq.nn.Buffer, each in torch's dtype (float64
      switches JAX's x64 mode on), shared where torch's are (tied weights are one nnx.Param).
    Raises:
      ConversionError naming what cannot be converted: an untraceable forward (with the module
      class), an unsupported layer (class and path), function or method (op, graph node, line).
    """
    import torch

    from jaxseq.nn.model import enable_dtype

    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"from_torch expects a torch.nn.Module; got {type(module).__name__}")
    name = type(module).__name__
    state_dict = module.state_dict(keep_vars=True)
    tensors = [*state_dict.values(), *module.parameters(), *module.buffers()]
    floats = {str(t.dtype).removeprefix("torch.") for t in tensors if t.is_floating_point()}
    if floats - {"float32", "float64"}:
        raise ConversionError(
            f"{name}: dtype {', '.join(sorted(floats - {'float32', 'float64'}))} is not supported; "
            "convert the module to float32 or float64 first (module.float() / module.double())"
        )
    if "float64" in floats:
        enable_dtype(jnp.float64)

    rngs = rngs if rngs is not None else nnx.Rngs(0)
    context = _Context(rngs)
    graphs = _trace_both_modes(module)
    programs = tuple(_program(graph, constants, module) for graph, constants in graphs)
    root = TracedModule(f"{type(module).__module__}.{type(module).__qualname__}", programs, (), rngs)
    _fill(root, module, "", context)
    root.training = module.training
    root.fx_state_dict = tuple((key, str(t.dtype).removeprefix("torch.")) for key, t in state_dict.items())
    for key, _ in root.fx_state_dict:
        try:
            _walk(root, key)
        except AttributeError:
            raise ConversionError(
                f"{name}: state_dict key {key!r} is not a parameter or buffer jaxseq.fx can hold (extra state?)"
            ) from None
    return root


def to_torch_state_dict(module: nnx.Module) -> dict[str, np.ndarray]:
    """The module's parameters and buffers as NumPy copies under torch's state_dict keys.

    For a module from `from_torch`: exactly the torch module's keys, in its order and dtypes (a
    tied weight under every key torch lists), for `load_state_dict(strict=True)`. For any other
    NNX tree of jaxseq layers: its nnx.Param, nnx.BatchStat and jaxseq.nn.Buffer paths joined by
    "." (a shared variable once), num_batches_tracked as int64 as torch keeps it.
    """
    if isinstance(module, TracedModule):
        return {key: np.array(_walk(module, key)[...], dtype=dtype) for key, dtype in module.fx_state_dict}
    flat = nnx.to_flat_state(nnx.state(module, (nnx.Param, nnx.BatchStat, nn.Buffer)))
    out = {}
    for path, variable in flat:
        key = ".".join(map(str, path))
        value = np.array(variable[...])
        out[key] = value.astype(np.int64) if path[-1] == "num_batches_tracked" else value
    return out


class _Context:
    """What conversion keeps while walking the torch module: the converted modules and variables
    by torch object, so that shared ones stay shared."""

    def __init__(self, rngs):
        self.rngs = rngs
        self.modules: dict[int, nnx.Module] = {}
        self.variables: dict[int, nnx.Variable] = {}


def _trace_both_modes(module):
    """torch.fx graphs of forward in eval mode and in train mode; the module's modes are restored."""
    modes = [(m, m.training) for m in module.modules()]
    graphs = []
    try:
        for mode in (False, True):
            module.train(mode)
            graphs.append(_trace(module, "train" if mode else "eval"))
    finally:
        for m, training in modes:
            m.training = training
    return graphs


def _trace(module, mode: str):
    import torch.fx
    import torch.nn.utils.rnn as rnn

    class Tracer(torch.fx.Tracer):
        """torch.fx's tracer with jaxseq's layers as leaves, pack/pad_packed_sequence as single nodes
        (however they are imported) and stack traces recorded (for messages)."""

        def __init__(self):
            wrapped = (rnn.pack_padded_sequence, rnn.pad_packed_sequence)
            super().__init__(autowrap_modules=(math, rnn), autowrap_functions=wrapped)
            # of torch.nn.utils.rnn only these two (not PackedSequence, which isinstance checks use)
            self._autowrap_function_ids = {
                id(v) for k, v in vars(math).items() if not k.startswith("_") and callable(v)
            } | {id(f) for f in wrapped}
            self.record_stack_traces = True

        def is_leaf_module(self, m, qualified_name):
            return _is_torch_layer(m)

    before = set(vars(module))
    try:
        graph = Tracer().trace(module)
    except ConversionError:
        raise
    except Exception as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(
            f"torch.fx cannot trace {type(module).__name__}.forward ({mode} mode) at {_user_line(e)}: {message}. "
            "jaxseq.fx converts forwards that torch.fx can trace: no Python if/for/while on tensor values "
            f"(write such parts with jnp.where or masks). {HAND_WRITTEN}"
        ) from e
    # torch.fx keeps the tensor constants it meets as attributes of the traced module: take them back
    constants = {k: vars(module)[k] for k in set(vars(module)) - before if k.startswith("_tensor_constant")}
    for k in constants:
        delattr(module, k)
    return graph, constants


def _where(node) -> str:
    """The user's line that made the node: the last frame of node.stack_trace outside torch."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', node.stack_trace or "")
    return _last_user_frame(frames)


def _user_line(error: Exception) -> str:
    """The user's line where tracing failed: the last frame of the traceback outside torch."""
    frames = traceback.extract_tb(error.__traceback__)
    return _last_user_frame([(f.filename, f.lineno, f.name, f.line or "") for f in frames])


def _last_user_frame(frames) -> str:
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    frames = [f for f in frames if not f[0].startswith(torch_dir) and f[0] != __file__]
    if not frames:
        return "line unknown"
    file, line, function, code = frames[-1]
    return f"{file}, line {line}, in {function}: {code.strip()}"


def _op_name(node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    from torch.fx.node import _get_qualified_name

    try:
        return _get_qualified_name(node.target)
    except Exception:
        return repr(node.target)


def _program(graph, constants: dict, module) -> tuple[Instruction, ...]:
    """The graph as Instructions, every node checked against the registry and the layer table."""
    import torch

    functions, methods = _tables()
    registered = {n for n, _ in module.named_parameters(remove_duplicate=False)}
    registered |= {n for n, _ in module.named_buffers(remove_duplicate=False)}
    program = []
    for node in graph.nodes:
        where = _where(node)

        def fail(what: str, node=node, where=where) -> ConversionError:
            return ConversionError(f"{what}, at graph node {node.name!r} ({where}). {HAND_WRITTEN}")

        target = node.target
        if node.op == "placeholder":
            if target.startswith("*"):
                raise fail(f"{type(module).__name__}.forward takes {target}: not supported; name its arguments")
        elif node.op == "get_attr":
            if target in registered:
                pass
            elif target in constants or isinstance(_torch_walk(module, target), torch.Tensor):
                t = constants.get(target)
                t = (t if t is not None else _torch_walk(module, target)).detach().cpu()
                if t.is_floating_point() and t.dtype == torch.float64:
                    from jaxseq.nn.model import enable_dtype

                    enable_dtype(jnp.float64)
                target = Const(str(t.dtype).removeprefix("torch."), tuple(t.shape), tuple(t.numpy().ravel().tolist()))
            else:
                raise fail(f"get_attr {target!r} is not a tensor")
        elif node.op == "call_module":
            owner = _torch_class(module.get_submodule(target))
            if owner not in _layer_table():
                torch_nn = owner.__module__.startswith("torch.nn")
                cls = f"torch.nn.{owner.__name__}" if torch_nn else f"{owner.__module__}.{owner.__qualname__}"
                raise fail(f"{cls} at {target!r} is not supported by jaxseq.fx (layers: {', '.join(sorted(LAYERS))})")
        elif node.op in ("call_function", "call_method"):
            op = (
                (functions.get(target) if _hashable(target) else None)
                if node.op == "call_function"
                else methods.get(target)
            )
            if op is None:
                raise fail(f"{_op_name(node)} is not supported by jaxseq.fx (see jaxseq.fx.supported())")
            _check_call(op, node, fail)
            target = op
        args = tuple(_encode(a, fail) for a in node.args)
        kwargs = tuple((k, _encode(v, fail)) for k, v in node.kwargs.items())
        program.append(Instruction(node.op, node.name, target, args, kwargs, where))
    return tuple(program)


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _torch_walk(module, path: str):
    obj = module
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def _check_call(op: Op, node, fail) -> None:
    """The node's arguments fit the implementation's signature, and constant options annotated
    Literal[...] (or None) hold one of the supported values."""
    import torch.fx

    signature = inspect.signature(op.fn)
    if op.random:  # rngs is the converted module's, not an argument of torch's
        signature = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "rngs"])
    try:
        bound = signature.bind(*node.args, **node.kwargs)
    except TypeError as e:
        raise fail(f"{_op_name(node)}: {e} (jaxseq.fx implements {op.fn.__name__}{signature})") from None
    hints = typing.get_type_hints(op.fn)
    for name, value in bound.arguments.items():
        hint = hints.get(name)
        if hint is type(None):
            allowed = (None,)
        elif typing.get_origin(hint) is Literal:
            allowed = typing.get_args(hint)
        else:
            continue
        if isinstance(value, torch.fx.Node) or value not in allowed:
            shown = f"the tensor {value.name}" if isinstance(value, torch.fx.Node) else repr(value)
            raise fail(f"{_op_name(node)}({name}={shown}) is not supported (jaxseq.fx supports {name} in {allowed})")


def _encode(arg, fail):
    """A node argument in hashable form (static data of the NNX module), torch types replaced."""
    import torch
    import torch.fx

    if isinstance(arg, torch.fx.Node):
        return Ref(arg.name)
    if isinstance(arg, list):
        return ListArg(tuple(_encode(a, fail) for a in arg))
    if isinstance(arg, tuple):  # tuples, torch.Size
        return tuple(_encode(a, fail) for a in arg)
    if isinstance(arg, dict):
        return DictArg(tuple((k, _encode(v, fail)) for k, v in arg.items()))
    if isinstance(arg, slice):
        return SliceArg(*(_encode(a, fail) for a in (arg.start, arg.stop, arg.step)))
    if isinstance(arg, torch.dtype):
        return np.dtype(jnp.dtype(str(arg).removeprefix("torch.")))
    if isinstance(arg, torch.device):
        return str(arg)
    if isinstance(arg, torch.memory_format | torch.layout):
        return None
    if arg is None or arg is Ellipsis or isinstance(arg, bool | int | float | str):
        return arg
    raise fail(f"argument {arg!r} of type {type(arg).__name__} is not supported")


def _fill(container: nnx.Module, m, path: str, context: _Context) -> None:
    """Puts m's own parameters and buffers, then its converted children, on `container`."""
    _load_tensors(container, m, path, context, expected=None)
    for child_name, child in m.named_children():
        _check_name(container, child_name, path)
        setattr(container, child_name, _convert(child, f"{path}.{child_name}" if path else child_name, context))


def _convert(m, path: str, context: _Context) -> nnx.Module:
    """The NNX module for torch submodule m at `path` (the same one for a module seen before)."""
    import torch

    if id(m) in context.modules:
        return context.modules[id(m)]
    converter = _layer_table().get(_torch_class(m)) if _is_torch_layer(m) else None
    if converter is not None:
        try:
            layer = converter(m, context.rngs)
        except ValueError as e:
            raise ConversionError(f"{type(m).__name__} at {path!r}: {e}") from None
        expected = {k for k, v in vars(layer).items() if isinstance(v, nnx.Variable)}
        _load_tensors(layer, m, path, context, expected)
        if m._modules:
            raise ConversionError(f"{type(m).__name__} at {path!r} has submodules, which jaxseq's layer cannot hold")
    else:
        containers = {
            torch.nn.Sequential: nn.Sequential,
            torch.nn.ModuleList: nn.ModuleList,
            torch.nn.ModuleDict: nn.ModuleDict,
        }
        if type(m) in containers:
            layer = containers[type(m)]()
            for child_name, child in m.named_children():
                converted = _convert(child, f"{path}.{child_name}", context)
                try:
                    layer._add(child_name, converted)
                except ValueError as e:
                    raise ConversionError(f"{path}.{child_name}: {e}") from None
        else:
            layer = Inlined(f"{type(m).__module__}.{type(m).__qualname__}")
            _fill(layer, m, path, context)
    layer.training = m.training  # recurrent layers get the attribute here
    context.modules[id(m)] = layer
    return layer


def _check_name(container, name: str, path: str) -> None:
    if name in RESERVED or hasattr(type(container), name):
        where = f"{path}.{name}" if path else name
        raise ConversionError(f"torch attribute {where!r} has a name jaxseq.fx uses itself; rename it in torch")


def _load_tensors(layer, m, path: str, context: _Context, expected: set | None) -> None:
    """Copies m's own parameters and buffers onto `layer` under the same names, as nnx.Param (or
    the variable type the jaxseq layer declares: nnx.BatchStat for BatchNorm's statistics) and
    jaxseq.nn.Buffer; a tensor seen before is the same variable. For a jaxseq layer (`expected`
    its variable names) every tensor must have a place of the same shape, and every place a tensor."""
    params = dict(m.named_parameters(recurse=False))
    buffers = dict(m.named_buffers(recurse=False))
    for name, t in [*params.items(), *buffers.items()]:
        key = f"{path}.{name}" if path else name
        current = None
        if expected is None:
            _check_name(layer, name, path)
        else:
            current = getattr(layer, name, None)
            if not isinstance(current, nnx.Variable):
                raise ConversionError(f"{key}: torch's {type(m).__name__} has {name!r}, which jaxseq's layer has not")
            if tuple(current.shape) != tuple(t.shape):
                raise ConversionError(f"{key}: shape {tuple(t.shape)}, but jaxseq's layer has {tuple(current.shape)}")
        if id(t) not in context.variables:  # else a tensor seen before (tied): the same variable
            kind = type(current) if current is not None else nnx.Param if name in params else nn.Buffer
            context.variables[id(t)] = kind(jnp.asarray(t.detach().cpu().numpy().copy()))
        setattr(layer, name, context.variables[id(t)])
    if expected is not None and (missing := expected - set(params) - set(buffers)):
        raise ConversionError(f"{path}: jaxseq's layer has {sorted(missing)}, which the torch module lacks")
