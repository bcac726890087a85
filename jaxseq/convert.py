"""Weight conversion between torchseq (PyTorch) and jaxseq, as a table of explicit rules.

Every rule names a PyTorch state_dict key, the jaxseq parameter it becomes, and
whether it is transposed. Shapes are checked for every tensor, both ways; values
are copied, never cast, so the round trip is exact. torch is never imported here:
a state_dict may hold torch tensors or NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq.model import Model, enable_dtype
from jaxseq.recurrent import GATES, RNNBase, check_options, parameter_shapes


class ConversionError(ValueError):
    """A state_dict that does not describe a jaxseq Model: names the key and the shapes."""


class Architecture(NamedTuple):
    """What a Model's state_dict describes: the layer kind, sizes, depth and directions."""

    cell: str  # "lstm", "gru" or "rnn"
    input_size: int
    hidden: int
    output_size: int
    layers: int = 1
    bidirectional: bool = False


MODES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN_TANH"}  # cell -> jaxseq.recurrent mode


def model_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """The rules: every PyTorch key of the Model's state_dict and its shape, in torch's order.

    `{cell}.{name}` is the recurrent layer's tensor `name` (see `jaxseq.recurrent.parameter_shapes`)
    and is copied as is. `linear.weight` (O, D*H) is the head's `kernel` (D*H, O), transposed;
    `linear.bias` (O,) is its `bias`.
    """
    layer = parameter_shapes(
        MODES[arch.cell], arch.input_size, arch.hidden, arch.layers, bidirectional=arch.bidirectional
    )
    features = arch.hidden * (2 if arch.bidirectional else 1)
    return {
        **{f"{arch.cell}.{name}": shape for name, shape in layer.items()},
        "linear.weight": (arch.output_size, features),
        "linear.bias": (arch.output_size,),
    }


def architecture(model: Model) -> Architecture:
    """The Architecture of a jaxseq Model."""
    layer = model.recurrent
    return Architecture(
        model.cell,
        layer.input_size,
        layer.hidden_size,
        model.linear.out_features,
        layer.num_layers,
        layer.bidirectional,
    )


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
        hidden=np.shape(state_dict[f"{cell}.weight_hh_l0"])[1],
        output_size=np.shape(state_dict["linear.bias"])[0],
        layers=layers,
        bidirectional=f"{cell}.weight_ih_l0_reverse" in state_dict,
    )
    expected = model_shapes(arch)
    described = f"the {cell} model of {layers} layer{'s' * (layers > 1)}{', bidirectional' * arch.bidirectional}"
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing:
        raise ConversionError(f"state_dict is missing key {missing[0]!r}, which {described} has")
    if extra:
        raise ConversionError(f"state_dict has unexpected key {extra[0]!r} for {described}")
    for key, shape in expected.items():
        if tuple(np.shape(state_dict[key])) != shape:
            raise ConversionError(
                f"{key}: expected shape {shape} for {described} with input {arch.input_size}, "
                f"hidden {arch.hidden}, output {arch.output_size}; got {tuple(np.shape(state_dict[key]))}"
            )
    dtypes = {_to_numpy(state_dict[k]).dtype for k in expected}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ConversionError(f"state_dict tensors must all be float32 or all float64; got {sorted(map(str, dtypes))}")
    return arch


def from_torch(obj, *, kind: str | None = None, **options):
    """A jaxseq Model with exactly the weights of a torchseq model or its state_dict.

    `obj` is a torch module (anything with `.state_dict()`, e.g. `torchseq.Model`)
    or a mapping of PyTorch keys to tensors or NumPy arrays. The dtype is kept, and the
    architecture (cell, layers, directions, sizes) is read off the keys and shapes.

    A torch.nn.LSTM, GRU or RNN module (or a subclass) becomes the `jaxseq.recurrent` layer with
    the same options and weights; so does the state_dict of one, given `kind` ("lstm", "gru" or
    "rnn") and the options it was built with (see `recurrent_from_torch`).

    >>> model = jaxseq.from_torch(torchseq.build_model(hidden=100, seed=0))
    >>> gru = jaxseq.from_torch(torch.nn.GRU(3, 8, num_layers=2, bidirectional=True))
    """
    if kind is not None or torch_recurrent_kind(obj) is not None:
        return recurrent_from_torch(obj, kind=kind, **options)
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
    model = nnx.eval_shape(
        lambda: Model(
            arch.input_size,
            arch.hidden,
            arch.output_size,
            cell=arch.cell,
            num_layers=arch.layers,
            bidirectional=arch.bidirectional,
            param_dtype=dtype,
            rngs=nnx.Rngs(0),
        )
    )
    for key in model_shapes(arch):
        module, name = key.split(".")
        if key == "linear.weight":
            model.linear.kernel = nnx.Param(jnp.asarray(arrays[key].T, dtype))
        else:
            setattr(getattr(model, module), name, nnx.Param(jnp.asarray(arrays[key], dtype)))
    return model


