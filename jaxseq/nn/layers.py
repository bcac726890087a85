"""PyTorch's non-recurrent layers in Flax NNX, with torch's parameter names, shapes and initialisation.

A layer here stores what its torch.nn counterpart stores, under the same names and in the same
layout (`Linear.weight` is (out_features, in_features), as in torch), so a converted model's
parameter paths joined by "." are the torch state_dict's keys and conversion copies without
transposing. Initialisation follows torch's distributions with JAX's random numbers.

Layers: Linear, Embedding, LayerNorm, Conv1d, BatchNorm1d, Dropout, ReLU, LeakyReLU, GELU, Tanh,
Sigmoid, SiLU, Softmax, LogSoftmax, Identity, Flatten; containers Sequential, ModuleList,
ModuleDict. Constructors take torch's arguments (plus keyword-only `param_dtype` and `rngs`).

Modes, as torch's: every layer but Linear has a `training` flag, True after construction;
`model.train()` / `model.eval()` (on a `Module`) or `set_training(model, mode)` (on any NNX
tree) set it everywhere below. Only Dropout and BatchNorm1d behave differently in training mode.

    >>> model = Sequential(Linear(4, 8, rngs=nnx.Rngs(0)), GELU(), Dropout(0.1)).eval()
    >>> model(jnp.ones((2, 4))).shape
    (2, 8)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def torch_uniform(fan_in: int) -> nnx.Initializer:
    """PyTorch's recurrent-layer and Linear initialiser: uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)].

    For nn.Linear's weight this is `kaiming_uniform_(a=sqrt(5))`, whose bound reduces to 1/sqrt(fan_in).
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Linear(nnx.Module):
    """torch.nn.Linear: y = x W^T + b, with weight (out_features, in_features) and bias (out_features,).

    >>> head = Linear(100, 1, rngs=nnx.Rngs(0))
    >>> head(jnp.zeros((2, 21, 100))).shape
    (2, 21, 1)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, param_dtype=jnp.float32, rngs):
        self.in_features = in_features
        self.out_features = out_features
        uniform = torch_uniform(in_features)
        self.weight = nnx.Param(uniform(rngs.params(), (out_features, in_features), param_dtype))
        self.bias = nnx.Param(uniform(rngs.params(), (out_features,), param_dtype)) if bias else None

    def __call__(self, x_NxI):
        y_NxO = jnp.einsum("...i,oi->...o", x_NxI, self.weight[...])
        return y_NxO if self.bias is None else y_NxO + self.bias[...]


# ---------------------------------------------------------------------------------------------
# train / eval mode


class Buffer(nnx.Variable):
    """A torch buffer that is not a batch statistic (a registered mask, table or constant): saved in
    the state_dict, never trained. BatchNorm's running statistics are `nnx.BatchStat`s instead."""


def set_training(module: nnx.Module, mode: bool = True) -> None:
    """torch's `module.train(mode)` for a whole NNX tree: sets `training = mode` on every nested
    module that has a `training` attribute (jaxseq.nn layers, modules from `jaxseq.from_torch`),
    and flax's own flags (`deterministic = not mode`, `use_running_average = not mode`) on flax
    layers such as nnx.Dropout and nnx.BatchNorm in the same tree.

    Training mode changes what Dropout and BatchNorm1d do: Dropout draws from its `rngs`,
    BatchNorm1d normalises with the batch's statistics and updates its running ones. Under a plain
    flax parent, flax's own `parent.eval(training=False)` / `parent.train(training=True)` does the same.
    """
    module.set_attributes(training=mode, deterministic=not mode, use_running_average=not mode, raise_if_not_found=False)


class Module(nnx.Module):
    """An nnx.Module with torch's train/eval switch: a `training` flag (True after construction, as
    in torch) and `train(mode=True)` / `eval()` that set it on the whole tree (`set_training`).

    Unlike flax's `Module.train(**attributes)`, `train` takes torch's one argument and returns the
    module, so `model.eval()(x)` reads as in torch.
    """

    def train(self, mode: bool = True):
        set_training(self, mode)
        return self

    def eval(self):
        return self.train(False)


# ---------------------------------------------------------------------------------------------
# functions shared by the layers below


