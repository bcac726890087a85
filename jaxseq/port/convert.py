"""Conversion between PyTorch state_dicts and jaxseq modules, as a table of explicit rules.

Every jaxseq layer stores its tensors under torch's names and in torch's layouts (`jaxseq.nn`,
`jaxseq.nn.recurrent`), so a rule is (torch key = the jaxseq parameter's path joined by ".", its
shape), and nothing is transposed. The rules of a Model are `model_shapes(architecture)`; those
of a torch.nn.LSTM/GRU/RNN are `jaxseq.nn.recurrent.parameter_shapes(options)`. One loop applies
them each way (`load_state_dict`, `state_dict`), checking every tensor's shape; values are
copied, never cast, so the round trip is exact. torch is never imported here: a state_dict may
hold torch tensors or NumPy arrays. Weight files are read and written in `jaxseq.weights`.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq.nn.model import Architecture
from jaxseq.errors import ConversionError
from jaxseq.nn.model import Model, enable_dtype
from jaxseq.nn.recurrent import GATES, RNNBase, check_options, parameter_shapes

__all__ = ["Architecture", "ConversionError", "from_torch", "to_torch_state_dict", "model_shapes"]

MODES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN_TANH"}  # cell -> jaxseq.nn.recurrent mode


def model_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """The rules of a Model: every PyTorch key of its state_dict and its shape, in torch's order.

    `{cell}.{name}`: the recurrent layer's tensors (`jaxseq.nn.recurrent.parameter_shapes`);
    `linear.weight` (O, D*H) and `linear.bias` (O,): the head, as nn.Linear stores them.
    """
    layer = parameter_shapes(
        MODES[arch.cell], arch.input_size, arch.hidden_size, arch.num_layers, bidirectional=arch.bidirectional
    )
    return {
        **{f"{arch.cell}.{name}": shape for name, shape in layer.items()},
        "linear.weight": (arch.output_size, arch.features),
        "linear.bias": (arch.output_size,),
    }


def load_state_dict(module: nnx.Module, arrays: Mapping[str, np.ndarray], shapes: dict, dtype) -> None:
    """Sets each parameter `key` of `shapes` (a rule table) in `module` to `arrays[key]`, as `dtype`."""
    for key, shape in shapes.items():
        *path, name = key.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        assert arrays[key].shape == shape, f"{key}: {arrays[key].shape} != {shape} (checked before)"
        setattr(owner, name, nnx.Param(jnp.asarray(arrays[key], dtype)))


def state_dict(module: nnx.Module, shapes: dict) -> dict[str, np.ndarray]:
    """The parameters named by `shapes` (a rule table) as NumPy copies, in the table's order."""
    out = {}
    for key, shape in shapes.items():
        value = module
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = np.array(value[...])  # a writable copy
        if out[key].shape != shape:
            raise ValueError(f"{key}: the module holds shape {out[key].shape}, the rules say {shape}")
    return out


def _to_numpy(value) -> np.ndarray:
    """A NumPy copy: JAX on CPU may alias NumPy memory, which torch would then update in place."""
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.array(value, copy=True)


def check_state_dict(state_dict: Mapping) -> Architecture:
    """Reads the architecture off the keys and shapes, then checks every key and shape against
    `model_shapes` of it; returns it. Raises ConversionError naming the first key that is wrong."""
    cells = [cell for cell in MODES if f"{cell}.weight_ih_l0" in state_dict]
    if len(cells) > 1:
        raise ConversionError(f"state_dict holds more than one recurrent layer ({', '.join(cells)}); a model has one")
    if not cells:
        found = ", ".join(list(state_dict)[:4]) or "none"
        raise ConversionError(
            "state_dict is missing key 'lstm.weight_ih_l0' (or 'gru.'/'rnn.'): not a jaxseq/torchseq model "
            f"(keys: {found})"
        )
    cell = cells[0]
    for key, ndim in ((f"{cell}.weight_ih_l0", 2), (f"{cell}.weight_hh_l0", 2), ("linear.bias", 1)):
        if key not in state_dict:
            raise ConversionError(f"state_dict is missing key {key!r}")
        if np.ndim(state_dict[key]) != ndim:
            raise ConversionError(f"{key}: expected a {ndim}-d tensor, got shape {tuple(np.shape(state_dict[key]))}")
    layers = 1
    while f"{cell}.weight_ih_l{layers}" in state_dict:
        layers += 1
    arch = Architecture(
        cell,
        input_size=np.shape(state_dict[f"{cell}.weight_ih_l0"])[1],
        hidden_size=np.shape(state_dict[f"{cell}.weight_hh_l0"])[1],
        output_size=np.shape(state_dict["linear.bias"])[0],
        num_layers=layers,
        bidirectional=f"{cell}.weight_ih_l0_reverse" in state_dict,
    )
    described = f"the {cell} model of {layers} layer{'s' * (layers > 1)}{', bidirectional' * arch.bidirectional}"
    _check_keys(state_dict, model_shapes(arch), described)
    sizes = f"input {arch.input_size}, hidden {arch.hidden_size}, output {arch.output_size}"
    _check_shapes_and_dtype(state_dict, model_shapes(arch), f"{described} with {sizes}")
    return arch