def to_torch_state_dict(model: Model) -> dict[str, np.ndarray]:
    """The model's weights under PyTorch's names and layouts, as NumPy arrays.

    `torchseq.Model.load_state_dict({k: torch.from_numpy(v) ...})` accepts it. For a
    `jaxseq.recurrent` layer, the keys are torch.nn.LSTM/GRU/RNN's, in their order.
    """
    if isinstance(model, RNNBase):
        return recurrent_state_dict(model)
    state_dict = {}
    for key in model_shapes(architecture(model)):
        module, name = key.split(".")
        if key == "linear.weight":
            value = np.array(model.linear.kernel[...]).T
        else:
            value = np.array(getattr(getattr(model, module), name)[...])  # a writable copy
        state_dict[key] = np.ascontiguousarray(value)
    check_state_dict(state_dict)
    return state_dict


WEIGHT_FORMATS = ("safetensors", "pt")


def read_weights_file(path) -> dict[str, np.ndarray]:
    """The state_dict in a .safetensors or .pt file (or a run directory holding one), as NumPy,
    checked by `check_state_dict`; errors name the file.

    .pt files need torch and are read with `weights_only=True` (no code is unpickled).
    """
    state_dict = _read_weights_file(path)
    try:
        check_state_dict(state_dict)
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
    return state_dict


def _read_weights_file(path) -> dict[str, np.ndarray]:
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        found = [path / n for n in ("weights.safetensors", "model.pt") if (path / n).is_file()]
        if not found:
            raise ConversionError(f"{path}: no weights.safetensors or model.pt in this directory")
        path = found[0]
    if not path.is_file():
        raise ConversionError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, TypeError) as e:
            raise ConversionError(f"{path}: not a readable safetensors file ({str(e)[:200]})") from None
    if path.suffix in (".pt", ".pth"):
        try:
            import torch
        except ImportError:
            raise ConversionError(f"{path}: reading .pt files needs PyTorch; use .safetensors") from None
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for a bad file
            raise ConversionError(f"{path}: not a readable PyTorch file ({type(e).__name__})") from None
        if not isinstance(state_dict, Mapping) or not all(hasattr(v, "detach") for v in state_dict.values()):
            raise ConversionError(f"{path}: expected a state_dict of tensors, got {type(state_dict).__name__}")
        return {k: _to_numpy(v) for k, v in state_dict.items()}
    raise ConversionError(f"{path}: unknown weights format {path.suffix!r} (expected .safetensors or .pt)")


def write_weights_file(state_dict: Mapping[str, np.ndarray], path, fmt: str) -> None:
    """Writes a NumPy state_dict as `fmt` ("safetensors", or "pt", which needs torch) to `path`."""
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path))
    elif fmt == "pt":
        import torch

        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)
    else:
        raise ValueError(f"format must be one of {', '.join(WEIGHT_FORMATS)}; got {fmt!r}")


def save_weights(model: Model, path) -> None:
    """Writes the model's weights as safetensors under PyTorch's names (readable by torch too)."""
    write_weights_file(to_torch_state_dict(model), path, "safetensors")


def check_weights_fit(state_dict: Mapping, config, *, input_size: int, output_size: int, source) -> None:
    """Raises ConversionError unless the state_dict is a model of the run's dtype, cell, layers,
    directions and sizes (`config` is a TrainConfig)."""
    arch = check_state_dict(state_dict)
    found = _to_numpy(next(iter(state_dict.values()))).dtype
    if found != np.dtype(config.dtype):
        raise ConversionError(f"{source}: weights are {found}, but --dtype is {np.dtype(config.dtype)}")
    want = Architecture(config.cell, input_size, config.hidden, output_size, config.layers, config.bidirectional)
    hints = {
        "cell": "--cell",
        "input_size": "the data's input features",
        "hidden": "--hidden",
        "output_size": "the data's target features",
        "layers": "--layers",
        "bidirectional": "--bidirectional",
    }
    for name, have, need in zip(Architecture._fields, arch, want, strict=True):
        if have != need:
            raise ConversionError(f"{source}: weights have {name} {have}, but the run needs {need} ({hints[name]})")


def load_weights(path) -> Model:
    """A Model from a .safetensors or .pt file, or a run directory holding one; dtype kept."""
    return from_torch(read_weights_file(path))


# torch.nn.LSTM, GRU and RNN. Parameter names are PyTorch's on both sides and nothing is transposed:
# the rules are `parameter_shapes(...)`, one (key, shape) per tensor, generated from the options.

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


