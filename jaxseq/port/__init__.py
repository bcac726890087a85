"""Porting: a PyTorch model, captured with torch.export, as a Flax NNX module that runs with jax.numpy.

- `export`: the front end (torch.export, the calls kept whole, core-ATen decomposition, errors);
- `program`: the exported forward as plain data, and the interpreter that runs it;
- `registry`: the op table; `aten`: core ATen in jax.numpy; `recurrent`: recurrent layers and
  cells kept whole, on jaxseq.nn's kernels; `losses`: losses kept whole (CTC);
- `module`: the converted module (`from_torch(model, *example_args)`);
- `rules`: state_dict rules of jaxseq's own layers (a bare nn.LSTM/GRU/RNN, the seed model);
- `weights`: weight files (safetensors, torch's .pt).

torch is imported inside functions only (importing jaxseq.port does not import it).
"""

from jaxseq.port.registry import implements
from jaxseq.port.table import supported

__all__ = ["implements", "supported"]
