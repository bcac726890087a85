"""Weight conversion between torchseq (PyTorch) and jaxseq, as a table of explicit rules.

Every rule names a PyTorch state_dict key, the jaxseq parameter it becomes, and
whether it is transposed. Shapes are checked for every tensor, both ways; values
are copied, never cast, so the round trip is exact. torch is never imported here:
a state_dict may hold torch tensors or NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseq.model import Model, enable_dtype
from jaxseq.recurrent import GATES, RNNBase, check_options, parameter_shapes


class ConversionError(ValueError):
    """A state_dict that does not describe a jaxseq Model: names the key and the shapes."""


# (PyTorch key, jaxseq parameter path, transposed?, expected shape from (I, H, O))
RULES = (
    ("lstm.weight_ih_l0", ("lstm", "weight_ih"), False, lambda I, H, O: (4 * H, I)),
    ("lstm.weight_hh_l0", ("lstm", "weight_hh"), False, lambda I, H, O: (4 * H, H)),
    ("lstm.bias_ih_l0", ("lstm", "bias_ih"), False, lambda I, H, O: (4 * H,)),
    ("lstm.bias_hh_l0", ("lstm", "bias_hh"), False, lambda I, H, O: (4 * H,)),
    ("linear.weight", ("linear", "kernel"), True, lambda I, H, O: (O, H)),  # nnx kernel is (H, O)
    ("linear.bias", ("linear", "bias"), False, lambda I, H, O: (O,)),
)


def _to_numpy(value) -> np.ndarray:
    """A NumPy copy: JAX on CPU may alias NumPy memory, which torch would then update in place."""
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.array(value, copy=True)


def check_state_dict(state_dict: Mapping) -> tuple[int, int, int]:
    """Checks keys and shapes against RULES; returns the sizes (I, H, O) they describe."""
    expected = [rule[0] for rule in RULES]
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing:
        raise ConversionError(f"state_dict is missing key {missing[0]!r} (expected keys: {', '.join(expected)})")
    if extra:
        raise ConversionError(f"state_dict has unexpected key {extra[0]!r} (expected keys: {', '.join(expected)})")
    shapes = {k: tuple(np.shape(state_dict[k])) for k in expected}
    for key, _, _, shape_of in RULES:
        if len(shapes[key]) != len(shape_of(1, 1, 1)):
            raise ConversionError(f"{key}: expected a {len(shape_of(1, 1, 1))}-d tensor, got shape {shapes[key]}")
    # input, hidden, output sizes, read off the tensors that hold each one alone
    sizes = (shapes["lstm.weight_ih_l0"][1], shapes["lstm.weight_hh_l0"][1], shapes["linear.bias"][0])
    for key, _, _, shape_of in RULES:
        if shapes[key] != shape_of(*sizes):
            raise ConversionError(
                f"{key}: expected shape {shape_of(*sizes)} for input {sizes[0]}, hidden {sizes[1]}, "
                f"output {sizes[2]}; got {shapes[key]}"
            )
    dtypes = {_to_numpy(state_dict[k]).dtype for k in expected}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        raise ConversionError(f"state_dict tensors must all be float32 or all float64; got {sorted(map(str, dtypes))}")
    return sizes


def from_torch(obj, *, kind: str | None = None, **options):
    """A jaxseq Model with exactly the weights of a torchseq model or its state_dict.

    `obj` is a torch module (anything with `.state_dict()`, e.g. `torchseq.Model`)
    or a mapping of PyTorch keys to tensors or NumPy arrays. The dtype is kept.

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
    input_size, hidden, output_size = check_state_dict(state_dict)
    arrays = {key: _to_numpy(value) for key, value in state_dict.items()}
    dtype = enable_dtype(arrays["lstm.weight_ih_l0"].dtype)
    model = nnx.eval_shape(lambda: Model(input_size, hidden, output_size, param_dtype=dtype, rngs=nnx.Rngs(0)))
    for key, (module, name), transposed, _ in RULES:
        value = arrays[key].T if transposed else arrays[key]
        setattr(getattr(model, module), name, nnx.Param(jnp.asarray(value, dtype)))
    return model


def to_torch_state_dict(model: Model) -> dict[str, np.ndarray]:
    """The model's weights under PyTorch's names and layouts, as NumPy arrays.

    `torchseq.Model.load_state_dict({k: torch.from_numpy(v) ...})` accepts it. For a
    `jaxseq.recurrent` layer, the keys are torch.nn.LSTM/GRU/RNN's, in their order.
    """
    if isinstance(model, RNNBase):
        return recurrent_state_dict(model)
    state_dict = {}
    for key, (module, name), transposed, _ in RULES:
        value = np.array(getattr(getattr(model, module), name)[...])  # a writable copy
        state_dict[key] = np.ascontiguousarray(value.T if transposed else value)
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


def check_weights_fit(state_dict: Mapping, *, dtype, hidden: int, input_size: int, output_size: int, source) -> None:
    """Raises ConversionError unless the state_dict has this dtype and these sizes."""
    sizes = check_state_dict(state_dict)
    found = _to_numpy(next(iter(state_dict.values()))).dtype
    if found != np.dtype(dtype):
        raise ConversionError(f"{source}: weights are {found}, but --dtype is {np.dtype(dtype)}")
    for name, have, want in zip(
        ("input size", "hidden size", "output size"), sizes, (input_size, hidden, output_size), strict=True
    ):
        if have != want:
            hint = " (--hidden)" if name == "hidden size" else " (the data's features)"
            raise ConversionError(f"{source}: weights have {name} {have}, but the run needs {want}{hint}")


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
