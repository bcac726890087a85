"""jaxseq: a Flax NNX port of PyTorch's LSTM, its training, and exact weight conversion.

`from jaxseq import Model, train, from_torch, to_torch_state_dict, TrainConfig`.
The public names load on first use, so `jaxseq.TrainConfig` and `jaxseq.load_sequences`
(jaxseq.app's config and task: plain NumPy) load without JAX; torch is never imported by
jaxseq at import time. The application (trainer, command line) is `jaxseq.app`.
"""

import importlib

_EXPORTS = {
    "TrainConfig": "jaxseq.app.config",
    "shifted_sequence": "jaxseq.app.task",
    "Sequences": "jaxseq.app.data",
    "load_sequences": "jaxseq.app.task",
    "Architecture": "jaxseq.nn.model",
    "Model": "jaxseq.nn.model",
    "LSTM": "jaxseq.nn.recurrent",
    "GRU": "jaxseq.nn.recurrent",
    "RNN": "jaxseq.nn.recurrent",
    "Linear": "jaxseq.nn.layers",
    "pad_to_bucket": "jaxseq.nn.buckets",
    "nn": "jaxseq.nn",
    "port": "jaxseq.port",
    "optim": "jaxseq.optim",
    "ConversionError": "jaxseq.errors",
    "UserError": "jaxseq.errors",
    "from_torch": "jaxseq.port.convert",
    "to_torch_state_dict": "jaxseq.port.convert",
    "load_weights": "jaxseq.port.weights",
    "save_weights": "jaxseq.port.weights",
    "TrainResult": "jaxseq.app.training",
    "train": "jaxseq.app.training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        return module if module.__name__ == f"jaxseq.{name}" else getattr(module, name)
    raise AttributeError(f"module 'jaxseq' has no attribute {name!r}")


def __dir__():
    return __all__