def _check_keys(state_dict: Mapping, shapes: dict, described: str, hint: str = "") -> None:
    missing = [k for k in shapes if k not in state_dict]
    extra = [k for k in state_dict if k not in shapes]
    if missing:
        raise ConversionError(f"state_dict is missing key {missing[0]!r}, which {described} has")
    if extra:
        raise ConversionError(f"state_dict has unexpected key {extra[0]!r} for {described}{hint}")


def _check_shapes_and_dtype(state_dict: Mapping, shapes: dict, described: str) -> None:
    for key, shape in shapes.items():
        if tuple(np.shape(state_dict[key])) != shape:
            raise ConversionError(
                f"{key}: expected shape {shape} for {described}; got {tuple(np.shape(state_dict[key]))}"
            )
    # str(dtype) names torch ("torch.bfloat16") and NumPy dtypes alike, without converting (NumPy has no bfloat16)
    dtypes = sorted({str(getattr(state_dict[key], "dtype", "?")).removeprefix("torch.") for key in shapes})
    if len(dtypes) != 1 or dtypes[0] not in ("float32", "float64"):
        raise ConversionError(f"dtype {', '.join(dtypes)} is not supported: tensors must all be float32 or all float64")


def from_torch(obj, *args, kind: str | None = None, **options):
    """The jaxseq module with exactly the weights of a torch module or a state_dict.

    - a torchseq Model, or its state_dict (torch tensors or NumPy): a `jaxseq.Model`, its
      architecture (cell, layers, directions, sizes) read off the keys and shapes;
    - a torch.nn.LSTM, GRU or RNN module (or a subclass): the `jaxseq.LSTM`/`GRU`/`RNN` with the
      same options; so does the state_dict of one, given `kind` ("lstm", "gru" or "rnn") and the
      options it was built with (see `recurrent_from_torch`).
    - any other torch.nn.Module (your own model), with example arguments of its forward
      (`from_torch(model, x, lengths=lengths)`): the whole model, captured with torch.export, in
      Flax NNX, its parameters and buffers under their PyTorch names (`jaxseq.port.module`).
    The dtype is kept (float32 or float64).

    >>> model = jaxseq.from_torch(torchseq.build_model(hidden=100, seed=0))
    >>> gru = jaxseq.from_torch(torch.nn.GRU(3, 8, num_layers=2, bidirectional=True))
    >>> mine = jaxseq.from_torch(MyModel(), x)  # exported on x: any core-ATen forward
    """
    if (kind is not None or torch_recurrent_kind(obj) is not None) and not args:
        return recurrent_from_torch(obj, kind=kind, **options)
    if _is_torch_module(obj) and type(obj).__module__ != "torchseq.model":
        if not args and not options:
            raise ConversionError(
                f"{type(obj).__name__}: pass example arguments of its forward, as you call it: "
                "jaxseq.from_torch(model, x) (torch.export captures forward on them)"
            )
        from jaxseq.port import module

        return module.from_torch(obj, *args, **options)
    if options:
        raise ConversionError(f"option {next(iter(options))!r} is for LSTM, GRU and RNN state_dicts: pass kind= too")
    if isinstance(obj, Mapping) and "weight_ih_l0" in obj:
        raise ConversionError(
            "a torch.nn.LSTM, GRU or RNN state_dict needs kind= ('lstm', 'gru', 'rnn') and its options"
        )
    state_dict = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(state_dict, Mapping):
        raise ConversionError(f"expected a torch module or a state_dict mapping, got {type(obj).__name__}")
    arch = check_state_dict(state_dict)
    arrays = {key: _to_numpy(value) for key, value in state_dict.items()}
    dtype = enable_dtype(arrays[f"{arch.cell}.weight_ih_l0"].dtype)
    model = nnx.eval_shape(lambda: arch.build(dtype=dtype))
    load_state_dict(model, arrays, model_shapes(arch), dtype)
    return model


