"""Reading and setting parts of a transformation's state: each param group's chain, every piece in
it, the base learning rate, and the torch names of the parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxseq.errors import OptionError
from jaxseq.optim.rates import is_rate_state

FROZEN = "frozen"  # the partition label of parameters in no param group: torch leaves them as they are
# The fields through which a piece's state holds other pieces' states: optax's partition, masked and
# inject_hyperparams, and Rprop's and ASGD's rate.
INNER = ("inner_state", "inner_states", "hyperparams_states", "rate")


def _groups_state(opt_state):
    """{label: the group's chain state} of a `transformation`'s state ("group0" alone if unpartitioned)."""
    state = opt_state[-1]
    if isinstance(state, optax.PartitionState):
        return {label: s.inner_state for label, s in state.inner_states.items() if label != FROZEN}
    return {"group0": state}


def _with_groups_state(opt_state, groups: dict):
    state = opt_state[-1]
    if isinstance(state, optax.PartitionState):
        inner = {
            label: s._replace(inner_state=groups[label]) if label in groups else s
            for label, s in state.inner_states.items()
        }
        state = optax.PartitionState(inner)
    else:
        state = groups["group0"]
    return (*opt_state[:-1], state)


def _map_pieces(node, fn):
    """`node` (a group's chain state) with fn applied to every piece's state, inner ones included."""
    node = fn(node)
    if type(node) is tuple:
        return tuple(_map_pieces(s, fn) for s in node)
    if isinstance(node, dict):
        return {k: _map_pieces(s, fn) for k, s in node.items()}
    if hasattr(node, "_fields"):
        return node._replace(**{f: _map_pieces(getattr(node, f), fn) for f in INNER if f in node._fields})
    return node


def _pieces(node) -> list:
    found = []
    _map_pieces(node, lambda s: found.append(s) or s)
    return found


def rate_state(node):
    """The rate's state (step count, base rate) in a group's chain state."""
    return next(s for s in _pieces(node) if is_rate_state(s))


def with_learning_rate(opt_state, lr):
    """`opt_state` (of a transformation built here) with its base learning rate set to `lr`: one
    value for every param group, or a sequence with one per group.

    The rate lives in the state, so one compiled program serves every rate, and `jaxseq sweep` can
    vmap over it.
    """
    groups = _groups_state(opt_state)
    rates = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(groups)
    if len(rates) != len(groups):
        raise OptionError(f"{len(rates)} learning rates for {len(groups)} param groups")

    def set_rate(rate):
        def fn(s):
            if is_rate_state(s):
                return s._replace(base_lr=jnp.asarray(rate, s.base_lr.dtype))
            return s

        return fn

    labels = sorted(groups, key=lambda label: int(label[len("group") :]))
    new = {label: _map_pieces(groups[label], set_rate(rate)) for label, rate in zip(labels, rates, strict=True)}
    return _with_groups_state(opt_state, new)


def param_names(tree) -> list[str]:
    """The torch name of each leaf of a parameter pytree, in leaf order: its key path joined by "."
    (a dict's keys, attributes, sequence indices), without nnx.Variable's trailing `value`.

    >>> param_names({"lstm": {"weight_ih_l0": 0.0, "bias_ih_l0": 0.0}})
    ['lstm.bias_ih_l0', 'lstm.weight_ih_l0']
    """
    return [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _tree_by_name(tree) -> dict:
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _path_name(path) -> str:
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    return ".".join(_key_name(k) for k in path)


def _key_name(key) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    return str(getattr(key, "key", key))
