"""Core ATen in jax.numpy: one small function per operator of an exported, decomposed graph.

Each function takes the operator's arguments as ATen's schema names them (see
`jaxseq.port.registry` for how values arrive) and is tested against torch's own OpInfo samples
(`parity_tests/test_opinfo.py`). Recurrent layers and cells are in `jaxseq.port.recurrent`.
"""

from __future__ import annotations

import functools
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


@implements("aten.detach.default")
def detach(self):
    return jax.lax.stop_gradient(self)


@implements("aten.alias.default", "aten.clone.default", "aten._to_copy.default", "aten.lift_fresh.default",
            "aten.lift_fresh_copy.default")
def copy(self, *, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False, memory_format=None):
    return self if dtype is None else self.astype(dtype)


# ---------------------------------------------------------------------------------------------
# Dims as torch reads them: negative from the end, and a 0-d tensor taking dim 0 or -1 as if it were 1-d


def _axes(dim, ndim):
    """A dim argument (int, list, None) as a tuple of axes, or None for all of them ([] means all too)."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim or ())
    if not dims:
        return None
    return () if ndim == 0 else tuple(d % ndim for d in dims)


def _on_1d(fn):
    """`fn(self, dim, ...)` on a 0-d `self` as torch runs it: on the tensor as 1-d, then back to 0-d."""

    @functools.wraps(fn)
    def op(self, dim, *args, **kwargs):
        if self.ndim == 0:
            out = fn(self.reshape(1), 0, *args, **kwargs)
            return jax.tree.map(lambda x: x.reshape(()), out)
        return fn(self, dim % self.ndim, *args, **kwargs)

    return op


def _lowest(dtype):
    return -jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).min


def _highest(dtype):
    return jnp.inf if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo(dtype).max


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


@implements("aten.empty_permuted.default")
def empty_permuted(size, physical_layout, *, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.zeros(tuple(size), dtype)


@implements("aten.full_like.default")
def full_like(self, fill_value, *, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.full(self.shape, fill_value, dtype or self.dtype)


@implements("aten.fill.Scalar", "aten.fill.Tensor")
def fill(self, value):
    return jnp.broadcast_to(jnp.asarray(value, self.dtype), self.shape)


@implements("aten.copy.default")
def copy_into(self, src, non_blocking=False):
    """`src` in `self`'s shape and dtype (the functional form of `self.copy_(src)`): the gradient goes to src."""
    return jnp.broadcast_to(src.astype(self.dtype), self.shape)


@implements("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def arange(start, end=None, step=1, *, dtype=None, layout=None, device=None, pin_memory=None):
    start, end = (0, start) if end is None else (start, end)
    n = max(math.ceil((end - start) / step), 0)
    return start + step * jnp.arange(n, dtype=dtype)


@implements("prims.iota.default")
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
    """Division rounded as torch rounds it: None (true division), "trunc" (toward zero), "floor"."""
    if rounding_mode is None:
        return jnp.true_divide(self, other)
    if not jnp.issubdtype(jnp.result_type(self, other), jnp.floating):  # integers: exact
        floor = jnp.floor_divide(self, other)
        if rounding_mode == "floor":
            return floor
        inexact = (jnp.remainder(self, other) != 0) & ((self < 0) != (other < 0))
        return jnp.where(inexact, floor + 1, floor)
    if rounding_mode == "trunc":
        return jnp.trunc(jnp.true_divide(self, other))
    return _floor_divide(self, other)


def _floor_divide(a, b):
    """torch's floor division of floats (`div_floor_floating`): from fmod, then rounded to the nearest."""
    mod = jnp.fmod(a, b)
    q = (a - mod) / b
    q = jnp.where((mod != 0) & ((b < 0) != (mod < 0)), q - 1, q)
    floor = jnp.floor(q)
    floor = jnp.where(q - floor > 0.5, floor + 1, floor)
    return jnp.where(q == 0, jnp.copysign(0.0, a / b), jnp.where(b == 0, a / b, floor))


@implements("aten.floor_divide.default", "aten.floor_divide.Scalar")
def floor_divide(self, other):
    return div_mode(self, other, rounding_mode="floor")


@implements("aten.pow.Tensor_Tensor", "aten.pow.Tensor_Scalar", "aten.pow.Scalar")
def pow_(self, exponent):
    if isinstance(exponent, float) and exponent.is_integer() and abs(exponent) <= 64:
        exponent = int(exponent)  # repeated multiplication, and no NaN in the gradient at 0
    return jnp.power(self, exponent)


@implements("aten.remainder.Tensor", "aten.remainder.Scalar", "aten.remainder.Scalar_Tensor")
def remainder(self, other):
    """torch's remainder: a - b * floor(a / b) for floats, the sign of b for integers."""
    if not jnp.issubdtype(jnp.result_type(self, other), jnp.floating):
        return jnp.remainder(self, other)
    mod = jnp.fmod(self, other)
    return jnp.where((mod != 0) & ((other < 0) != (mod < 0)), mod + other, mod)


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
    "isnan": jnp.isnan, "isinf": jnp.isinf, "exp2": jnp.exp2, "sgn": jnp.sign,
    "lgamma": jax.scipy.special.gammaln, "frac": lambda x: x - jnp.trunc(x),
    "signbit": jnp.signbit, "isfinite": jnp.isfinite,
}
for _name, _fn in _UNARY.items():
    implements(f"aten.{_name}.default")(_fn)


def _trigamma(x):
    """The derivative of digamma, as torch computes it (`calc_trigamma`: reflection below 1/2, six
    steps of the recurrence, then the asymptotic series): JAX's polygamma(1, x) differs by up to 1e-9."""
    reflect = x < 0.5
    sin_pi_x = jnp.sin(jnp.pi * x)
    result = jnp.where(reflect, -(jnp.pi**2) / (sin_pi_x * sin_pi_x), 0.0)
    x = jnp.where(reflect, 1 - x, x)
    for _ in range(6):
        result = result + 1 / (x * x)
        x = x + 1
    ixx = 1 / (x * x)
    result = result + (1 + 1 / (2 * x) + ixx * (1 / 6 - ixx * (1 / 30 - ixx * (1 / 42)))) / x
    return jnp.where(reflect, -result, result)


