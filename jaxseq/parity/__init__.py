"""Parity: does a JAX port train as its PyTorch model does, step for step?

- `check`: trains both side by side and compares every tensor after every step (`check.check`);
  `jax_training` gives its JAX side (the pure step and its first state) to time or train on;
- `report`: the ParityReport, its table, JSON and plot, and the tolerances per dtype;
- `files`: `jaxseq check FILE.py` - loading a user's model file.

torch is imported inside functions only.
"""

from jaxseq.parity.check import LOSSES, JaxTraining, check, jax_training, load_torch_weights, train_step
from jaxseq.parity.files import ModelFileError, check_file, load_setup
from jaxseq.parity.report import TOLERANCES, Divergence, ParityReport, Tolerances

__all__ = [
    "TOLERANCES", "LOSSES", "Tolerances", "ParityReport", "Divergence", "ModelFileError", "check", "check_file",
    "load_setup", "load_torch_weights", "train_step", "jax_training", "JaxTraining",
]