def to_torch_state_dict(model) -> dict[str, np.ndarray]:
    """The module's weights under PyTorch's names and layouts, as NumPy arrays, in torch's order.

    For a `jaxseq.Model`, `torchseq.Model.load_state_dict({k: torch.from_numpy(v) ...})` accepts
    it; for a `jaxseq.LSTM`/`GRU`/`RNN`, torch.nn.LSTM/GRU/RNN's does; for a converted model of
    your own (`jaxseq.port.module`), your module's does (`strict=True`; buffers and tied weights included).
    """
    if isinstance(model, RNNBase):
        return state_dict(model, model.parameter_shapes())
    if isinstance(model, Model):
        return state_dict(model, model_shapes(model.architecture))
    from jaxseq.port import module

    if isinstance(model, module.ExportedModule):
        return module.to_torch_state_dict(model)
    if not isinstance(model, nnx.Module):
        raise ConversionError(f"expected a jaxseq or Flax NNX module; got {type(model).__name__}")
    # a hand-written port: every array variable under the path of its attributes, as torch's keys
    return {
        ".".join(map(str, path)): np.array(v[...])
        for path, v in nnx.iter_graph(model)
        if isinstance(v, nnx.Variable) and not isinstance(v, nnx.RngState) and hasattr(v[...], "shape")
    }


# torch.nn.LSTM, GRU and RNN: the rules are `parameter_shapes(...)`, generated from the options.

KINDS = ("LSTM", "GRU", "RNN")
RECURRENT_OPTIONS = {  # PyTorch's defaults
    "input_size": None,  # read from weight_ih_l0 when not given
    "hidden_size": None,  # read from weight_ih_l0 when not given
    "num_layers": 1,
    "bias": True,
    "batch_first": False,
    "dropout": 0.0,
    "bidirectional": False,
    "proj_size": 0,  # LSTM only
    "nonlinearity": "tanh",  # RNN only
}


def _is_torch_module(obj) -> bool:
    """Whether `obj` is a torch.nn.Module, without importing torch."""
    return any(c.__name__ == "Module" and c.__module__ == "torch.nn.modules.module" for c in type(obj).__mro__)


def torch_recurrent_kind(obj) -> str | None:
    """The torch class `obj` is or derives from: "LSTM", "GRU" or "RNN"; None for anything else."""
    for cls in type(obj).__mro__:
        if cls.__name__ in KINDS and cls.__module__.startswith("torch.nn"):
            return cls.__name__
    return None


