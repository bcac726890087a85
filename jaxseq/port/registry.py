"""The op table: every operator of an exported graph that jaxseq can run, as one small jax.numpy
function registered under the names of the operators it implements.

    @implements("aten.add.Tensor", "aten.add.Scalar")
    def add(self, other, *, alpha=1):
        return self + alpha * other

Names are the ones an exported graph's node targets print as: an ATen overload
(`str(torch.ops.aten.add.Tensor)` is "aten.add.Tensor"), a jaxseq op kept whole during export
("jaxseq.packed_rnn.default", see `jaxseq.port.export.OPAQUE`), or a Python function on sizes
("operator.mul", "math.ceil"). So the table is plain strings and torch is not imported here.

An op function is called with the node's arguments as ATen's schema names them: tensors as JAX
arrays, sizes as Python ints, `dtype=` as a NumPy dtype (None where the graph leaves it to torch's
default: the interpreter casts each result to the dtype torch's own trace recorded for it, so an op
need not reproduce torch's type promotion), `device`, `layout`, `pin_memory` and `memory_format`
as None. An op registered with `random=True` also gets `key=`, a function returning a fresh JAX
PRNG key, to call only when it draws (dropout in training mode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Op(NamedTuple):
    """A table entry: the jax.numpy function, the operator names it implements, whether it draws
    random numbers (then it is also passed `key=`)."""

    fn: Callable
    names: tuple[str, ...]
    random: bool = False


OPS: dict[str, Op] = {}


def implements(*names: str, random: bool = False):
    """Registers the decorated function as the jax.numpy version of the operators `names`."""

    def register(fn):
        op = Op(fn, names, random)
        for name in names:
            assert name not in OPS, f"{name} is registered twice ({OPS.get(name)} and {fn.__name__})"
            OPS[name] = op
        return fn

    return register
