"""Weight files: a model's state_dict under PyTorch's names, as .safetensors or .pt.

Reading checks the tensors with `jaxseq.port.convert.check_state_dict`, so a wrong file is refused by
name before any training; errors name the file. `.pt` files need torch and are read with
`weights_only=True` (no code is unpickled).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxseq.nn.model import Architecture
from jaxseq.port.convert import _to_numpy, check_state_dict, from_torch, to_torch_state_dict
from jaxseq.errors import ConversionError, OptionError, torch_required

SUFFIXES = {"safetensors": (".safetensors",), "pt": (".pt", ".pth")}


WEIGHT_FORMATS = tuple(SUFFIXES)


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
            raise torch_required(f"{path}: reading a .pt file") from None
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
    check_format(path, fmt)
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path))
    elif fmt == "pt":
        try:
            import torch
        except ImportError:
            raise torch_required("writing a .pt file") from None

        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)


def save_weights(model, path) -> None:
    """Writes the model's weights as safetensors under PyTorch's names (readable by torch too)."""
    write_weights_file(to_torch_state_dict(model), path, "safetensors")


def check_weights_fit(state_dict: Mapping, config, *, input_size: int, output_size: int, source) -> None:
    """Raises ConversionError unless the state_dict is a model of the run's dtype, cell, layers,
    directions and sizes (`config` is a TrainConfig)."""
    arch = check_state_dict(state_dict)
    found = _to_numpy(next(iter(state_dict.values()))).dtype
    if found != np.dtype(config.dtype):
        raise ConversionError(f"{source}: weights are {found}, but --dtype is {np.dtype(config.dtype)}")
    want = Architecture.of_run(config, input_size, output_size)
    hints = {  # field: (its name on the command line's side, what sets it)
        "cell": ("cell", "--cell"),
        "input_size": ("input_size", "the data's input features"),
        "hidden_size": ("hidden", "--hidden"),
        "output_size": ("output_size", "the data's target features"),
        "num_layers": ("layers", "--layers"),
        "bidirectional": ("bidirectional", "--bidirectional"),
    }
    for name, have, need in zip(Architecture._fields, arch, want, strict=True):
        if have != need:
            label, hint = hints[name]
            raise ConversionError(f"{source}: weights have {label} {have}, but the run needs {need} ({hint})")


def load_weights(path):
    """A Model from a .safetensors or .pt file, or a run directory holding one; dtype kept."""
    return from_torch(read_weights_file(path))


def check_format(path, fmt: str) -> None:
    """Refuses a file name whose suffix says another format than `fmt` (it could not be read back)."""
    if fmt not in SUFFIXES:
        raise OptionError(f"format must be one of {', '.join(WEIGHT_FORMATS)}; got {fmt!r}")
    if Path(path).suffix not in SUFFIXES[fmt]:
        raise OptionError(f"{path}: a {fmt} file must end in {' or '.join(SUFFIXES[fmt])}")
