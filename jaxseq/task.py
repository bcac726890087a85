"""The shifted-sequence task of the original question, as NumPy arrays.

x_t = t * spacing for t = 0..T-1 and y_t = x_t + shift; with the defaults,
x = (0, 0.05, ..., 1.0) and y = (0.1, 0.15, ..., 1.1). One sequence, shaped
like a `batch_first` PyTorch batch: (batch 1, time T, features 1).
"""

from __future__ import annotations

import numpy as np


def shifted_sequence(length: int = 21, spacing: float = 0.05, shift: float = 0.1, dtype="float64"):
    """Returns (x_1xTx1, y_1xTx1) as NumPy arrays of `dtype`.

    >>> x, y = shifted_sequence()
    >>> x.shape, float(y[0, -1, 0])
    ((1, 21, 1), 1.1)
    """
    x_T = np.arange(length, dtype=np.float64) * spacing
    y_T = x_T + shift
    return x_T.astype(dtype)[None, :, None], y_T.astype(dtype)[None, :, None]


def load_batch(config):
    """The run's (x_NxTxF, y_NxTxG): the user's --data file if given, else the shifted sequence."""
    if config.data is not None:
        from jaxseq.data import load_data

        return load_data(config.data, config.dtype)
    return shifted_sequence(config.length, config.spacing, config.shift, config.dtype)