@jax.custom_jvp
def _digamma(x):
    return jax.scipy.special.digamma(x)


_digamma.defjvp(lambda primals, tangents: (_digamma(primals[0]), _trigamma(primals[0]) * tangents[0]))
implements("aten.digamma.default")(_digamma)


@implements("aten.relu.default")
def relu(self):
    return jax.nn.relu(self)


@implements("aten.square.default")
def square(self):
    return self * self


@implements("aten.round.decimals")
def round_decimals(self, *, decimals=0):
    scale = 10.0 ** abs(decimals)
    return jnp.round(self * scale) / scale if decimals >= 0 else jnp.round(self / scale) * scale


# name: its overloads. Binary ops whose arguments are (self, other), with NumPy's broadcasting.
_BINARY = {
    "eq": ("Tensor", "Scalar"), "ne": ("Tensor", "Scalar"), "lt": ("Tensor", "Scalar"), "le": ("Tensor", "Scalar"),
    "gt": ("Tensor", "Scalar"), "ge": ("Tensor", "Scalar"), "logical_and": ("default",),
    "logical_or": ("default",), "logical_xor": ("default",), "bitwise_and": ("Tensor", "Scalar"),
    "bitwise_or": ("Tensor", "Scalar"), "bitwise_xor": ("Tensor", "Scalar"), "maximum": ("default",),
    "minimum": ("default",), "atan2": ("default",), "hypot": ("default",), "fmax": ("default",),
    "fmin": ("default",), "copysign": ("Tensor", "Scalar"), "nextafter": ("default",),
    "xlogy": ("Tensor", "Scalar_Other", "Scalar_Self"),
}
_BINARY_FNS = {
    "eq": jnp.equal, "ne": jnp.not_equal, "lt": jnp.less, "le": jnp.less_equal, "gt": jnp.greater,
    "ge": jnp.greater_equal, "logical_and": jnp.logical_and, "logical_or": jnp.logical_or,
    "logical_xor": jnp.logical_xor, "bitwise_and": jnp.bitwise_and, "bitwise_or": jnp.bitwise_or,
    "bitwise_xor": jnp.bitwise_xor, "maximum": jnp.maximum, "minimum": jnp.minimum, "atan2": jnp.arctan2,
    "hypot": jnp.hypot, "fmax": jnp.fmax, "fmin": jnp.fmin, "copysign": jnp.copysign, "nextafter": jnp.nextafter,
    "xlogy": jax.scipy.special.xlogy,
}
for _name, _overloads in _BINARY.items():
    implements(*(f"aten.{_name}.{o}" for o in _overloads))(_BINARY_FNS[_name])


