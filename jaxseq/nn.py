"""PyTorch's non-recurrent layers in Flax NNX, with torch's parameter names, shapes and initialisation.

A layer here stores what its torch.nn counterpart stores, under the same names and in the same
layout (`Linear.weight` is (out_features, in_features), as in torch), so a converted model's
parameter paths joined by "." are the torch state_dict's keys and conversion copies without
transposing. Initialisation follows torch's distributions with JAX's random numbers.
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
