"""Core ATen in jax.numpy: one small function per operator of an exported, decomposed graph.

Each function takes the operator's arguments as ATen's schema names them (see
`jaxseq.port.registry` for how values arrive) and is tested against torch's own OpInfo samples
(`parity_tests/test_opinfo.py`). Recurrent layers and cells are in `jaxseq.port.recurrent`.
"""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.port.registry import implements

# ---------------------------------------------------------------------------------------------
# Python functions on sizes and tuples (a graph's getitem, and SymInt arithmetic under dynamic shapes)

for _name in ("add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow", "eq", "ne", "lt", "le", "gt", "ge",
              "and_", "or_", "not_", "getitem"):
    implements(f"operator.{_name}")(getattr(operator, _name))
for _name in ("ceil", "floor", "trunc", "sqrt"):
    implements(f"math.{_name}")(getattr(math, _name))


@implements("torch.sym_max", "builtins.max")
def sym_max(a, b):
    return max(a, b)


@implements("torch.sym_min", "builtins.min")
def sym_min(a, b):
    return min(a, b)


@implements("torch.sym_float")
def sym_float(a):
    return float(a)


@implements("torch.sym_int")
def sym_int(a):
    return int(a)


@implements("torch.sym_not")
def sym_not(a):
    return not a


@implements("torch._sym_sqrt", "torch.sym_sqrt")
def sym_sqrt(a):
    return math.sqrt(a)


@implements("aten.sym_size.int")
def sym_size(self, dim):
    return self.shape[dim]


@implements("aten.sym_numel.default")
def sym_numel(self):
    return math.prod(self.shape)


@implements("aten.sym_stride.int")
def sym_stride(self, dim):
    return math.prod(self.shape[dim + 1 :] if dim >= 0 else self.shape[len(self.shape) + dim + 1 :])


@implements(
    "aten._assert_scalar.default",
    "aten._assert_tensor_metadata.default",
    "aten.sym_constrain_range.default",
    "aten.sym_constrain_range_for_size.default",
    "aten._assert_async.msg",
    "aten._assert_async.default",
)
def assertion(*args, **kwargs):
    """Export's runtime checks on sizes: the shapes are static under jit, so there is nothing to check."""
    return None


# ---------------------------------------------------------------------------------------------
# Gradients: detach and friends are stop_gradient, never the identity


@implements("aten.detach.default", "aten.lift_fresh_copy.default")
def detach(self):
    return jax.lax.stop_gradient(self)


@implements("aten.alias.default", "aten.clone.default", "aten._to_copy.default", "aten.lift_fresh.default")
def copy(self, *, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False, memory_format=None):
    return self if dtype is None else self.astype(dtype)


# ---------------------------------------------------------------------------------------------
# Creation