def torch_recurrent_kind(obj) -> str | None:
    """The torch class `obj` is or derives from: "LSTM", "GRU" or "RNN"; None for anything else."""
    for cls in type(obj).__mro__:
        if cls.__name__ in KINDS and cls.__module__.startswith("torch.nn"):
            return cls.__name__
    return None


def recurrent_from_torch(obj, *, kind: str | None = None, **options) -> RNNBase:
    """The `jaxseq.recurrent` LSTM, GRU or RNN with exactly the options and weights of `obj`.

    `obj` is a torch.nn.LSTM, GRU or RNN module, whose options are read from its attributes; or a
    state_dict of one (torch tensors or NumPy arrays), with `kind` ("lstm", "gru", "rnn") and the
    options it was built with as keywords (PyTorch's defaults otherwise; input_size and
    hidden_size are read from the tensors):

    >>> layer = recurrent_from_torch(state_dict, kind="lstm", num_layers=2, bidirectional=True, proj_size=4)

    Keys and shapes must be exactly those the options give; any other key, any missing one, any
    other shape or dtype (only float32 and float64) raises ConversionError naming it.
    """
    module_kind = torch_recurrent_kind(obj)
    if module_kind is not None:
        if options:
            raise ConversionError(f"option {next(iter(options))!r}: options are read from the torch module")
        if kind is not None and kind.upper() != module_kind:
            raise ConversionError(f"kind={kind!r}, but the module is a torch.nn.{module_kind}")
        kind = module_kind
        options = {name: getattr(obj, name) for name in RECURRENT_OPTIONS if hasattr(obj, name)}
        if kind != "RNN":
            options.pop("nonlinearity", None)
        if kind != "LSTM" and options.get("proj_size") == 0:
            options.pop("proj_size")
        state_dict = obj.state_dict()
    else:
        if kind is None or kind.upper() not in KINDS:
            raise ConversionError(f"kind must be one of lstm, gru, rnn for a state_dict; got {kind!r}")
        kind = kind.upper()
        state_dict = obj
        if not isinstance(state_dict, Mapping):
            raise ConversionError(f"expected a torch.nn.{kind} or its state_dict, got {type(obj).__name__}")
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
    sizes = {
        name: opts[name]
        for name in (
            "input_size",
            "hidden_size",
            "num_layers",
            "bias",
            "batch_first",
            "dropout",
            "bidirectional",
            "proj_size",
        )
    }
    try:
        check_options(mode, **sizes)
    except ValueError as e:
        raise ConversionError(f"option {e}") from None
    shapes = parameter_shapes(
        mode, *(opts[n] for n in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size"))
    )
    check_recurrent_state_dict(state_dict, shapes, opts)

    arrays = {key: _to_numpy(state_dict[key]) for key in shapes}
    dtype = enable_dtype(arrays["weight_ih_l0"].dtype)
    layer = nnx.eval_shape(lambda: RNNBase(mode, **sizes, param_dtype=dtype, rngs=nnx.Rngs(0)))
    for key in shapes:
        setattr(layer, key, nnx.Param(jnp.asarray(arrays[key], dtype)))
    return layer


def check_recurrent_state_dict(state_dict: Mapping, shapes: dict, options: dict) -> None:
    """Checks the keys, shapes and dtypes of a torch.nn.LSTM/GRU/RNN state_dict against `shapes`."""
    described = ", ".join(f"{n}={options[n]!r}" for n in ("num_layers", "bidirectional", "bias", "proj_size"))
    missing = [key for key in shapes if key not in state_dict]
    extra = [key for key in state_dict if key not in shapes]
    if missing:
        raise ConversionError(f"state_dict is missing key {missing[0]!r}, which the options ask for ({described})")
    if extra:
        raise ConversionError(
            f"state_dict has unexpected key {extra[0]!r} for the options {described}; "
            "pass the options it was built with"
        )
    for key, shape in shapes.items():
        if tuple(np.shape(state_dict[key])) != shape:
            raise ConversionError(
                f"{key}: expected shape {shape} for input_size={options['input_size']}, "
                f"hidden_size={options['hidden_size']}, {described}; got {tuple(np.shape(state_dict[key]))}"
            )
    # str(dtype) names torch ("torch.bfloat16") and NumPy dtypes alike, without converting (NumPy has no bfloat16)
    dtypes = sorted({str(getattr(state_dict[key], "dtype", "?")).removeprefix("torch.") for key in shapes})
    if len(dtypes) != 1 or dtypes[0] not in ("float32", "float64"):
        raise ConversionError(f"dtype {', '.join(dtypes)} is not supported: tensors must all be float32 or all float64")


def recurrent_state_dict(layer: RNNBase) -> dict[str, np.ndarray]:
    """The layer's parameters under PyTorch's keys, in torch's order, as NumPy copies."""
    return {key: np.array(getattr(layer, key)[...]) for key in layer.parameter_shapes()}
