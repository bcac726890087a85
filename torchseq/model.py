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


def build_model(hidden: int = 100, seed: int = 0, dtype: str = "float64") -> Model:
    """Exactly the original script's initialisation: seed, LSTM, Linear, cast to `dtype`."""
    torch.manual_seed(seed)
    return Model(1, hidden, 1).to(getattr(torch, dtype))