def recurrent_from_torch(obj, *, kind: str | None = None, **options) -> RNNBase:
    """The `jaxseq.nn.recurrent` LSTM, GRU or RNN with exactly the options and weights of `obj`.

    `obj` is a torch.nn.LSTM, GRU or RNN module, whose options are read from its attributes; or a
    state_dict of one (torch tensors or NumPy arrays), with `kind` ("lstm", "gru", "rnn") and the
    options it was built with as keywords (PyTorch's defaults otherwise; input_size and
    hidden_size are read from the tensors):

    >>> layer = recurrent_from_torch(state_dict, kind="lstm", num_layers=2, bidirectional=True, proj_size=4)

    Keys and shapes must be exactly those the options give; any other key, any missing one, any
    other shape or dtype (only float32 and float64) raises ConversionError naming it.
    """
    kind, options, state_dict = _recurrent_source(obj, kind, options)
    mode, opts = _recurrent_options(kind, options, state_dict)
    sizes = {name: opts[name] for name in SIZES}
    shapes = parameter_shapes(
        mode, *(opts[n] for n in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size"))
    )
    described = ", ".join(f"{n}={opts[n]!r}" for n in ("num_layers", "bidirectional", "bias", "proj_size"))
    _check_keys(state_dict, shapes, f"the options ({described})", "; pass the options it was built with")
    sizes_text = f"input_size={opts['input_size']}, hidden_size={opts['hidden_size']}, {described}"
    _check_shapes_and_dtype(state_dict, shapes, sizes_text)

    arrays = {key: _to_numpy(state_dict[key]) for key in shapes}
    dtype = enable_dtype(arrays["weight_ih_l0"].dtype)
    layer = nnx.eval_shape(lambda: _named_layer(mode, sizes, dtype))
    load_state_dict(layer, arrays, shapes, dtype)
    return layer


def _named_layer(mode: str, sizes: dict, dtype) -> RNNBase:
    """The jaxseq.LSTM / GRU / RNN of `mode` (torch's class, so isinstance checks read as in torch)."""
    from jaxseq.nn.recurrent import GRU, LSTM, RNN

    common = dict(param_dtype=dtype, rngs=nnx.Rngs(0))
    if mode == "LSTM":
        return LSTM(**sizes, **common)
    sizes = {k: v for k, v in sizes.items() if k != "proj_size"}
    if mode == "GRU":
        return GRU(**sizes, **common)
    return RNN(**sizes, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **common)


# RNNBase's constructor arguments, in its order
SIZES = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size")


def _recurrent_source(obj, kind, options):
    """(KIND, options, state_dict) of a torch recurrent module (options read off it) or of a state_dict."""
    module_kind = torch_recurrent_kind(obj)
    if module_kind is None:
        if kind is None or kind.upper() not in KINDS:
            raise ConversionError(f"kind must be one of lstm, gru, rnn for a state_dict; got {kind!r}")
        if not isinstance(obj, Mapping):
            raise ConversionError(f"expected a torch.nn.{kind.upper()} or its state_dict, got {type(obj).__name__}")
        return kind.upper(), options, obj
    if options:
        raise ConversionError(f"option {next(iter(options))!r}: options are read from the torch module")
    if kind is not None and kind.upper() != module_kind:
        raise ConversionError(f"kind={kind!r}, but the module is a torch.nn.{module_kind}")
    options = {name: getattr(obj, name) for name in RECURRENT_OPTIONS if hasattr(obj, name)}
    if module_kind != "RNN":
        options.pop("nonlinearity", None)
    if module_kind != "LSTM" and options.get("proj_size") == 0:
        options.pop("proj_size")
    return module_kind, options, obj.state_dict()


def _recurrent_options(kind: str, options: dict, state_dict: Mapping) -> tuple[str, dict]:
    """(mode, every option) for `kind` given `options`, checked; sizes not given are read off the tensors."""
    unknown = [name for name in options if name not in RECURRENT_OPTIONS]
    if unknown:
        raise ConversionError(f"unknown option {unknown[0]!r} (options: {', '.join(RECURRENT_OPTIONS)})")
    if kind != "LSTM" and options.get("proj_size"):
        raise ConversionError(f"option 'proj_size' is only supported by LSTM, not {kind}")
    if kind != "RNN" and "nonlinearity" in options:
        raise ConversionError(f"option 'nonlinearity' is only for RNN, not {kind}")
    opts = {**RECURRENT_OPTIONS, **options}
    if opts["nonlinearity"] not in ("tanh", "relu"):
        raise ConversionError(f"option 'nonlinearity' must be 'tanh' or 'relu'; got {opts['nonlinearity']!r}")
    mode = "RNN_" + opts["nonlinearity"].upper() if kind == "RNN" else kind
    parametrized = [key for key in state_dict if key.startswith("parametrizations.")]
    if parametrized:
        raise ConversionError(
            f"key {parametrized[0]!r}: parametrized weights (e.g. weight_norm) are not supported; "
            "remove the parametrization first (torch.nn.utils.parametrize.remove_parametrizations)"
        )
    if "weight_ih_l0" not in state_dict or np.ndim(state_dict["weight_ih_l0"]) != 2:
        raise ConversionError("state_dict has no 2-d 'weight_ih_l0': not a torch.nn.LSTM, GRU or RNN state_dict")
    rows, columns = np.shape(state_dict["weight_ih_l0"])
    if opts["input_size"] is None:
        opts["input_size"] = columns
    if opts["hidden_size"] is None:
        opts["hidden_size"] = rows // GATES[mode]
    try:
        check_options(mode, **{name: opts[name] for name in SIZES})
    except ValueError as e:
        raise ConversionError(f"option {e}") from None
    return mode, opts
