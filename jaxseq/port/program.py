"""An exported forward as plain data, and the interpreter that runs it with jax.numpy.

`jaxseq.port.export` turns torch.export's graph into a `Program` (no torch object is left in it),
and `run` executes it node by node, as torch.fx.Interpreter runs a graph with torch: each node's
target is looked up in the op table (`jaxseq.port.registry`), called with the values of earlier
nodes, and its result cast to the dtype torch's trace recorded for that node. A program is a pure
function of (the module's tensors by state_dict key, the call's arguments), so it runs under
jax.jit and jax.grad.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxseq.port.table import table


class Ref(NamedTuple):
    """An argument that is an earlier node's value."""

    name: str


class DType(NamedTuple):
    """A torch dtype in an argument (`dtype=torch.float64`), by its NumPy name."""

    name: str


class Const(NamedTuple):
    """A tensor the graph holds by value (made in forward, or a plain tensor attribute)."""

    dtype: str
    shape: tuple
    values: tuple

    def array(self):
        return jnp.asarray(np.array(self.values, self.dtype).reshape(self.shape))


class Node(NamedTuple):
    """One call: `target` names an op of the table; `dtypes` is the recorded dtype of the result
    (a NumPy name, a tuple of them for a tuple result, None for a size or a non-tensor); `where`
    is the line of the user's forward it came from."""

    name: str
    target: str
    args: tuple
    kwargs: tuple  # ((name, value), ...)
    dtypes: object
    where: str


class Program(NamedTuple):
    """A forward in one mode for one family of input shapes.

    state: (placeholder, state_dict key) for every parameter and buffer the graph reads;
    constants: (placeholder, Const); inputs: one entry per leaf of the call's (args, kwargs) in
    order: its placeholder, or None for a leaf export baked into the graph (a Python number);
    in_tree: the structure of (args, kwargs); shapes: per input leaf, its dims (an int, or a
    symbol's name where the dim is dynamic), None for a non-tensor leaf; nodes: the calls, in
    order; output: the forward's result with Refs in place of tensors; mutations: (Ref, key) for
    each buffer the forward updates (BatchNorm's running statistics in training mode);
    training: the mode it was exported in.
    """

    state: tuple
    constants: tuple
    inputs: tuple
    in_tree: object
    shapes: tuple
    nodes: tuple
    output: object
    mutations: tuple
    training: bool

    def accepts(self, leaves) -> bool:
        """Whether a call with these (args, kwargs) leaves fits the shapes this program was exported for."""
        symbols: dict[str, int] = {}
        for leaf, dims in zip(leaves, self.shapes, strict=True):
            if dims is None:
                continue
            shape = np.shape(leaf)
            if len(shape) != len(dims):
                return False
            for size, dim in zip(shape, dims, strict=True):
                if isinstance(dim, str):
                    if symbols.setdefault(dim, size) != size or size < 2:
                        return False
                elif size != dim:
                    return False
        return True


def flatten_call(args, kwargs):
    """(leaves, structure) of a call's arguments; None counts as a leaf, as in torch's pytrees."""
    return jax.tree.flatten((tuple(args), dict(kwargs)), is_leaf=lambda x: x is None)


def run(program: Program, state: dict, args, kwargs, key_fn=None):
    """Runs `program` on `state` ({state_dict key: array}) and the call's arguments.

    Returns (output, {buffer key: new value}). Each op that may draw random numbers gets `key=`,
    a function it calls for a fresh PRNG key when it does draw (`key_fn`; one that raises if None).
    """
    ops = table()
    leaves, _ = flatten_call(args, kwargs)
    env: dict[str, object] = {name: state[key] for name, key in program.state}
    env.update((name, const.array()) for name, const in program.constants)
    for name, leaf in zip(program.inputs, leaves, strict=True):
        if name is not None:
            env[name] = as_jax(leaf)

    def load(arg):
        if isinstance(arg, Ref):
            return env[arg.name]
        if isinstance(arg, DType):
            return np.dtype(arg.name)
        if type(arg) in (tuple, list):
            return type(arg)(load(a) for a in arg)
        if type(arg) is dict:
            return {k: load(v) for k, v in arg.items()}
        return arg

    for node in program.nodes:
        op = ops[node.target]
        kwargs_ = {k: load(v) for k, v in node.kwargs}
        if op.random:
            kwargs_["key"] = key_fn or _no_key(node)
        try:
            value = op.fn(*load(node.args), **kwargs_)
        except Exception as e:
            e.add_note(f"jaxseq.port: in graph node {node.name!r} ({node.target}; {node.where})")
            raise
        env[node.name] = cast(value, node.dtypes)
    return load(program.output), {key: env[ref.name] for ref, key in program.mutations}


def _no_key(node):
    def fail():
        raise RuntimeError(f"{node.target} ({node.where}) draws random numbers, and the module has no nnx.Rngs")

    return fail


def cast(value, dtypes):
    """`value` with each array in the dtype torch recorded for it (as JAX holds it: int64 is int32
    unless x64 is on); sizes and other values as they are."""
    if dtypes is None:
        return value
    if isinstance(dtypes, tuple):
        if isinstance(value, tuple | list):
            return type(value)(cast(v, d) for v, d in zip(value, dtypes, strict=False))
        return value
    want = jax.dtypes.canonicalize_dtype(np.dtype(dtypes))
    if isinstance(value, jax.Array | np.ndarray | np.generic):
        return value if value.dtype == want else jnp.asarray(value).astype(want)
    if isinstance(value, bool | int | float):
        return jnp.asarray(value, want)
    return value


def as_jax(value):
    """NumPy arrays (and torch tensors, for convenience) as JAX arrays; anything else as it is."""
    if isinstance(value, np.ndarray):
        return jnp.asarray(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return jnp.asarray(value.detach().cpu().numpy())
    return value
