"""torchseq: the PyTorch reference, the seed question's fixed script made into a trainer."""

from torchseq.model import Model, build, build_model, from_state_dict, load_model
from torchseq.train import TorchResult, make_optimizer, sequence_loss, train

__all__ = [
    "Model",
    "TorchResult",
    "build",
    "build_model",
    "from_state_dict",
    "load_model",
    "make_optimizer",
    "sequence_loss",
    "train",
]