def embedding(ids, weight_VxD, padding_idx: int | None = None):
    """Rows `weight[ids]`. The row `padding_idx` (if any) gets no gradient, as in torch: its value is
    used as is, but autodiff sees a constant there."""
    if padding_idx is not None:
        padding_idx = padding_idx % weight_VxD.shape[0]
        weight_VxD = weight_VxD.at[padding_idx].set(jax.lax.stop_gradient(weight_VxD[padding_idx]))
    return jnp.take(weight_VxD, jnp.asarray(ids), axis=0)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """torch's layer_norm: (x - mean) / sqrt(var + eps) * weight + bias over the last
    len(normalized_shape) axes, with the biased variance (divided by the count, not count - 1)."""
    normalized_shape = tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(normalized_shape) :]) != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape {normalized_shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def conv1d(x, weight_OxIgxK, bias=None, stride: int = 1, padding=0, dilation: int = 1, groups: int = 1):
    """torch's conv1d (a cross-correlation) on (N, C_in, L) or unbatched (C_in, L) inputs.

    padding: an int (zeros on both ends), "valid" (none) or "same" (total dilation*(K-1), the
    extra one on the right, as torch; stride 1 only).
    """
    stride, dilation = _single(stride), _single(dilation)
    padding = padding if isinstance(padding, str) else _single(padding)
    x = jnp.asarray(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"conv1d: input must be (N, C, L) or (C, L); got shape {x.shape}")
    unbatched = x.ndim == 2
    x_NxCxL = x[None] if unbatched else x
    K = weight_OxIgxK.shape[-1]
    if padding == "same":
        if stride != 1:
            raise ValueError("padding='same' is not supported for strided convolutions")
        total = dilation * (K - 1)
        pads = (total // 2, total - total // 2)
    elif padding == "valid":
        pads = (0, 0)
    elif isinstance(padding, int):
        pads = (padding, padding)
    else:
        raise ValueError(f"padding must be an int, 'same' or 'valid'; got {padding!r}")
    y_NxOxL = jax.lax.conv_general_dilated(
        x_NxCxL,
        weight_OxIgxK,
        window_strides=(stride,),
        padding=(pads,),
        rhs_dilation=(dilation,),
        dimension_numbers=("NCH", "OIH", "NCH"),
        feature_group_count=groups,
    )
    if bias is not None:
        y_NxOxL = y_NxOxL + bias[:, None]
    return y_NxOxL[0] if unbatched else y_NxOxL


def dropout(key, x, p: float):
    """Inverted dropout, as torch's in training mode: zero with probability p, scale the rest by
    1/(1 - p); p = 1 gives zeros. Same distribution as torch's, not the same random numbers."""
    if p >= 1:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(key, 1 - p, jnp.shape(x))
    return jnp.where(keep, x / (1 - p), 0)


def gelu(x, approximate: str = "none"):
    """x * Phi(x), Phi the standard normal CDF (erf); approximate="tanh" is torch's tanh formula
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh'; got {approximate!r}")
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def leaky_relu(x, negative_slope: float = 0.01):
    """x where x > 0, negative_slope * x elsewhere (torch's convention at 0)."""
    return jnp.where(x > 0, x, x * negative_slope)


def softmax_dim(ndim: int, dim: int | None) -> int:
    """The axis torch's softmax uses: `dim`, or for dim=None torch's legacy rule (0 for 0-, 1- and
    3-d inputs, 1 otherwise)."""
    if dim is not None:
        return dim
    return 0 if ndim in (0, 1, 3) else 1


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    """torch.flatten: merges axes start_dim..end_dim (inclusive) into one; a 0-d input becomes 1-d."""
    x = jnp.asarray(x)
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1 :])


def _single(value) -> int:
    """torch's 1-d size argument: an int or a 1-tuple, as an int."""
    if isinstance(value, tuple | list):
        if len(value) != 1:
            raise ValueError(f"expected an int or a 1-tuple; got {value!r}")
        (value,) = value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an int; got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# layers


class Embedding(Module):
    """torch.nn.Embedding: a (num_embeddings, embedding_dim) table `weight`, drawn from N(0, 1) as
    torch does; the row `padding_idx` starts at zero and never gets a gradient.

    >>> emb = Embedding(10, 4, padding_idx=0, rngs=nnx.Rngs(0))
    >>> emb(jnp.array([[1, 0]])).shape
    (1, 2, 4)

    max_norm (renormalising rows in place during the forward) and scale_grad_by_freq are not
    supported (ValueError); sparse only changes torch's gradient storage and is accepted.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        *,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if max_norm is not None:
            raise ValueError("Embedding: max_norm is not supported (torch renormalises the table in place)")
        if scale_grad_by_freq:
            raise ValueError("Embedding: scale_grad_by_freq is not supported")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx must be within num_embeddings ({num_embeddings}); got {padding_idx}")
            padding_idx %= num_embeddings
        self.training = True
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.sparse = sparse
        weight_VxD = jax.random.normal(rngs.params(), (num_embeddings, embedding_dim), param_dtype)
        if padding_idx is not None:
            weight_VxD = weight_VxD.at[padding_idx].set(0)
        self.weight = nnx.Param(weight_VxD)

    def __call__(self, ids):
        return embedding(ids, self.weight[...], self.padding_idx)


class LayerNorm(Module):
    """torch.nn.LayerNorm over the last len(normalized_shape) axes, with torch's eps (1e-5) and the
    biased variance; `weight` (ones) and `bias` (zeros) of shape normalized_shape when
    elementwise_affine (bias=False drops the bias)."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.training = True
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        shape = self.normalized_shape
        self.weight = nnx.Param(jnp.ones(shape, param_dtype)) if elementwise_affine else None
        self.bias = nnx.Param(jnp.zeros(shape, param_dtype)) if elementwise_affine and bias else None

    def __call__(self, x):
        weight = None if self.weight is None else self.weight[...]
        bias = None if self.bias is None else self.bias[...]
        return layer_norm(x, self.normalized_shape, weight, bias, self.eps)


class Conv1d(Module):
    """torch.nn.Conv1d: weight (out_channels, in_channels // groups, kernel_size), bias
    (out_channels,), both uniform in ±1/sqrt(in_channels // groups * kernel_size) as torch's
    kaiming_uniform_(a=sqrt(5)) gives. Input (N, C_in, L) or (C_in, L); see `conv1d` for padding.

    >>> conv = Conv1d(3, 8, 5, padding="same", rngs=nnx.Rngs(0))
    >>> conv(jnp.zeros((2, 3, 20))).shape
    (2, 8, 20)

    Only torch's padding_mode "zeros"; others ("reflect", "replicate", "circular") raise ValueError.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if padding_mode != "zeros":
            raise ValueError(f"Conv1d: padding_mode {padding_mode!r} is not supported, only 'zeros'")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must divide by groups")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, 'same' or 'valid'; got {padding!r}")
            if padding == "same" and _single(stride) != 1:
                raise ValueError("padding='same' is not supported for strided convolutions")
        else:
            padding = (_single(padding),)
        self.training = True
        self.in_channels = in_channels
        self.out_channels = out_channels
        # torch's attributes: 1-tuples, padding a 1-tuple or the string
        self.kernel_size = (_single(kernel_size),)
        self.stride = (_single(stride),)
        self.padding = padding
        self.dilation = (_single(dilation),)
        self.groups = groups
        self.padding_mode = padding_mode
        fan_in = in_channels // groups * self.kernel_size[0]
        uniform = torch_uniform(fan_in)
        self.weight = nnx.Param(
            uniform(rngs.params(), (out_channels, in_channels // groups, self.kernel_size[0]), param_dtype)
        )
        self.bias = nnx.Param(uniform(rngs.params(), (out_channels,), param_dtype)) if bias else None

    def __call__(self, x):
        padding = self.padding if isinstance(self.padding, str) else self.padding[0]
        bias = None if self.bias is None else self.bias[...]
        return conv1d(x, self.weight[...], bias, self.stride[0], padding, self.dilation[0], self.groups)


class BatchNorm1d(Module):
    """torch.nn.BatchNorm1d on (N, C) or (N, C, L) inputs, statistics per channel C.

    Parameters `weight` (ones) and `bias` (zeros) when affine; buffers `running_mean` (zeros),
    `running_var` (ones) and `num_batches_tracked` (0) as nnx.BatchStat when track_running_stats.

    Evaluation mode: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
    Training mode (or without running statistics): the batch's mean and biased variance over N
    (and L) normalise x; in training mode with running statistics, num_batches_tracked += 1 and

        running_mean = (1 - m) running_mean + m mean
        running_var  = (1 - m) running_var  + m var * n / (n - 1)     (unbiased, n = N*L)

    with m = momentum, or 1 / num_batches_tracked when momentum is None (a cumulative average),
    as torch. The update mutates the BatchStats: call under nnx.jit / nnx.value_and_grad (or
    split/merge and keep the new state), as for flax's nnx.BatchNorm.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        self.training = True
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        C = num_features
        self.weight = nnx.Param(jnp.ones((C,), param_dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((C,), param_dtype)) if affine else None
        if track_running_stats:
            self.running_mean = nnx.BatchStat(jnp.zeros((C,), param_dtype))
            self.running_var = nnx.BatchStat(jnp.ones((C,), param_dtype))
            self.num_batches_tracked = nnx.BatchStat(jnp.array(0))  # int64 in torch; int32 without x64
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def __call__(self, x):
        x = jnp.asarray(x)
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d({self.num_features}): expected (N, C) or (N, C, L) input; got {x.shape}")
        axes = (0,) if x.ndim == 2 else (0, 2)
        shape = (1, -1) + (1,) * (x.ndim - 2)  # (C,) -> broadcast over N (and L)
        if self.training or self.running_mean is None:
            n = x.size // self.num_features
            if self.training and n <= 1:
                raise ValueError(f"BatchNorm1d: expected more than 1 value per channel when training; got {x.shape}")
            mean_C = jnp.mean(x, axes)
            var_C = jnp.mean(jnp.square(x - mean_C.reshape(shape)), axes)  # biased
            if self.training and self.running_mean is not None:
                self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
                m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked[...]
                batch_mean, batch_var = jax.lax.stop_gradient(mean_C), jax.lax.stop_gradient(var_C)
                self.running_mean[...] = (1 - m) * self.running_mean[...] + m * batch_mean
                self.running_var[...] = (1 - m) * self.running_var[...] + m * batch_var * (n / (n - 1))
        else:
            mean_C, var_C = self.running_mean[...], self.running_var[...]
        y = (x - mean_C.reshape(shape)) * jax.lax.rsqrt(var_C.reshape(shape) + self.eps)
        if self.weight is not None:
            y = y * self.weight[...].reshape(shape) + self.bias[...].reshape(shape)
        return y


class Dropout(Module):
    """torch.nn.Dropout: the identity in evaluation mode (exact); in training mode zeroes each
    element with probability p and scales the rest by 1/(1 - p), with JAX's random numbers (the
    same distribution as torch, not the same draws: not bit-exact).

    The key comes from `rngs` passed to the call, else from the `rngs` given at construction
    (stream "dropout", falling back to "default"), as flax's nnx.Dropout.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, rngs: nnx.Rngs | None = None):
        if isinstance(p, bool) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.training = True
        self.p = float(p)
        self.inplace = inplace
        self.rngs = rngs

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        if not self.training or self.p == 0:
            return x
        rngs = rngs if rngs is not None else self.rngs
        if rngs is None:
            raise ValueError(
                "Dropout in training mode needs rngs: Dropout(p, rngs=nnx.Rngs(dropout=seed)) or call eval()"
            )
        return dropout(rngs.dropout(), x, self.p)


class ReLU(Module):
    """torch.nn.ReLU: max(x, 0) (gradient 0 at 0, as torch)."""

    def __init__(self, inplace: bool = False):
        self.training = True
        self.inplace = inplace

    def __call__(self, x):
        return jax.nn.relu(x)


class LeakyReLU(Module):
    """torch.nn.LeakyReLU: x where x > 0, negative_slope * x elsewhere."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        self.training = True
        self.negative_slope = negative_slope
        self.inplace = inplace

    def __call__(self, x):
        return leaky_relu(x, self.negative_slope)


class GELU(Module):
    """torch.nn.GELU: approximate="none" (erf, the default) or "tanh"; see `gelu`."""

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh'; got {approximate!r}")
        self.training = True
        self.approximate = approximate

    def __call__(self, x):
        return gelu(x, self.approximate)


class Tanh(Module):
    """torch.nn.Tanh."""

    def __init__(self):
        self.training = True

    def __call__(self, x):
        return jnp.tanh(x)


class Sigmoid(Module):
    """torch.nn.Sigmoid: 1 / (1 + exp(-x))."""

    def __init__(self):
        self.training = True

    def __call__(self, x):
        return jax.nn.sigmoid(x)


class SiLU(Module):
    """torch.nn.SiLU: x * sigmoid(x)."""

    def __init__(self, inplace: bool = False):
        self.training = True
        self.inplace = inplace

    def __call__(self, x):
        return jax.nn.silu(x)


class Softmax(Module):
    """torch.nn.Softmax over `dim` (dim=None: torch's legacy choice, see `softmax_dim`)."""

    def __init__(self, dim: int | None = None):
        self.training = True
        self.dim = dim

    def __call__(self, x):
        return jax.nn.softmax(x, axis=softmax_dim(jnp.ndim(x), self.dim))


class LogSoftmax(Module):
    """torch.nn.LogSoftmax over `dim`: x - max - log(sum(exp(x - max)))."""

    def __init__(self, dim: int | None = None):
        self.training = True
        self.dim = dim

    def __call__(self, x):
        return jax.nn.log_softmax(x, axis=softmax_dim(jnp.ndim(x), self.dim))


class Identity(Module):
    """torch.nn.Identity: returns its input; takes and ignores any constructor arguments, as torch."""

    def __init__(self, *args, **kwargs):
        self.training = True

    def __call__(self, x):
        return x


class Flatten(Module):
    """torch.nn.Flatten: merges axes start_dim (default 1, keeping the batch) to end_dim."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        self.training = True
        self.start_dim = start_dim
        self.end_dim = end_dim

    def __call__(self, x):
        return flatten(x, self.start_dim, self.end_dim)


# ---------------------------------------------------------------------------------------------
# containers: children are attributes named as torch names them ("0", "1", ... or the dict's keys),
# so parameter paths joined by "." are torch's keys ("layers.0.weight").


class _Container(Module):
    """Children under their torch names, in the order `_names` keeps (NNX sorts attributes by name)."""

    def _add(self, name, module) -> None:
        name = str(name)
        if not name or "." in name or name in ("training", "_names") or hasattr(type(self), name):
            raise ValueError(f"module name {name!r} is not allowed (empty, has '.', or is reserved)")
        setattr(self, name, module)
        if name not in self._names:
            self._names = (*self._names, name)

    def __len__(self):
        return len(self._names)


class Sequential(_Container):
    """torch.nn.Sequential: calls its children in order, each on the previous one's output.

    >>> mlp = Sequential(Linear(4, 8, rngs=nnx.Rngs(0)), ReLU(), Linear(8, 1, rngs=nnx.Rngs(1)))
    >>> [".".join(map(str, path)) for path, _ in nnx.to_flat_state(nnx.state(mlp, nnx.Param))]
    ['0.bias', '0.weight', '2.bias', '2.weight']

    Also `Sequential({"name": module, ...})` (torch's OrderedDict form).
    """

    def __init__(self, *modules):
        self.training = True
        self._names = ()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, module in modules[0].items():
                self._add(name, module)
        else:
            for i, module in enumerate(modules):
                self._add(i, module)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential({n: getattr(self, n) for n in self._names[i]})
        return getattr(self, self._names[i])

    def __iter__(self):
        return (getattr(self, n) for n in self._names)

    def __call__(self, x):
        for module in self:
            x = module(x)
        return x


class ModuleList(_Container):
    """torch.nn.ModuleList: children "0", "1", ...; indexing, iteration, len and append."""

    def __init__(self, modules=()):
        self.training = True
        self._names = ()
        for module in modules:
            self.append(module)

    def append(self, module):
        self._add(len(self._names), module)
        return self

    def __getitem__(self, i: int):
        return getattr(self, self._names[i])

    def __iter__(self):
        return (getattr(self, n) for n in self._names)


class ModuleDict(_Container):
    """torch.nn.ModuleDict: children under string keys, in insertion order."""

    def __init__(self, modules: dict | None = None):
        self.training = True
        self._names = ()
        for name, module in (modules or {}).items():
            self._add(name, module)

    def __getitem__(self, name: str):
        if name not in self._names:
            raise KeyError(name)
        return getattr(self, name)

    def __setitem__(self, name: str, module) -> None:
        self._add(name, module)

    def __contains__(self, name) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(self._names)

    def keys(self):
        return self._names

    def values(self):
        return [getattr(self, n) for n in self._names]

    def items(self):
        return [(n, getattr(self, n)) for n in self._names]
