"""The seed question's model in PyTorch: nn.LSTM(1, H, batch_first=True), then nn.Linear(H, 1);
generalised to nn.GRU and nn.RNN, stacked layers and two directions."""

from __future__ import annotations

import torch
from torch import nn

from jaxseq.nn.model import Architecture

LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Model(nn.Module):
    """A recurrent layer + linear head at every step: (B, T, I) -> (B, T, O), of the given
    `jaxseq.Architecture` (the one description both frameworks build from).

    The recurrent layer is the attribute named by `cell` (`self.lstm`, `self.gru`, `self.rnn`),
    batch_first; the head takes both directions' outputs (D*H features). Submodules are created
    in the original script's order (recurrent layer first, then Linear), so `torch.manual_seed(s)`
    followed by `Model(...)` draws the same weights as the script.
    """

    def __init__(self, arch: Architecture | None = None):
        super().__init__()
        arch = Architecture() if arch is None else arch  # the seed's model by default
        if arch.cell not in LAYERS:
            raise ValueError(f"cell must be one of {', '.join(LAYERS)}; got {arch.cell!r}")
        self.cell = cell = arch.cell
        layer = LAYERS[cell](
            arch.input_size, arch.hidden_size, arch.num_layers, batch_first=True, bidirectional=arch.bidirectional
        )
        self.add_module(cell, layer)
        self.linear = nn.Linear(arch.features, arch.output_size)

    @property
    def recurrent(self) -> nn.RNNBase:
        """The recurrent layer (`self.lstm`, `self.gru` or `self.rnn`)."""
        return getattr(self, self.cell)

    def forward(self, x_BxTxI: torch.Tensor, lengths_B: torch.Tensor | None = None) -> torch.Tensor:
        """`lengths_B`: sequences padded at the end; a bidirectional layer then runs on them packed
        (`pack_padded_sequence`), so its reverse direction starts at each one's last valid step."""
        layer = self.recurrent
        if lengths_B is not None and layer.bidirectional:
            packed = nn.utils.rnn.pack_padded_sequence(x_BxTxI, lengths_B.cpu(), batch_first=True, enforce_sorted=False)
            output, _ = layer(packed)
            output_BxTxF, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=x_BxTxI.shape[1])
        else:
            output_BxTxF, _ = layer(x_BxTxI)
        return self.linear(output_BxTxF)


def build(arch: Architecture, *, seed: int = 0, dtype: str = "float64") -> Model:
    """The torch Model of `arch` (jaxseq.model.Architecture, the one description both frameworks
    build from), initialised exactly as the original script: seed, recurrent layer, Linear, cast."""
    torch.manual_seed(seed)
    return Model(arch).to(getattr(torch, dtype))


def build_model(
    hidden: int = 100,
    seed: int = 0,
    dtype: str = "float64",
    input_size: int = 1,
    output_size: int = 1,
    *,
    cell: str = "lstm",
    layers: int = 1,
    bidirectional: bool = False,
) -> Model:
    """`build` with the command line's names (--hidden, --layers): the original script's model for `seed`."""
    return build(Architecture(cell, input_size, hidden, output_size, layers, bidirectional), seed=seed, dtype=dtype)


def load_model(path) -> Model:
    """A Model holding the weights in a .pt or .safetensors file (or a run directory), in their dtype."""
    from jaxseq.port.weights import read_weights_file

    return from_state_dict(read_weights_file(path))


def from_state_dict(state_dict) -> Model:
    """A Model holding a checked NumPy state_dict (see jaxseq.port.convert.check_state_dict), in its dtype."""
    from jaxseq.port.convert import check_state_dict

    arch = check_state_dict(state_dict)
    model = build(arch, dtype=str(next(iter(state_dict.values())).dtype))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    return model