@implements("aten.full.default")
def full(size, fill_value, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.full(tuple(size), fill_value, dtype)


@implements("aten.scalar_tensor.default")
def scalar_tensor(s, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.asarray(s, dtype)


@implements("aten.empty.memory_format")
def empty(size, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.zeros(tuple(size), dtype)  # torch leaves it uninitialised; a graph that reads it before writing differs


@implements("aten.empty_strided.default")
def empty_strided(size, stride, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.zeros(tuple(size), dtype)


@implements("aten.full_like.default")
def full_like(self, fill_value, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.full(self.shape, fill_value, dtype or self.dtype)


@implements("aten.arange.start_step")
def arange(start, end, step=1, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.arange(start, end, step, dtype)


@implements("aten.iota.default")
def iota(length, *, start, step, dtype, device=None, requires_grad=False):
    return start + step * jnp.arange(length, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Elementwise


def _binary(fn):
    def op(self, other, *, alpha=None):
        return fn(self, other if alpha is None else alpha * other)

    return op


add = implements("aten.add.Tensor", "aten.add.Scalar")(_binary(jnp.add))
sub = implements("aten.sub.Tensor", "aten.sub.Scalar")(_binary(jnp.subtract))


@implements("aten.rsub.Scalar", "aten.rsub.Tensor")
def rsub(self, other, alpha=1):
    return other - alpha * self


@implements("aten.mul.Tensor", "aten.mul.Scalar")
def mul(self, other):
    return jnp.multiply(self, other)


@implements("aten.div.Tensor", "aten.div.Scalar")
def div(self, other):
    return jnp.true_divide(self, other)


@implements("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def div_mode(self, other, *, rounding_mode=None):
    if rounding_mode == "floor":
        return jnp.floor_divide(self, other)
    if rounding_mode == "trunc":
        q = jnp.true_divide(self, other)
        return jnp.trunc(q) if jnp.issubdtype(jnp.result_type(self, other), jnp.floating) else q.astype(
            jnp.result_type(self, other))
    return jnp.true_divide(self, other)


@implements("aten.pow.Tensor_Tensor", "aten.pow.Tensor_Scalar", "aten.pow.Scalar")
def pow_(self, exponent):
    return jnp.power(self, exponent)


@implements("aten.remainder.Tensor", "aten.remainder.Scalar")
def remainder(self, other):
    return jnp.remainder(self, other)


@implements("aten.fmod.Tensor", "aten.fmod.Scalar")
def fmod(self, other):
    return jnp.fmod(self, other)


_UNARY = {
    "neg": jnp.negative, "abs": jnp.abs, "exp": jnp.exp, "expm1": jnp.expm1, "log": jnp.log, "log1p": jnp.log1p,
    "log2": jnp.log2, "log10": jnp.log10, "sqrt": jnp.sqrt, "rsqrt": jax.lax.rsqrt, "sin": jnp.sin, "cos": jnp.cos,
    "tan": jnp.tan, "tanh": jnp.tanh, "sinh": jnp.sinh, "cosh": jnp.cosh, "asin": jnp.arcsin, "acos": jnp.arccos,
    "atan": jnp.arctan, "asinh": jnp.arcsinh, "acosh": jnp.arccosh, "atanh": jnp.arctanh, "sigmoid": jax.nn.sigmoid,
    "reciprocal": jnp.reciprocal, "sign": jnp.sign, "floor": jnp.floor, "ceil": jnp.ceil, "trunc": jnp.trunc,
    "round": jnp.round, "erf": jax.scipy.special.erf, "erfc": jax.scipy.special.erfc,
    "erfinv": jax.scipy.special.erfinv, "bitwise_not": jnp.invert, "logical_not": jnp.logical_not,
    "isnan": jnp.isnan, "isinf": jnp.isinf, "relu": jax.nn.relu, "exp2": jnp.exp2, "sgn": jnp.sign,
    "lgamma": jax.scipy.special.gammaln, "digamma": jax.scipy.special.digamma, "frac": lambda x: x - jnp.trunc(x),
    "signbit": jnp.signbit, "isfinite": jnp.isfinite,
}
for _name, _fn in _UNARY.items():
    implements(f"aten.{_name}.default")(_fn)


@implements("aten.square.default")
def square(self):
    return self * self


_COMPARE = {"eq": jnp.equal, "ne": jnp.not_equal, "lt": jnp.less, "le": jnp.less_equal, "gt": jnp.greater,
            "ge": jnp.greater_equal, "logical_and": jnp.logical_and, "logical_or": jnp.logical_or,
            "logical_xor": jnp.logical_xor, "bitwise_and": jnp.bitwise_and, "bitwise_or": jnp.bitwise_or,
            "bitwise_xor": jnp.bitwise_xor, "maximum": jnp.maximum, "minimum": jnp.minimum,
            "atan2": jnp.arctan2, "hypot": jnp.hypot, "fmax": jnp.fmax, "fmin": jnp.fmin,
            "copysign": jnp.copysign, "nextafter": jnp.nextafter, "xlogy": jax.scipy.special.xlogy}
for _name, _fn in _COMPARE.items():
    implements(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar", f"aten.{_name}.default")(_fn)


@implements("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def where(condition, self, other):
    return jnp.where(condition, self, other)


@implements("aten.clamp.default", "aten.clamp.Tensor")
def clamp(self, min=None, max=None):
    out = self
    if min is not None:
        out = jnp.maximum(out, min)
    if max is not None:
        out = jnp.minimum(out, max)
    return out


@implements("aten.clamp_min.default", "aten.clamp_min.Tensor")
def clamp_min(self, min):
    return jnp.maximum(self, min)


@implements("aten.clamp_max.default", "aten.clamp_max.Tensor")
def clamp_max(self, max):
    return jnp.minimum(self, max)


@implements("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(self, mask, value):
    return jnp.where(mask, jnp.asarray(value, self.dtype), self)


@implements("aten.lerp.Scalar", "aten.lerp.Tensor")
def lerp(self, end, weight):
    return self + weight * (end - self)


@implements("aten.gelu.default")
def gelu(self, *, approximate="none"):
    return jax.nn.gelu(self, approximate=approximate == "tanh")


@implements("aten.elu.default")
def elu(self, alpha=1, scale=1, input_scale=1):
    return scale * jnp.where(self > 0, self, alpha * jnp.expm1(self * input_scale))


@implements("aten.leaky_relu.default")
def leaky_relu(self, negative_slope=0.01):
    return jnp.where(self > 0, self, self * negative_slope)


@implements("aten.hardtanh.default")
def hardtanh(self, min_val=-1, max_val=1):
    return jnp.clip(self, min_val, max_val)


@implements("aten.softplus.default")
def softplus(self, beta=1, threshold=20):
    return jnp.where(self * beta > threshold, self, jnp.log1p(jnp.exp(self * beta)) / beta)


@implements("aten.silu.default")
def silu(self):
    return self * jax.nn.sigmoid(self)


@implements("aten.logit.default")
def logit(self, eps=None):
    x = self if eps is None else jnp.clip(self, eps, 1 - eps)
    return jnp.log(x / (1 - x))


@implements("aten.nan_to_num.default")
def nan_to_num(self, nan=None, posinf=None, neginf=None):
    return jnp.nan_to_num(self, nan=0.0 if nan is None else nan, posinf=posinf, neginf=neginf)


# ---------------------------------------------------------------------------------------------
# Reductions


def _axes(dim, ndim):
    if dim is None or (isinstance(dim, list | tuple) and len(dim) == 0):
        return None
    return tuple(dim) if isinstance(dim, list | tuple) else (dim,)


@implements("aten.sum.dim_IntList", "aten.sum.default")
def sum_(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.sum(self, axis=_axes(dim, self.ndim), keepdims=keepdim, dtype=dtype)


@implements("aten.mean.dim", "aten.mean.default")
def mean(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.mean(self, axis=_axes(dim, self.ndim), keepdims=keepdim, dtype=dtype)


@implements("aten.prod.dim_int", "aten.prod.default")
def prod(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.prod(self, axis=dim, keepdims=keepdim, dtype=dtype)


@implements("aten.var.correction", "aten.var.dim")
def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
    ddof = correction if correction is not None else (1 if unbiased is None or unbiased else 0)
    return jnp.var(self, axis=_axes(dim, self.ndim), ddof=ddof, keepdims=keepdim)


@implements("aten.var_mean.correction")
def var_mean(self, dim=None, *, correction=None, keepdim=False):
    ddof = 1 if correction is None else correction
    axes = _axes(dim, self.ndim)
    return jnp.var(self, axis=axes, ddof=ddof, keepdims=keepdim), jnp.mean(self, axis=axes, keepdims=keepdim)


@implements("aten.amax.default")
def amax(self, dim=(), keepdim=False):
    return jnp.max(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten.amin.default")
def amin(self, dim=(), keepdim=False):
    return jnp.min(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten.max.default")
def max_(self):
    return jnp.max(self)


@implements("aten.min.default")
def min_(self):
    return jnp.min(self)


@implements("aten.max.dim")
def max_dim(self, dim, keepdim=False):
    return jnp.max(self, axis=dim, keepdims=keepdim), jnp.argmax(self, axis=dim, keepdims=keepdim)


@implements("aten.min.dim")
def min_dim(self, dim, keepdim=False):
    return jnp.min(self, axis=dim, keepdims=keepdim), jnp.argmin(self, axis=dim, keepdims=keepdim)


@implements("aten.argmax.default")
def argmax(self, dim=None, keepdim=False):
    return jnp.argmax(self, axis=dim, keepdims=keepdim)


@implements("aten.argmin.default")
def argmin(self, dim=None, keepdim=False):
    return jnp.argmin(self, axis=dim, keepdims=keepdim)


@implements("aten.any.default", "aten.any.dim", "aten.any.dims")
def any_(self, dim=None, keepdim=False):
    return jnp.any(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten.all.default", "aten.all.dim", "aten.all.dims")
def all_(self, dim=None, keepdim=False):
    return jnp.all(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten.cumsum.default")
def cumsum(self, dim, *, dtype=None):
    return jnp.cumsum(self, axis=dim, dtype=dtype)


@implements("aten.cumprod.default")
def cumprod(self, dim, *, dtype=None):
    return jnp.cumprod(self, axis=dim, dtype=dtype)


@implements("aten.logsumexp.default")
def logsumexp(self, dim, keepdim=False):
    return jax.nn.logsumexp(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten._softmax.default")
def softmax(self, dim, half_to_float=False):
    return jax.nn.softmax(self, axis=dim)


@implements("aten._log_softmax.default")
def log_softmax(self, dim, half_to_float=False):
    return jax.nn.log_softmax(self, axis=dim)


# ---------------------------------------------------------------------------------------------
# Shapes and indexing


@implements("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def view(self, size):
    return jnp.reshape(self, tuple(size))


@implements("aten.permute.default")
def permute(self, dims):
    return jnp.transpose(self, tuple(dims))


@implements("aten.t.default")
def t(self):
    return self.T


@implements("aten.transpose.int")
def transpose(self, dim0, dim1):
    return jnp.swapaxes(self, dim0, dim1)


@implements("aten.expand.default")
def expand(self, size, *, implicit=False):
    size = tuple(size)
    lead = len(size) - self.ndim
    shape = tuple(s if n == -1 else n for s, n in zip((1,) * lead + self.shape, size, strict=True))
    return jnp.broadcast_to(self, shape)


@implements("aten.unsqueeze.default")
def unsqueeze(self, dim):
    return jnp.expand_dims(self, dim if dim >= 0 else self.ndim + 1 + dim)


@implements("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default")
def squeeze(self, dim=None):
    axes = range(self.ndim) if dim is None else (dim if isinstance(dim, list | tuple) else (dim,))
    axes = tuple(a % max(self.ndim, 1) for a in axes if self.ndim and self.shape[a] == 1)
    return jnp.squeeze(self, axes) if axes else self


@implements("aten.cat.default")
def cat(tensors, dim=0):
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or tensors[:1]
    return jnp.concatenate(tensors, axis=dim)


@implements("aten.stack.default")
def stack(tensors, dim=0):
    return jnp.stack(tensors, axis=dim)


@implements("aten.split_with_sizes.default")
def split_with_sizes(self, split_sizes, dim=0):
    return jnp.split(self, np.cumsum(split_sizes)[:-1].tolist(), axis=dim)


@implements("aten.split.Tensor")
def split(self, split_size, dim=0):
    n = self.shape[dim]
    return jnp.split(self, list(range(split_size, n, split_size)), axis=dim)


@implements("aten.unbind.int")
def unbind(self, dim=0):
    return [jnp.take(self, i, axis=dim) for i in range(self.shape[dim])]


@implements("aten.slice.Tensor")
def slice_(self, dim=0, start=None, end=None, step=1):
    index = [slice(None)] * self.ndim
    index[dim] = slice(start, end, step)
    return self[tuple(index)]


@implements("aten.select.int")
def select(self, dim, index):
    return jnp.take(self, index, axis=dim)


@implements("aten.narrow.default")
def narrow(self, dim, start, length):
    return jax.lax.slice_in_dim(self, start % self.shape[dim], start % self.shape[dim] + length, axis=dim)


@implements("aten.index.Tensor")
def index(self, indices):
    """Advanced indexing: None entries are full slices; the index arrays broadcast together."""
    return self[tuple(slice(None) if i is None else i for i in indices)]


@implements("aten.index_put.default")
def index_put(self, indices, values, accumulate=False):
    index = tuple(slice(None) if i is None else i for i in indices)
    return self.at[index].add(values) if accumulate else self.at[index].set(values)


@implements("aten.index_select.default")
def index_select(self, dim, index):
    return jnp.take(self, index, axis=dim)


@implements("aten.gather.default")
def gather(self, dim, index, *, sparse_grad=False):
    return jnp.take_along_axis(self, index, axis=dim)


@implements("aten.scatter.src", "aten.scatter.value")
def scatter(self, dim, index, src):
    idx = list(jnp.indices(index.shape, sparse=True))
    idx[dim] = index
    src = jnp.broadcast_to(src, index.shape) if jnp.ndim(src) == 0 else src[tuple(slice(0, s) for s in index.shape)]
    return self.at[tuple(idx)].set(src)


@implements("aten.scatter_add.default")
def scatter_add(self, dim, index, src):
    idx = list(jnp.indices(index.shape, sparse=True))
    idx[dim] = index
    return self.at[tuple(idx)].add(src[tuple(slice(0, s) for s in index.shape)])


@implements("aten.flip.default")
def flip(self, dims):
    return jnp.flip(self, tuple(dims))


@implements("aten.roll.default")
def roll(self, shifts, dims=()):
    return jnp.roll(self, tuple(shifts), tuple(dims) if dims else None)


@implements("aten.repeat.default")
def repeat(self, repeats):
    repeats = tuple(repeats)
    x = self.reshape((1,) * (len(repeats) - self.ndim) + self.shape)
    return jnp.tile(x, repeats)


@implements("aten.constant_pad_nd.default")
def constant_pad_nd(self, pad, value=0):
    widths = [(0, 0)] * self.ndim
    for i in range(len(pad) // 2):
        widths[self.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    out = self
    # negative pads crop
    crop = tuple(slice(max(-lo, 0), self.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(widths))
    out = out[crop]
    return jnp.pad(out, [(max(lo, 0), max(hi, 0)) for lo, hi in widths], constant_values=value)


@implements("aten.triu.default")
def triu(self, diagonal=0):
    return jnp.triu(self, diagonal)


@implements("aten.tril.default")
def tril(self, diagonal=0):
    return jnp.tril(self, diagonal)


@implements("aten.embedding.default")
def embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """Rows of `weight`; the row `padding_idx` gets no gradient, as in torch."""
    if padding_idx is not None and padding_idx >= 0:
        rows = jnp.take(weight, indices, axis=0)
        pad = (indices == padding_idx)[..., None]
        return jnp.where(pad, jax.lax.stop_gradient(rows), rows)
    return jnp.take(weight, indices, axis=0)


@implements("aten.one_hot.default")
def one_hot(self, num_classes=-1):
    return jax.nn.one_hot(self, num_classes, dtype=jnp.int32)


# ---------------------------------------------------------------------------------------------
# Linear algebra


@implements("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def mm(self, mat2):
    return jnp.matmul(self, mat2, precision=jax.lax.Precision.HIGHEST)


@implements("aten.addmm.default")
def addmm(self, mat1, mat2, *, beta=1, alpha=1):
    return beta * self + alpha * jnp.matmul(mat1, mat2, precision=jax.lax.Precision.HIGHEST) if (
        beta != 1 or alpha != 1) else self + jnp.matmul(mat1, mat2, precision=jax.lax.Precision.HIGHEST)


@implements("aten.baddbmm.default")
def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
    return beta * self + alpha * jnp.matmul(batch1, batch2, precision=jax.lax.Precision.HIGHEST)


@implements("aten.dot.default")
def dot(self, tensor):
    return jnp.dot(self, tensor, precision=jax.lax.Precision.HIGHEST)


# ---------------------------------------------------------------------------------------------
# Normalisation, convolution, pooling, dropout


@implements("aten._native_batch_norm_legit_functional.default")
def batch_norm_functional(input, weight, bias, running_mean, running_var, training, momentum, eps):
    """(output, batch mean, batch rstd, new running mean, new running var), as torch's training
    batch norm (running var updated with the unbiased batch variance)."""
    axes = (0, *range(2, input.ndim))
    shape = (1, -1) + (1,) * (input.ndim - 2)
    if training:
        mean_ = jnp.mean(input, axis=axes)
        var_ = jnp.var(input, axis=axes)
        n = input.size // input.shape[1]
        new_mean = (1 - momentum) * running_mean + momentum * mean_
        new_var = (1 - momentum) * running_var + momentum * var_ * (n / (n - 1))
    else:
        mean_, var_, new_mean, new_var = running_mean, running_var, running_mean, running_var
    rstd = jax.lax.rsqrt(var_ + eps)
    out = (input - mean_.reshape(shape)) * rstd.reshape(shape)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean_, rstd, new_mean, new_var


@implements("aten._native_batch_norm_legit_no_training.default")
def batch_norm_inference(input, weight, bias, running_mean, running_var, momentum, eps):
    out = batch_norm_functional(input, weight, bias, running_mean, running_var, False, momentum, eps)
    return out[0], jnp.zeros((0,), input.dtype), jnp.zeros((0,), input.dtype)


@implements("aten._native_batch_norm_legit.no_stats")
def batch_norm_no_stats(input, weight, bias, training, momentum, eps):
    axes = (0, *range(2, input.ndim))
    shape = (1, -1) + (1,) * (input.ndim - 2)
    mean_, var_ = jnp.mean(input, axis=axes), jnp.var(input, axis=axes)
    rstd = jax.lax.rsqrt(var_ + eps)
    out = (input - mean_.reshape(shape)) * rstd.reshape(shape)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean_, rstd


@implements("aten.native_layer_norm.default")
def native_layer_norm(input, normalized_shape, weight, bias, eps):
    axes = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    mean_ = jnp.mean(input, axis=axes, keepdims=True)
    var_ = jnp.var(input, axis=axes, keepdims=True)
    rstd = jax.lax.rsqrt(var_ + eps)
    out = (input - mean_) * rstd
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out, mean_, rstd


@implements("aten.convolution.default")
def convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """torch's convolution over N spatial dims (NC... layout, weights O x I/groups x ...)."""
    n = weight.ndim - 2
    if transposed:
        raise NotImplementedError("transposed convolution")
    unbatched = input.ndim == n + 1
    x = input[None] if unbatched else input
    dims = ("NCH", "OIH", "NCH") if n == 1 else ("NCHW", "OIHW", "NCHW") if n == 2 else ("NCDHW", "OIDHW", "NCDHW")
    out = jax.lax.conv_general_dilated(
        x, weight, window_strides=tuple(stride), padding=[(p, p) for p in padding], rhs_dilation=tuple(dilation),
        dimension_numbers=dims, feature_group_count=groups, precision=jax.lax.Precision.HIGHEST,
    )
    if bias is not None:
        out = out + bias.reshape((1, -1) + (1,) * n)
    return out[0] if unbatched else out


def _pool_padding(x, kernel, stride, padding, ceil_mode, n):
    pads = []
    for d in range(n):
        size = x.shape[x.ndim - n + d]
        lo = hi = padding[d]
        if ceil_mode:
            out = math.ceil((size + 2 * lo - kernel[d]) / stride[d]) + 1
            if (out - 1) * stride[d] >= size + lo:
                out -= 1
            hi = max((out - 1) * stride[d] + kernel[d] - size - lo, lo)
        pads.append((lo, hi))
    return pads


def _spatial(values, n):
    values = tuple(values)
    return values * n if len(values) == 1 else values


@implements("aten.max_pool2d_with_indices.default", "aten.max_pool1d_with_indices.default")
def max_pool_with_indices(self, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    n = 2 if len(kernel_size) == 2 or self.ndim == 4 else 1
    kernel = _spatial(kernel_size, n)
    stride = _spatial(stride or kernel, n)
    padding = _spatial(padding if isinstance(padding, list | tuple) else (padding,), n)
    dilation = _spatial(dilation if isinstance(dilation, list | tuple) else (dilation,), n)
    lead = self.ndim - n
    pads = [(0, 0)] * lead + _pool_padding(self, kernel, stride, padding, ceil_mode, n)
    out = jax.lax.reduce_window(
        self, -jnp.inf, jax.lax.max, (1,) * lead + kernel, (1,) * lead + stride, pads,
        window_dilation=(1,) * lead + dilation,
    )
    return out, jnp.zeros(out.shape, jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)


@implements("aten.avg_pool2d.default", "aten.avg_pool1d.default")
def avg_pool(self, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    n = len(kernel_size)
    kernel = _spatial(kernel_size, n)
    stride = _spatial(stride or kernel, n)
    padding = _spatial(padding if isinstance(padding, list | tuple) else (padding,), n)
    lead = self.ndim - n
    pads = [(0, 0)] * lead + _pool_padding(self, kernel, stride, padding, ceil_mode, n)
    window, strides = (1,) * lead + kernel, (1,) * lead + stride
    total = jax.lax.reduce_window(self, 0.0, jax.lax.add, window, strides, pads)
    if divisor_override:
        return total / divisor_override
    if count_include_pad:
        # the window as clipped to the explicitly padded input (not to ceil_mode's extra padding)
        ones = jnp.pad(jnp.ones(self.shape, self.dtype), [(0, 0)] * lead + [(p, p) for p in padding])
        extra = [(0, 0)] * lead + [(0, hi - p) for (_, hi), p in zip(pads[lead:], padding, strict=True)]
        count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, extra)
    else:
        count = jax.lax.reduce_window(jnp.ones(self.shape, self.dtype), 0.0, jax.lax.add, window, strides, pads)
    return total / count


@implements("aten.native_dropout.default", random=True)
def native_dropout(input, p, train, *, key):
    if not train or p == 0:
        return input, jnp.ones(input.shape, bool)
    keep = jax.random.bernoulli(key(), 1 - p, input.shape)
    return jnp.where(keep, input / (1 - p), 0).astype(input.dtype), keep


@implements("aten.bernoulli.p", random=True)
def bernoulli(self, p=0.5, *, generator=None, key):
    return jax.random.bernoulli(key(), p, self.shape).astype(self.dtype)


@implements("aten.rand.default", random=True)
def rand(size, *, generator=None, dtype=None, layout=None, device=None, pin_memory=None, key):
    return jax.random.uniform(key(), tuple(size), dtype or jnp.float32)


@implements("aten.randn.default", random=True)
def randn(size, *, generator=None, dtype=None, layout=None, device=None, pin_memory=None, key):
    return jax.random.normal(key(), tuple(size), dtype or jnp.float32)