@implements("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def where(condition, self, other):
    return jnp.where(condition, self, other)


@implements("aten.clamp.default", "aten.clamp.Tensor")
def clamp(self, min=None, max=None):
    """As torch's clamp: the gradient passes where min <= self <= max (both ends included), NaN stays NaN."""
    out = self
    if min is not None:
        out = jnp.where(out < min, min, out)
    if max is not None:
        out = jnp.where(out > max, max, out)
    return out


@implements("aten.clamp_min.default", "aten.clamp_min.Tensor")
def clamp_min(self, min):
    return clamp(self, min=min)


@implements("aten.clamp_max.default", "aten.clamp_max.Tensor")
def clamp_max(self, max):
    return clamp(self, max=max)


@implements("aten.hardtanh.default")
def hardtanh(self, min_val=-1, max_val=1):
    """clamp, with torch's gradient: zero at min_val and max_val themselves (the interval is open)."""
    inside = (self > min_val) & (self < max_val)
    return jnp.where(inside, self, jax.lax.stop_gradient(jnp.clip(self, min_val, max_val)))


@implements("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(self, mask, value):
    return jnp.where(mask, jnp.asarray(value).astype(self.dtype), self)


@implements("aten.lerp.Scalar", "aten.lerp.Tensor")
def lerp(self, end, weight):
    """torch's two-sided formula (exact at weight 0 and 1)."""
    return jnp.where(jnp.abs(weight) < 0.5, self + weight * (end - self), end - (end - self) * (1 - weight))


@implements("aten.gelu.default")
def gelu(self, *, approximate="none"):
    return jax.nn.gelu(self, approximate=approximate == "tanh")


@implements("aten.elu.default")
def elu(self, alpha=1, scale=1, input_scale=1):
    negative = jnp.minimum(self, 0)  # no overflow in the branch not taken
    return jnp.where(self > 0, self * scale, alpha * scale * jnp.expm1(negative * input_scale))


@implements("aten.leaky_relu.default")
def leaky_relu(self, negative_slope=0.01):
    return jnp.where(self > 0, self, self * negative_slope)


@implements("aten.softplus.default")
def softplus(self, beta=1, threshold=20):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold, as in torch."""
    linear = self * beta > threshold
    return jnp.where(linear, self, jnp.log1p(jnp.exp(jnp.where(linear, 0, self * beta))) / beta)


@implements("aten.silu.default")
def silu(self):
    return self * jax.nn.sigmoid(self)


@implements("aten.logit.default")
def logit(self, eps=None):
    x = self if eps is None else clamp(self, eps, 1 - eps)
    return jnp.log(x / (1 - x))


@implements("aten.nan_to_num.default")
def nan_to_num(self, nan=None, posinf=None, neginf=None):
    return jnp.nan_to_num(self, nan=0.0 if nan is None else nan, posinf=posinf, neginf=neginf)


# ---------------------------------------------------------------------------------------------
# Reductions


@implements("aten.sum.dim_IntList", "aten.sum.default")
def sum_(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.sum(self, axis=_axes(dim, self.ndim), keepdims=keepdim, dtype=dtype)


@implements("aten.mean.dim", "aten.mean.default")
def mean(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.mean(self, axis=_axes(dim, self.ndim), keepdims=keepdim, dtype=dtype)


@implements("aten.prod.dim_int", "aten.prod.default")
def prod(self, dim=None, keepdim=False, *, dtype=None):
    return jnp.prod(self, axis=_axes(dim, self.ndim), keepdims=keepdim, dtype=dtype)


@implements("aten.var.correction", "aten.var.dim", "aten.var.default")
def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance dividing by N - correction (torch's `unbiased` is correction 1; the default is 1)."""
    if isinstance(dim, bool):  # var.default(self, unbiased)
        dim, unbiased = None, dim
    ddof = correction if correction is not None else (1 if unbiased is None or unbiased else 0)
    axes = _axes(dim, self.ndim)
    n = self.size if axes is None else math.prod(self.shape[a] for a in axes)
    mean_ = jnp.mean(self, axis=axes, keepdims=True)
    squares = jnp.sum(jnp.square(jnp.abs(self - mean_)), axis=axes, keepdims=keepdim)
    return squares / max(n - ddof, 0)


@implements("aten.var_mean.correction", "aten.var_mean.dim", "aten.var_mean.default")
def var_mean(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return (var(self, dim, unbiased, keepdim, correction=correction),
            jnp.mean(self, axis=_axes(dim, self.ndim), keepdims=keepdim))


@implements("aten.amax.default")
def amax(self, dim=(), keepdim=False):
    """The largest value; the gradient is shared evenly between equal largest values, as in torch."""
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


@implements("aten.max.other")
def max_other(self, other):
    return jnp.maximum(self, other)


@implements("aten.min.other")
def min_other(self, other):
    return jnp.minimum(self, other)


@implements("aten.max.dim")
@_on_1d
def max_dim(self, dim, keepdim=False):
    """(values, indices); the gradient goes to the index taken, as in torch."""
    index = jnp.argmax(self, axis=dim, keepdims=True)
    values = jnp.take_along_axis(self, index, axis=dim)
    return (values, index) if keepdim else (values.squeeze(dim), index.squeeze(dim))


@implements("aten.min.dim")
@_on_1d
def min_dim(self, dim, keepdim=False):
    index = jnp.argmin(self, axis=dim, keepdims=True)
    values = jnp.take_along_axis(self, index, axis=dim)
    return (values, index) if keepdim else (values.squeeze(dim), index.squeeze(dim))


@implements("aten.argmax.default")
def argmax(self, dim=None, keepdim=False):
    if dim is None or self.ndim == 0:
        out = jnp.argmax(self.reshape(-1))
        return out.reshape((1,) * self.ndim) if keepdim else out
    return jnp.argmax(self, axis=dim, keepdims=keepdim)


@implements("aten.argmin.default")
def argmin(self, dim=None, keepdim=False):
    if dim is None or self.ndim == 0:
        out = jnp.argmin(self.reshape(-1))
        return out.reshape((1,) * self.ndim) if keepdim else out
    return jnp.argmin(self, axis=dim, keepdims=keepdim)


@implements("aten.any.default", "aten.any.dim", "aten.any.dims")
def any_(self, dim=None, keepdim=False):
    return jnp.any(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten.all.default", "aten.all.dim", "aten.all.dims")
def all_(self, dim=None, keepdim=False):
    return jnp.all(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@implements("aten.cumsum.default")
@_on_1d
def cumsum(self, dim, *, dtype=None):
    return jnp.cumsum(self, axis=dim, dtype=dtype)


@implements("aten.cumprod.default")
@_on_1d
def cumprod(self, dim, *, dtype=None):
    return jnp.cumprod(self, axis=dim, dtype=dtype)


@implements("aten.logsumexp.default")
def logsumexp(self, dim, keepdim=False):
    return jax.nn.logsumexp(self, axis=_axes(dim, self.ndim), keepdims=keepdim)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _softmax(x, axis):
    return jax.nn.softmax(x, axis=axis)


def _softmax_fwd(x, axis):
    y = jax.nn.softmax(x, axis=axis)
    return y, y


def _softmax_bwd(axis, y, g):
    grad = y * (g - jnp.sum(g * y, axis=axis, keepdims=True))
    return (jnp.where(jnp.all(g == 0, axis=axis, keepdims=True), 0, grad),)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _log_softmax(x, axis):
    return jax.nn.log_softmax(x, axis=axis)


def _log_softmax_fwd(x, axis):
    y = jax.nn.log_softmax(x, axis=axis)
    return y, y


def _log_softmax_bwd(axis, y, g):
    grad = g - jnp.exp(y) * jnp.sum(g, axis=axis, keepdims=True)
    return (jnp.where(jnp.all(g == 0, axis=axis, keepdims=True), 0, grad),)


_log_softmax.defvjp(_log_softmax_fwd, _log_softmax_bwd)


@implements("aten._softmax.default")
@_on_1d
def softmax(self, dim, half_to_float=False):
    """softmax along dim. A row whose cotangent is all zero gets a zero gradient even where the row is
    NaN (all -inf): torch's `_safe_softmax` (attention) masks such rows, and so its gradient is 0 there."""
    return _softmax(self, dim)


@implements("aten._log_softmax.default")
@_on_1d
def log_softmax(self, dim, half_to_float=False):
    """log_softmax along dim; a zero cotangent gives a zero gradient, as for softmax."""
    return _log_softmax(self, dim)


@implements("aten._safe_softmax.default")
@_on_1d
def safe_softmax(self, dim, dtype=None):
    """softmax, with 0 for rows that are all -inf (torch's attention softmax)."""
    x = self if dtype is None else self.astype(dtype)
    empty = jnp.all(x == -jnp.inf, axis=dim, keepdims=True)
    return jnp.where(empty, 0, _softmax(x, dim))


@implements("aten.linalg_vector_norm.default")
def linalg_vector_norm(self, ord=2, dim=None, keepdim=False, *, dtype=None):
    """The vector p-norm over dim (all dims if None); the gradient at a zero vector is 0, as in torch."""
    x = jnp.abs(self if dtype is None else self.astype(dtype))
    axes = _axes(dim, self.ndim)
    if ord == math.inf:
        return jnp.max(x, axis=axes, keepdims=keepdim)
    if ord == -math.inf:
        return jnp.min(x, axis=axes, keepdims=keepdim)
    if ord == 0:
        return jnp.sum(x != 0, axis=axes, keepdims=keepdim).astype(x.dtype)
    if ord == 1:
        return jnp.sum(x, axis=axes, keepdims=keepdim)
    total = jnp.sum(x * x if ord == 2 else x**ord, axis=axes, keepdims=keepdim)
    zero = total == 0
    safe = jnp.where(zero, 1, total)
    return jnp.where(zero, 0, jnp.sqrt(safe) if ord == 2 else safe ** (1 / ord))


# ---------------------------------------------------------------------------------------------
# Shapes and indexing


@implements("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def view(self, size):
    return jnp.reshape(self, tuple(size))


@implements("aten.permute.default")
def permute(self, dims):
    return jnp.transpose(self, tuple(d % self.ndim for d in dims)) if self.ndim else self


@implements("aten.t.default")
def t(self):
    return self.T


@implements("aten.transpose.int")
def transpose(self, dim0, dim1):
    return jnp.swapaxes(self, dim0, dim1) if self.ndim else self


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
    if self.ndim == 0:
        return self
    axes = range(self.ndim) if dim is None else (dim if isinstance(dim, list | tuple) else (dim,))
    axes = tuple(a % self.ndim for a in axes if self.shape[a] == 1)
    return jnp.squeeze(self, axes) if axes else self


@implements("aten.cat.default")
def cat(tensors, dim=0):
    """Concatenation; torch skips 1-d empty tensors whatever their rank (a legacy rule)."""
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
    return jnp.split(self, list(range(split_size, n, split_size)), axis=dim) if n else [self]


@implements("aten.unbind.int")
def unbind(self, dim=0):
    return [jax.lax.index_in_dim(self, i, dim, keepdims=False) for i in range(self.shape[dim])]


@implements("aten.slice.Tensor")
def slice_(self, dim=0, start=None, end=None, step=1):
    index = [slice(None)] * self.ndim
    index[dim] = slice(start, end, step)
    return self[tuple(index)]


@implements("aten.slice_scatter.default")
def slice_scatter(self, src, dim=0, start=None, end=None, step=1):
    index = [slice(None)] * self.ndim
    index[dim] = slice(start, end, step)
    return self.at[tuple(index)].set(src)


@implements("aten.select.int")
def select(self, dim, index):
    return jax.lax.index_in_dim(self, index % self.shape[dim], dim, keepdims=False)


@implements("aten.select_scatter.default")
def select_scatter(self, src, dim, index):
    at = [slice(None)] * self.ndim
    at[dim] = index % self.shape[dim]
    return self.at[tuple(at)].set(src)


@implements("aten.diagonal.default")
def diagonal(self, offset=0, dim1=0, dim2=1):
    return jnp.diagonal(self, offset, dim1, dim2)


@implements("aten.diagonal_scatter.default")
def diagonal_scatter(self, src, offset=0, dim1=0, dim2=1):
    dim1, dim2 = dim1 % self.ndim, dim2 % self.ndim
    n = src.shape[-1]
    rows = np.arange(n) + max(-offset, 0)
    cols = np.arange(n) + max(offset, 0)
    moved = jnp.moveaxis(self, (dim1, dim2), (-2, -1))
    moved = moved.at[..., rows, cols].set(src)
    return jnp.moveaxis(moved, (-2, -1), (dim1, dim2))


@implements("aten.narrow.default")
def narrow(self, dim, start, length):
    return jax.lax.slice_in_dim(self, start % self.shape[dim], start % self.shape[dim] + length, axis=dim)


def _mask_index(indices):
    """The boolean mask, where `indices` is one boolean mask over the leading dims; else None."""
    used = [i for i in indices if i is not None]
    if len(used) == 1 and indices[0] is not None and used[0].dtype == jnp.bool_:
        return used[0]
    return None


@implements("aten.index.Tensor")
def index(self, indices):
    """Advanced indexing: None entries are full slices; the index arrays broadcast together."""
    return self[tuple(slice(None) if i is None else i for i in indices)]


@implements("aten.index_put.default")
def index_put(self, indices, values, accumulate=False):
    """`self[indices] = values` (or `+=`). A boolean mask over the leading dims, as `x[mask] = v` makes,
    is a `where` (so it runs under jit, where the mask's number of True values is not known)."""
    mask = _mask_index(indices)
    if mask is not None and values.size == 1:
        mask = mask.reshape(mask.shape + (1,) * (self.ndim - mask.ndim))
        values = values.reshape(()).astype(self.dtype)
        return jnp.where(mask, self + values if accumulate else values, self)
    index = tuple(slice(None) if i is None else i for i in indices)
    return self.at[index].add(values) if accumulate else self.at[index].set(values)


@implements("aten.index_select.default")
def index_select(self, dim, index):
    if self.ndim == 0:
        return self
    return jnp.take(self, index, axis=dim)


def _along(index, dim):
    """The full index tuple of take/put along `dim` at `index` (the other dims by position)."""
    idx = list(jnp.indices(index.shape, sparse=True))
    idx[dim] = index
    return tuple(idx)


@implements("aten.gather.default")
def gather(self, dim, index, *, sparse_grad=False):
    """self[..., index, ...] along dim; index may be smaller than self in the other dims."""
    if self.ndim == 0:
        return jnp.broadcast_to(self, index.shape)
    return self[_along(index, dim % self.ndim)]


def _scatter_src(src, index):
    return jnp.broadcast_to(src, index.shape) if jnp.ndim(src) == 0 else src[tuple(slice(0, s) for s in index.shape)]


@implements("aten.scatter.src", "aten.scatter.value")
def scatter(self, dim, index, src):
    if self.ndim == 0:
        return jnp.broadcast_to(jnp.asarray(src, self.dtype), ()) if index.size else self
    return self.at[_along(index, dim % self.ndim)].set(_scatter_src(src, index))


@implements("aten.scatter.reduce", "aten.scatter.value_reduce")
def scatter_reduce_legacy(self, dim, index, src, *, reduce):
    return scatter_reduce(self, dim, index, jnp.broadcast_to(jnp.asarray(src, self.dtype), index.shape),
                          {"add": "sum", "multiply": "prod"}[reduce])


@implements("aten.scatter_add.default")
def scatter_add(self, dim, index, src):
    if self.ndim == 0:
        return self + jnp.sum(src) if index.size else self
    return self.at[_along(index, dim % self.ndim)].add(_scatter_src(src, index))


@implements("aten.scatter_reduce.two")
def scatter_reduce(self, dim, index, src, reduce, *, include_self=True):
    """Reduces src into self at index along dim: "sum", "prod", "mean", "amax", "amin"; with
    include_self=False the values of self at the places written are left out."""
    if self.ndim == 0:
        out = scatter_reduce(self.reshape(1), 0, index.reshape(-1), src.reshape(-1), reduce, include_self=include_self)
        return out.reshape(())
    at = _along(index, dim % self.ndim)
    src = _scatter_src(src, index)
    written = jnp.zeros(self.shape, bool).at[at].set(True)
    if reduce in ("sum", "mean"):
        base = self if include_self else jnp.where(written, 0, self)
        total = base.at[at].add(src)
        if reduce == "sum":
            return total
        count = jnp.zeros(self.shape, self.dtype).at[at].add(1) + (1 if include_self else 0)
        count = jnp.where(count == 0, 1, count)
        return total // count if jnp.issubdtype(self.dtype, jnp.integer) else total / count
    if reduce == "prod":  # dense, for its gradient (JAX's scatter-multiply has none where indices repeat)
        dim = dim % self.ndim
        hits = jnp.moveaxis(index, dim, -1)[..., None] == jnp.arange(self.shape[dim])  # (..., n, L)
        product = jnp.prod(jnp.where(hits, jnp.moveaxis(src, dim, -1)[..., None], 1), axis=-2)
        product = jnp.moveaxis(product, -1, dim)  # index's shape, but self's along dim
        region = tuple(slice(0, s) if d != dim else slice(None) for d, s in enumerate(index.shape))
        base = self[region] if include_self else jnp.where(written[region], 1, self[region])
        return self.at[region].set(jnp.where(written[region], base * product, self[region]))
    if reduce in ("amax", "amin"):
        fill = _lowest(self.dtype) if reduce == "amax" else _highest(self.dtype)
        base = self if include_self else jnp.where(written, fill, self)
        return base.at[at].max(src) if reduce == "amax" else base.at[at].min(src)
    raise NotImplementedError(f"scatter_reduce with reduce={reduce!r}")


@implements("aten.flip.default")
def flip(self, dims):
    return jnp.flip(self, tuple(dims)) if self.ndim else self


@implements("aten.roll.default")
def roll(self, shifts, dims=()):
    if not dims:
        return jnp.roll(self.reshape(-1), shifts[0]).reshape(self.shape)
    return jnp.roll(self, tuple(shifts), tuple(dims))


@implements("aten.repeat.default")
def repeat(self, repeats):
    repeats = tuple(repeats)
    x = self.reshape((1,) * (len(repeats) - self.ndim) + self.shape)
    return jnp.tile(x, repeats)


@implements("aten.constant_pad_nd.default")
def constant_pad_nd(self, pad, value=0):
    """Pads the last len(pad) // 2 dims, (before, after) pairs from the last dim backwards; negative pads crop."""
    widths = [(0, 0)] * self.ndim
    for i in range(len(pad) // 2):
        widths[self.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    crop = tuple(slice(max(-lo, 0), self.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(widths))
    return jnp.pad(self[crop], [(max(lo, 0), max(hi, 0)) for lo, hi in widths], constant_values=value)


def _pad_mode(mode):
    def pad(self, padding):
        widths = [(0, 0)] * self.ndim
        for i in range(len(padding) // 2):
            widths[self.ndim - 1 - i] = (padding[2 * i], padding[2 * i + 1])
        return jnp.pad(self, widths, mode=mode)

    return pad


reflection_pad = implements(*(f"aten.reflection_pad{n}d.default" for n in (1, 2, 3)))(_pad_mode("reflect"))
replication_pad = implements(*(f"aten.replication_pad{n}d.default" for n in (1, 2, 3)))(_pad_mode("edge"))


@implements("aten.triu.default")
def triu(self, diagonal=0):
    return jnp.triu(self, diagonal)


@implements("aten.tril.default")
def tril(self, diagonal=0):
    return jnp.tril(self, diagonal)


@implements("aten.sort.default", "aten.sort.stable")
def sort(self, dim=-1, descending=False, *, stable=False):
    """(values, indices), ties in their original order; the gradient follows the indices."""
    if self.ndim == 0:
        return self, jnp.zeros((), jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)
    indices = jnp.argsort(self, axis=dim, stable=True, descending=descending)
    return jnp.take_along_axis(self, indices, axis=dim), indices


@implements("aten.topk.default")
def topk(self, k, dim=-1, largest=True, sorted=True):
    """The k largest (smallest) values along dim and their indices, in order."""
    values, indices = sort(self, dim, descending=largest)
    if self.ndim == 0:
        return values, indices
    return jax.lax.slice_in_dim(values, 0, k, axis=dim), jax.lax.slice_in_dim(indices, 0, k, axis=dim)


@implements("aten.embedding.default")
def embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """Rows of `weight`. As in torch, the row `padding_idx` gets no gradient, and with
    scale_grad_by_freq each row's gradient is divided by how often the row is taken."""
    rows = jnp.take(weight, indices, axis=0)
    if scale_grad_by_freq:
        counts = jnp.zeros(weight.shape[0], weight.dtype).at[indices.reshape(-1)].add(1)
        scale = jax.lax.stop_gradient(1 / counts[indices])[..., None]
        rows = jax.lax.stop_gradient(rows) + (rows - jax.lax.stop_gradient(rows)) * scale
    if padding_idx is not None and padding_idx >= 0:
        rows = jnp.where((indices == padding_idx)[..., None], jax.lax.stop_gradient(rows), rows)
    return rows


@implements("aten.one_hot.default")
def one_hot(self, num_classes=-1):
    if num_classes < 0:
        raise ValueError("one_hot needs num_classes: the number of classes cannot be read from the data under jit")
    return jax.nn.one_hot(self, num_classes, dtype=jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)


# ---------------------------------------------------------------------------------------------
# Linear algebra

_HIGHEST = jax.lax.Precision.HIGHEST


@implements("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def mm(self, mat2):
    return jnp.matmul(self, mat2, precision=_HIGHEST)


@implements("aten.addmm.default")
def addmm(self, mat1, mat2, *, beta=1, alpha=1):
    """beta self + alpha mat1 @ mat2; beta 0 ignores self (NaN included), as in torch."""
    product = jnp.matmul(mat1, mat2, precision=_HIGHEST)
    product = product if alpha == 1 else alpha * product
    return product if beta == 0 else (self if beta == 1 else beta * self) + product


@implements("aten.baddbmm.default")
def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
    return addmm(self, batch1, batch2, beta=beta, alpha=alpha)


@implements("aten.addmv.default")
def addmv(self, mat, vec, *, beta=1, alpha=1):
    return addmm(self, mat, vec, beta=beta, alpha=alpha)


@implements("aten.dot.default")
def dot(self, tensor):
    return jnp.dot(self, tensor, precision=_HIGHEST)


# ---------------------------------------------------------------------------------------------
# Normalisation. The statistics batch and layer norm return besides the output carry no gradient
# (torch's backward of these ops ignores gradients reaching them), nor do running statistics.


def _normalise(input, mean_, rstd, weight, bias, channel_shape):
    out = (input - mean_) * rstd
    if weight is not None:
        out = out * weight.reshape(channel_shape)
    if bias is not None:
        out = out + bias.reshape(channel_shape)
    return out


@implements("aten._native_batch_norm_legit_functional.default")
def batch_norm_functional(input, weight, bias, running_mean, running_var, training, momentum, eps):
    """(output, batch mean, batch rstd, new running mean, new running var), as torch's batch norm
    (the running var is updated with the unbiased batch variance). In eval mode the saved mean and
    rstd are empty, as torch's."""
    axes = (0, *range(2, input.ndim))
    shape = (1, -1) + (1,) * (input.ndim - 2)
    if training:
        mean_ = jnp.mean(input, axis=axes)
        var_ = var(input, axes, correction=0)
        n = input.size // input.shape[1]
        new_mean = None if running_mean is None else (1 - momentum) * running_mean + momentum * mean_
        new_var = None if running_var is None else (1 - momentum) * running_var + momentum * var_ * (n / (n - 1))
    else:
        mean_, var_, new_mean, new_var = running_mean, running_var, running_mean, running_var
    rstd = jax.lax.rsqrt(var_ + eps)
    out = _normalise(input, mean_.reshape(shape), rstd.reshape(shape), weight, bias, shape)
    saved = (mean_, rstd) if training else (jnp.zeros((0,), input.dtype),) * 2
    return (out, *jax.lax.stop_gradient(saved), *jax.lax.stop_gradient((new_mean, new_var)))


@implements("aten.native_batch_norm.default")
def native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    """(output, saved mean, saved rstd); the running statistics' update (in place in torch) is dropped:
    an exported graph has the functional form instead."""
    if running_mean is None and training:
        return batch_norm_no_stats(input, weight, bias, training, momentum, eps)
    return batch_norm_functional(input, weight, bias, running_mean, running_var, training, momentum, eps)[:3]


@implements("aten._native_batch_norm_legit_no_training.default")
def batch_norm_inference(input, weight, bias, running_mean, running_var, momentum, eps):
    return batch_norm_functional(input, weight, bias, running_mean, running_var, False, momentum, eps)[:3]


@implements("aten._native_batch_norm_legit.no_stats")
def batch_norm_no_stats(input, weight, bias, training, momentum, eps):
    axes = (0, *range(2, input.ndim))
    shape = (1, -1) + (1,) * (input.ndim - 2)
    mean_, var_ = jnp.mean(input, axis=axes), var(input, axes, correction=0)
    rstd = jax.lax.rsqrt(var_ + eps)
    out = _normalise(input, mean_.reshape(shape), rstd.reshape(shape), weight, bias, shape)
    return (out, *jax.lax.stop_gradient((mean_, rstd)))


@implements("aten.native_layer_norm.default")
def native_layer_norm(input, normalized_shape, weight, bias, eps):
    """(output, mean, rstd) over the last len(normalized_shape) dims."""
    axes = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    mean_ = jnp.mean(input, axis=axes, keepdims=True)
    rstd = jax.lax.rsqrt(var(input, axes, keepdim=True, correction=0) + eps)
    out = _normalise(input, mean_, rstd, weight, bias, tuple(normalized_shape))
    return (out, *jax.lax.stop_gradient((mean_, rstd)))


@implements("aten.native_group_norm.default")
def native_group_norm(input, weight, bias, N, C, HxW, group, eps):
    """(output, mean (N, group), rstd (N, group)): each group of C / group channels normalised together.
    Unlike layer and batch norm, torch differentiates the mean and rstd outputs of group norm too."""
    x = input.reshape(N, group, C // group * HxW)
    mean_ = jnp.mean(x, axis=-1, keepdims=True)
    rstd = jax.lax.rsqrt(var(x, -1, keepdim=True, correction=0) + eps)
    out = ((x - mean_) * rstd).reshape(input.shape)
    out = _normalise(out, 0, 1, weight, bias, (1, C) + (1,) * (input.ndim - 2))
    return out, mean_.reshape(N, group), rstd.reshape(N, group)


# ---------------------------------------------------------------------------------------------
# Convolution


def _spatial(values, n):
    """An int or a list of ints (one, or one per spatial dim) as a tuple of n ints."""
    values = tuple(values) if isinstance(values, list | tuple) else (values,)
    return values * n if len(values) == 1 else values


@implements("aten.convolution.default")
def convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """torch's convolution over N spatial dims (layout NC..., weights O x I/groups x ...; transposed:
    I x O/groups x ...), batched or not."""
    n = weight.ndim - 2
    stride, padding, dilation = _spatial(stride, n), _spatial(padding, n), _spatial(dilation, n)
    unbatched = input.ndim == n + 1
    x = input[None] if unbatched else input
    spatial = "DHW"[3 - n:] if n <= 3 else None
    dims = ("NC" + spatial, "OI" + spatial, "NC" + spatial)
    if transposed:
        # the gradient of a convolution: dilate the input by stride, pad by dilation * (k - 1) - padding,
        # convolve with the flipped kernel, its in and out channels swapped within each group
        output_padding = _spatial(output_padding, n)
        cin, cout_g, kernel = weight.shape[0], weight.shape[1], weight.shape[2:]
        w = weight.reshape((groups, cin // groups, cout_g) + kernel).swapaxes(1, 2)
        w = jnp.flip(w.reshape((groups * cout_g, cin // groups) + kernel), axis=tuple(range(2, 2 + n)))
        pads = [(d * (k - 1) - p, d * (k - 1) - p + op)
                for k, p, d, op in zip(kernel, padding, dilation, output_padding, strict=True)]
        out = jax.lax.conv_general_dilated(
            x, w, window_strides=(1,) * n, padding=pads, lhs_dilation=stride, rhs_dilation=dilation,
            dimension_numbers=dims, feature_group_count=groups, precision=_HIGHEST,
        )
    else:
        out = jax.lax.conv_general_dilated(
            x, weight, window_strides=stride, padding=[(p, p) for p in padding], rhs_dilation=dilation,
            dimension_numbers=dims, feature_group_count=groups, precision=_HIGHEST,
        )
    if bias is not None:
        out = out + bias.reshape((1, -1) + (1,) * n)
    return out[0] if unbatched else out


# ---------------------------------------------------------------------------------------------
# Pooling: every window gathered (an output position x its window's elements), so that max pooling
# returns torch's indices and routes the gradient to the index taken, and average pooling divides
# by torch's count, exactly.


def _pool_windows(size, kernel, stride, padding, dilation, ceil_mode):
    """(positions (out, kernel) in the unpadded input, inside (out, kernel), count_include_pad
    counts (out,)) of one spatial dim, as torch's pooling_output_shape and kernels place them."""
    span = dilation * (kernel - 1) + 1
    out = (size + 2 * padding - span + ((stride - 1) if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    starts = np.arange(out) * stride - padding
    positions = starts[:, None] + np.arange(kernel)[None, :] * dilation
    padded_count = np.minimum(starts + kernel, size + padding) - starts  # torch's count_include_pad divisor
    return positions, (positions >= 0) & (positions < size), padded_count


def _adaptive_windows(size, out):
    """torch's adaptive pooling windows along one dim: [floor(i L / out), ceil((i + 1) L / out))."""
    starts = np.arange(out) * size // out
    ends = -(-(np.arange(out) + 1) * size // out)
    positions = starts[:, None] + np.arange(int((ends - starts).max()))[None, :]
    return positions, positions < ends[:, None], ends - starts


def _gather_windows(x, windows):
    """x (..., L_1, ..., L_n) -> (patches (..., out_1, ..., out_n, K), inside (out..., K), flat index
    (out..., K) into the L_1 x ... x L_n plane), K = k_1 ... k_n, for n windows (positions, inside)."""
    n = len(windows)
    lead = x.ndim - n
    sizes = x.shape[lead:]
    patches = x
    for d, (positions, _) in enumerate(windows):
        axis = lead + 2 * d
        clipped = np.clip(positions, 0, sizes[d] - 1)
        patches = jnp.take(patches, clipped.reshape(-1), axis=axis)
        patches = patches.reshape(patches.shape[:axis] + positions.shape + patches.shape[axis + 1 :])
    order = [*range(lead), *(lead + 2 * d for d in range(n)), *(lead + 2 * d + 1 for d in range(n))]
    outs = tuple(p.shape[0] for p, _ in windows)
    patches = patches.transpose(order).reshape(x.shape[:lead] + outs + (math.prod(p.shape[1] for p, _ in windows),))
    inside = np.ones((), bool)
    flat = np.zeros((), np.int64)
    for d, (positions, valid) in enumerate(windows):
        shape = [1] * (2 * n)
        shape[d], shape[n + d] = positions.shape
        inside = inside & valid.reshape(shape)
        flat = flat * sizes[d] + np.clip(positions, 0, sizes[d] - 1).reshape(shape)
    return patches, inside.reshape(outs + (-1,)), flat.reshape(outs + (-1,))


def _max_windows(x, windows):
    """(max over each window, its flat index in the input plane); the gradient goes to that index."""
    patches, inside, flat = _gather_windows(x, windows)
    patches = jnp.where(inside, patches, _lowest(x.dtype))
    k = jnp.argmax(patches, axis=-1, keepdims=True)
    values = jnp.take_along_axis(patches, k, axis=-1)[..., 0]
    indices = jnp.take_along_axis(jnp.broadcast_to(flat, patches.shape), k, axis=-1)[..., 0]
    return values, indices


def _pool_args(n, kernel_size, stride, padding, dilation):
    kernel = _spatial(kernel_size, n)
    return kernel, _spatial(stride, n) if stride else kernel, _spatial(padding, n), _spatial(dilation, n)


def _max_pool(n):
    def max_pool_with_indices(self, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
        """(values, indices) of torch's max pooling over the last n dims; indices are flat in each input plane."""
        kernel, stride, padding, dilation = _pool_args(n, kernel_size, stride, padding, dilation)
        sizes = self.shape[self.ndim - n :]
        dims = zip(sizes, kernel, stride, padding, dilation, strict=True)
        windows = [_pool_windows(*args, ceil_mode)[:2] for args in dims]
        return _max_windows(self, windows)

    return max_pool_with_indices


for _n in (1, 2, 3):
    implements(f"aten.max_pool{_n}d_with_indices.default")(_max_pool(_n))


def _avg_pool(n):
    def avg_pool(self, kernel_size, stride=(), padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        """torch's average pooling over the last n dims: the window's sum over its count (of the
        elements inside the input, or inside the padded input with count_include_pad), or over divisor_override."""
        kernel, stride, padding, _ = _pool_args(n, kernel_size, stride, padding, 1)
        sizes = self.shape[self.ndim - n :]
        windows = [_pool_windows(*args, 1, ceil_mode) for args in zip(sizes, kernel, stride, padding, strict=True)]
        patches, inside, _ = _gather_windows(self, [w[:2] for w in windows])
        total = jnp.sum(jnp.where(inside, patches, 0), axis=-1)
        if divisor_override:
            return total / divisor_override
        if count_include_pad:
            count = functools.reduce(np.multiply.outer, [w[2] for w in windows])
        else:
            count = inside.sum(-1)
        return total / count

    return avg_pool


for _n in (1, 2, 3):
    implements(f"aten.avg_pool{_n}d.default")(_avg_pool(_n))


def _adaptive(n, kind):
    def adaptive_pool(self, output_size):
        sizes = self.shape[self.ndim - n :]
        windows = [_adaptive_windows(size, out) for size, out in zip(sizes, _spatial(output_size, n), strict=True)]
        if kind == "max":
            return _max_windows(self, [w[:2] for w in windows])
        patches, inside, _ = _gather_windows(self, [w[:2] for w in windows])
        count = functools.reduce(np.multiply.outer, [w[2] for w in windows])
        return jnp.sum(jnp.where(inside, patches, 0), axis=-1) / count

    adaptive_pool.__doc__ = f"torch's adaptive {kind} pooling over the last {n} dims."
    return adaptive_pool


implements("aten.adaptive_avg_pool1d.default")(_adaptive(1, "avg"))
implements("aten._adaptive_avg_pool2d.default")(_adaptive(2, "avg"))
implements("aten._adaptive_avg_pool3d.default")(_adaptive(3, "avg"))
implements("aten.adaptive_max_pool2d.default")(_adaptive(2, "max"))
implements("aten.adaptive_max_pool3d.default")(_adaptive(3, "max"))


# ---------------------------------------------------------------------------------------------
# Upsampling: torch's source index (and weights) of each output position, computed as its kernels do


def _upsample_sizes(x, n, output_size, scale_factors):
    """(output sizes, the scale factors to use or None per dim) of an upsample `.vec` call."""
    sizes = x.shape[x.ndim - n :]
    if output_size is not None:
        return tuple(output_size), (None,) * n
    return tuple(int(s * f) for s, f in zip(sizes, scale_factors, strict=True)), tuple(scale_factors)


def _nearest_source(size, out, scale):
    """torch's `nearest_idx`: floor(i * scale) in float32 arithmetic, scale = 1 / factor or in / out."""
    if out == size:
        return np.arange(out)
    if out == 2 * size:
        return np.arange(out) >> 1
    ratio = np.float32(1.0 / scale) if scale and scale > 0 else np.float32(size) / np.float32(out)
    return np.minimum(np.floor(np.arange(out, dtype=np.float32) * ratio).astype(np.int64), size - 1)


def _upsample_nearest(n):
    def upsample_nearest(input, output_size=None, *scales):
        """torch's nearest upsampling of the last n dims (mode="nearest")."""
        if len(scales) == 1 and (scales[0] is None or isinstance(scales[0], list | tuple)):  # the .vec overload
            output_size, scales = _upsample_sizes(input, n, output_size, scales[0])
        scales = tuple(scales) + (None,) * (n - len(scales))
        out = input
        for d, (out_size, scale) in enumerate(zip(output_size, scales, strict=True)):
            axis = input.ndim - n + d
            out = jnp.take(out, _nearest_source(input.shape[axis], out_size, scale), axis=axis)
        return out

    return upsample_nearest


for _n in (1, 2, 3):
    implements(f"aten.upsample_nearest{_n}d.vec", f"aten.upsample_nearest{_n}d.default")(_upsample_nearest(_n))


def _linear_source(size, out, align_corners, scale):
    """(index 0, index 1, weight 0, weight 1) of torch's linear interpolation along one dim
    (`compute_source_index_and_lambda`: the source index in double, floored in float32, clamped)."""
    i = np.arange(out, dtype=np.float64)
    if out == size:
        return np.arange(out), np.arange(out), np.ones(out), np.zeros(out)
    if align_corners:
        source = ((size - 1) / (out - 1) if out > 1 else 0.0) * i
    else:
        ratio = 1.0 / scale if scale and scale > 0 else size / out
        source = np.maximum(ratio * (i + 0.5) - 0.5, 0.0)
    lo = np.minimum(np.floor(source.astype(np.float32)).astype(np.int64), size - 1)
    hi = lo + (lo < size - 1)
    weight1 = np.clip(source - lo, 0.0, 1.0)
    return lo, hi, 1.0 - weight1, weight1


@implements("aten.upsample_bilinear2d.vec", "aten.upsample_bilinear2d.default")
def upsample_bilinear2d(input, output_size, align_corners, *scales):
    """torch's bilinear upsampling of the last two dims: along W, then along H, as its kernel sums."""
    if len(scales) == 1 and (scales[0] is None or isinstance(scales[0], list | tuple)):  # the .vec overload
        output_size, scales = _upsample_sizes(input, 2, output_size, scales[0])
    scales = tuple(scales) + (None,) * (2 - len(scales))
    (h0, h1, hw0, hw1), (w0, w1, ww0, ww1) = (
        _linear_source(input.shape[input.ndim - 2 + d], output_size[d], align_corners, scales[d]) for d in range(2))
    x0, x1 = jnp.take(input, h0, axis=-2), jnp.take(input, h1, axis=-2)
    t0 = ww0 * jnp.take(x0, w0, axis=-1) + ww1 * jnp.take(x0, w1, axis=-1)
    t1 = ww0 * jnp.take(x1, w0, axis=-1) + ww1 * jnp.take(x1, w1, axis=-1)
    return hw0[:, None] * t0 + hw1[:, None] * t1


# ---------------------------------------------------------------------------------------------
# Random


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


@implements("aten.randperm.default", random=True)
def randperm(n, *, generator=None, dtype=None, layout=None, device=None, pin_memory=None, key):
    return jax.random.permutation(key(), n).astype(dtype or jnp.int64)


@implements("aten.randn.default", random=True)
def randn(size, *, generator=None, dtype=None, layout=None, device=None, pin_memory=None, key):
    return jax.random.normal(key(), tuple(size), dtype or jnp.float32)
