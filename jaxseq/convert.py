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
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


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
    w_ih, w_hh, w_out = shapes["lstm.weight_ih_l0"], shapes["lstm.weight_hh_l0"], shapes["linear.weight"]
    if len(w_hh) != 2 or len(w_ih) != 2 or len(w_out) != 2:
        bad = next(k for k in ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "linear.weight") if len(shapes[k]) != 2)
        raise ConversionError(f"{bad}: expected a 2-d tensor, got shape {shapes[bad]}")
    sizes = (w_ih[1], w_hh[1], w_out[0])
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


def from_torch(obj) -> Model:
    """A jaxseq Model with exactly the weights of a torchseq model or its state_dict.

    `obj` is a torch module (anything with `.state_dict()`, e.g. `torchseq.Model`)
    or a mapping of PyTorch keys to tensors or NumPy arrays. The dtype is kept.

    >>> model = jaxseq.from_torch(torchseq.build_model(hidden=100, seed=0))
    """
    state_dict = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(state_dict, Mapping):
        raise ConversionError(f"expected a torch module or a state_dict mapping, got {type(obj).__name__}")
    input_size, hidden, output_size = check_state_dict(state_dict)
    arrays = {key: _to_numpy(value) for key, value in state_dict.items()}
    dtype = enable_dtype(arrays["lstm.weight_ih_l0"].dtype)
    model = nnx.eval_shape(
        lambda: Model(input_size, hidden, output_size, param_dtype=dtype, rngs=nnx.Rngs(0))
    )
    for key, (module, name), transposed, _ in RULES:
        value = arrays[key].T if transposed else arrays[key]
        setattr(getattr(model, module), name, nnx.Param(jnp.asarray(value, dtype)))
    return model


def to_torch_state_dict(model: Model) -> dict[str, np.ndarray]:
    """The model's weights under PyTorch's names and layouts, as NumPy arrays.

    `torchseq.Model.load_state_dict({k: torch.from_numpy(v) ...})` accepts it.
    """
    state_dict = {}
    for key, (module, name), transposed, _ in RULES:
        value = np.asarray(getattr(getattr(model, module), name)[...])
        state_dict[key] = np.ascontiguousarray(value.T if transposed else value)
    check_state_dict(state_dict)
    return state_dict


def save_weights(model: Model, path) -> None:
    """Writes the model's weights as safetensors under PyTorch's names (readable by torch too)."""
    from safetensors.numpy import save_file

    save_file(to_torch_state_dict(model), str(path))


def load_weights(path) -> Model:
    """A Model from a safetensors file written by `save_weights`, or a run directory holding one."""
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "weights.safetensors"
    try:
        state_dict = load_file(str(path))
    except FileNotFoundError:
        raise ConversionError(f"{path}: no such weights file") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise ConversionError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        return from_torch(state_dict)
    except ConversionError as e:
        raise ConversionError(f"{path}: {e}") from None
