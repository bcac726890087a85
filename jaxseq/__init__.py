"""jaxseq: a Flax NNX port of PyTorch's LSTM, its training, and exact weight conversion.

`from jaxseq import Model, train, from_torch, to_torch_state_dict, TrainConfig`.
The public names load on first use, so `jaxseq.config` and `jaxseq.task` (plain
NumPy) import without JAX; torch is never imported by jaxseq at import time.
"""

import importlib

_EXPORTS = {
    "TrainConfig": "jaxseq.config",
    "shifted_sequence": "jaxseq.task",
    "Sequences": "jaxseq.task",
    "load_sequences": "jaxseq.task",
    "Architecture": "jaxseq.config",
    "Model": "jaxseq.nn.model",
    "LSTM": "jaxseq.nn.recurrent",
    "GRU": "jaxseq.nn.recurrent",
    "RNN": "jaxseq.nn.recurrent",
    "Linear": "jaxseq.nn.layers",
    "nn": "jaxseq.nn",
    "port": "jaxseq.port",
    "optim": "jaxseq.optim",
    "ConversionError": "jaxseq.errors",
    "UserError": "jaxseq.errors",
    "from_torch": "jaxseq.port.convert",
    "to_torch_state_dict": "jaxseq.port.convert",
    "load_weights": "jaxseq.port.weights",
    "save_weights": "jaxseq.port.weights",
    "TrainResult": "jaxseq.training",
    "train": "jaxseq.training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        return module if module.__name__ == f"jaxseq.{name}" else getattr(module, name)
    raise AttributeError(f"module 'jaxseq' has no attribute {name!r}")


def __dir__():
    return __all__
