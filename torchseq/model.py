"""The seed question's model in PyTorch: nn.LSTM(1, H, batch_first=True), then nn.Linear(H, 1)."""

from __future__ import annotations

import torch
from torch import nn


class Model(nn.Module):
    """LSTM + linear head at every step: (B, T, I) -> (B, T, O).

    Submodules are created in the original script's order (LSTM first, then
    Linear), so `torch.manual_seed(s)` followed by `Model(...)` draws the same
    weights as the script.
    """

    def __init__(self, input_size: int = 1, hidden_size: int = 100, output_size: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=1, batch_first=True)
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, x_BxTxI: torch.Tensor) -> torch.Tensor:
        output_BxTxH, _ = self.lstm(x_BxTxI)
        return self.linear(output_BxTxH)


def build_model(
    hidden: int = 100, seed: int = 0, dtype: str = "float64", input_size: int = 1, output_size: int = 1
) -> Model:
    """Exactly the original script's initialisation: seed, LSTM, Linear, cast to `dtype`."""
    torch.manual_seed(seed)
    return Model(input_size, hidden, output_size).to(getattr(torch, dtype))


def load_model(path) -> Model:
    """A Model holding the weights in a .pt or .safetensors file (or a run directory), in their dtype."""
    from jaxseq.convert import read_weights_file

    return from_state_dict(read_weights_file(path))


def from_state_dict(state_dict) -> Model:
    """A Model holding a checked NumPy state_dict (see jaxseq.convert.check_state_dict), in its dtype."""
    from jaxseq.convert import check_state_dict

    input_size, hidden, output_size = check_state_dict(state_dict)
    dtype = str(next(iter(state_dict.values())).dtype)
    model = Model(input_size, hidden, output_size).to(getattr(torch, dtype))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    return model
