"""torchseq: the PyTorch reference, the seed question's fixed script made into a trainer.

Without PyTorch the package still imports (empty), so that `torchseq` (the command) starts and
says how to install it.
"""

try:
    from torchseq.model import Model, build, build_model, from_state_dict, load_model
    from torchseq.train import TorchResult, make_optimizer, sequence_loss, train
except ImportError as e:  # only a missing torch; any other import error is a bug and is raised
    if not (e.name == "torch" or (e.name or "").startswith("torch.")):
        raise

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
