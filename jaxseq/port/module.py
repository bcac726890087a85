"""A converted torch module: its tensors as NNX variables under their torch paths, its forward as
exported Programs, one per mode and family of input shapes.

    >>> converted = from_torch(torch_model, x)          # exported on x, in torch_model's mode
    >>> out = converted(x)                               # the Program, run with jax.numpy
    >>> torch_model.load_state_dict(to_torch_state_dict(converted))  # and back, bit-exact

A call whose arguments the exported program cannot take (another rank, a specialised size that
differs, e.g. the sequence length of a recurrent layer) exports the torch module again for them,
as jax.jit retraces, and keeps that program too; so does a call in the other mode
(`converted.train()` / `.eval()`). That needs torch, and the torch module, which the converted
module keeps a reference to. Everything else runs without torch.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq.errors import ConversionError
from jaxseq.nn.layers import Buffer, Module
from jaxseq.port import program as programs

RESERVED = frozenset({"training", "torch_class", "port", "rngs", "torch_keys", "torch_aliases"})


class Frozen(nnx.Variable):
    """A parameter torch does not train (`requires_grad=False`): held apart from nnx.Param, so
    optimizers leave it as it is, and compared like a buffer."""


class Exports:
    """The programs of one converted module, and the torch module to export again for new shapes.
    Shared by every copy of the converted module (nnx.split / merge keep this object), so a
    program exported inside one jit trace serves the next."""

    def __init__(self, torch_module, first: programs.Program):
        self.torch_module = torch_module
        self.programs = [first]

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def find(self, leaves, tree, training: bool) -> programs.Program:
        for program in self.programs:
            if program.training == training and program.in_tree == tree and program.accepts(leaves):
                return program
        return self._export(leaves, tree, training)

    def _export(self, leaves, tree, training: bool) -> programs.Program:
        import jax

        from jaxseq.errors import torch_required
        from jaxseq.port.export import example_value, export_program

        torch_required("exporting the torch module again for new input shapes")
        examples = [example_value(np.shape(x), str(np.result_type(x))) if hasattr(x, "shape") else x for x in leaves]
        args, kwargs = jax.tree.unflatten(tree, examples)
        module = self.torch_module
        was = module.training
        module.train(training)
        try:
            program = export_program(module, args, kwargs)
        finally:
            module.train(was)
        self.programs.append(program)
        return program


class ExportedModule(Module):
    """A torch module converted by `jaxseq.from_torch(module, *example_args)`; call it as the torch
    module is called (NumPy or JAX arrays), under jax.jit and jax.grad too."""

    def __init__(self, torch_class: str, exports: Exports, keys: tuple, aliases: tuple, rngs: nnx.Rngs | None):
        self.training = exports.programs[0].training
        self.torch_class = torch_class
        self.port = exports
        self.torch_keys = keys  # ((state_dict key, torch dtype name), ...) in torch's order
        self.torch_aliases = aliases  # ((state_dict key, the key of the tensor it shares), ...): tied weights
        if rngs is not None:
            self.rngs = rngs

    def __call__(self, *args, **kwargs):
        leaves, tree = programs.flatten_call(args, kwargs)
        program = self.port.find(leaves, tree, bool(self.training))
        state = {key: variable_at(self, key)[...] for _, key in program.state}
        rngs = getattr(self, "rngs", None)
        key_fn = None if rngs is None else rngs.dropout
        out, mutated = programs.run(program, state, args, kwargs, key_fn)
        for key, value in mutated.items():
            variable_at(self, key)[...] = value
        return out


def variable_at(root, key: str):
    """The variable at a torch state_dict key: attributes by name, list items by index."""
    obj = root
    for part in key.split("."):
        obj = obj[int(part)] if part.isdigit() and not hasattr(obj, part) else getattr(obj, part)
    return obj


def from_torch(module, *args, rngs: nnx.Rngs | None = None, **kwargs) -> ExportedModule:
    """The NNX module that runs `module`'s forward, exported on (args, kwargs), with jax.numpy.

    Args:
      module: a torch.nn.Module, float32 or float64, in the mode to convert (train or eval).
      args, kwargs: example arguments of forward (torch tensors or NumPy arrays), as a call passes them.
      rngs: random numbers for dropout in training mode; nnx.Rngs(0) when the module has dropout.
    Returns:
      An ExportedModule holding every parameter (nnx.Param; `requires_grad=False` ones as Frozen)
      and buffer (jaxseq.nn.Buffer) at its torch path, in torch's dtype; tied tensors are one variable.
    Raises:
      ConversionError: naming what torch.export cannot capture (and the rewrite), or listing every
      op outside the table with its line.
    """
    import torch

    from jaxseq.nn.model import enable_dtype
    from jaxseq.port.export import export_program

    name = type(module).__name__
    named = dict(module.named_parameters(remove_duplicate=False))
    state_dict = module.state_dict(keep_vars=True)
    floats = {str(t.dtype).removeprefix("torch.") for t in state_dict.values() if t.is_floating_point()}
    if floats - {"float32", "float64"}:
        raise ConversionError(
            f"{name}: dtype {', '.join(sorted(floats - {'float32', 'float64'}))} is not supported; "
            "convert the module to float32 or float64 first (module.float() / module.double())"
        )
    if "float64" in floats or torch.get_default_dtype() == torch.float64:
        enable_dtype(jnp.float64)
    args = tuple(_as_torch(a) for a in args)
    kwargs = {k: _as_torch(v) for k, v in kwargs.items()}
    program = export_program(module, args, kwargs)

    keys, aliases, seen = [], [], {}
    root_variables = {}
    for key, tensor in state_dict.items():
        keys.append((key, str(tensor.dtype).removeprefix("torch.")))
        if id(tensor) in seen:
            aliases.append((key, seen[id(tensor)]))
            continue
        seen[id(tensor)] = key
        value = jnp.asarray(tensor.detach().cpu().numpy().copy())
        if key in named:
            root_variables[key] = nnx.Param(value) if tensor.requires_grad else Frozen(value)
        else:
            root_variables[key] = Buffer(value)
    uses_dropout = any(
        isinstance(m, torch.nn.modules.dropout._DropoutNd)
        or (isinstance(getattr(m, "dropout", None), int | float) and m.dropout > 0)
        for m in module.modules()
    )
    if rngs is None and uses_dropout:
        rngs = nnx.Rngs(0)
    root = ExportedModule(
        f"{type(module).__module__}.{type(module).__qualname__}", Exports(module, program), tuple(keys),
        tuple(aliases), rngs,
    )
    for key, variable in root_variables.items():
        _place(root, key, variable)
    for key, target in aliases:
        _place(root, key, variable_at(root, target))
    return root


def _place(root, key: str, variable) -> None:
    """Sets `variable` at the dotted path `key`, making plain containers on the way."""
    *path, last = key.split(".")
    owner = root
    for part in path:
        if not hasattr(owner, part):
            setattr(owner, part, Module())
        owner = getattr(owner, part)
    if owner is root and last in RESERVED:
        raise ConversionError(f"state_dict key {key!r} collides with an attribute of the converted module")
    setattr(owner, last, variable)


def to_torch_state_dict(module: ExportedModule) -> dict[str, np.ndarray]:
    """The converted module's tensors as torch's state_dict (NumPy arrays, torch's keys and order)."""
    return {key: np.array(variable_at(module, key)[...]).astype(dtype) for key, dtype in module.torch_keys}


def _as_torch(value):
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, tuple | list):
        return type(value)(_as_torch(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_torch(v) for k, v in value.items()}
    if hasattr(value, "__jax_array__") or type(value).__module__.startswith("jax"):
        return torch.from_numpy(np.array(value))
    return value
