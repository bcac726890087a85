"""torchseq: the PyTorch reference, the seed question's fixed script made into a trainer.

The public names load on first use, so `torchseq.cli` starts (and says how to install PyTorch)
where torch is missing.
"""

import importlib

_EXPORTS = {
    "Model": "torchseq.model",
    "build": "torchseq.model",
    "build_model": "torchseq.model",
    "from_state_dict": "torchseq.model",
    "load_model": "torchseq.model",
    "TorchResult": "torchseq.train",
    "make_optimizer": "torchseq.train",
    "sequence_loss": "torchseq.train",
    "train": "torchseq.train",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'torchseq' has no attribute {name!r}")


def __dir__():
    return __all__
