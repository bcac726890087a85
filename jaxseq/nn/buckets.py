"""Varying sequence lengths without a compile per length: pad each batch to one of a few lengths.

XLA compiles one program per input shape, so a loop over batches of different lengths (names of 3
to 19 letters, sentences) compiles once per length. `pad_to_bucket` pads a batch's time axis with
zeros up to the smallest of a few lengths (`buckets`) that holds it, and returns each sequence's
true length: the loop then compiles once per bucket.

Exact where padded steps cannot reach the result. A jaxseq LSTM, GRU or RNN given those `lengths`
skips them (as `pack_padded_sequence` does): its output is zero there and h_n holds each
sequence's last valid step, the reverse direction starting from it. So is a converted model that
packs its input with `pack_padded_sequence(x, lengths)` (jaxseq's `pad_packed_sequence` pads to
the input's length). A model that then reads h_n, or masks its outputs by the lengths, computes on
the padded batch what it computes on the unpadded one. A model that reads `output[-1]`, runs a
recurrent layer without lengths, or pools over every step without a mask does not: padding
changes its result, so do not bucket it.
"""

from __future__ import annotations

import numpy as np


def bucket_length(length: int, buckets) -> int:
    """The smallest of `buckets` that is >= `length`; ValueError when none is."""
    fitting = [b for b in buckets if b >= length]
    if not fitting:
        raise ValueError(f"a sequence of length {length} is longer than every bucket ({', '.join(map(str, buckets))})")
    return min(fitting)


def pad_to_bucket(x, buckets, *, axis: int = 0, lengths=None):
    """(x padded with zeros along its time `axis` to `bucket_length(x.shape[axis], buckets)`,
    lengths): `lengths` as given, else every sequence's length before padding, one int per
    sequence along the batch axis (the other of axes 0 and 1: time-major (T, B, ...) or
    batch-first (B, T, ...)). NumPy in, NumPy out: pad on the host, before jit sees the shape."""
    x = np.asarray(x)
    if axis not in (0, 1) or x.ndim < 2:
        raise ValueError(f"axis must be 0 (time-major) or 1 (batch-first) of >= 2 axes; got {axis} of {x.shape}")
    T, B = x.shape[axis], x.shape[1 - axis]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, bucket_length(T, buckets) - T)
    lengths = np.full(B, T, dtype=np.int64) if lengths is None else np.asarray(lengths)
    integers = lengths.shape == (B,) and np.issubdtype(lengths.dtype, np.integer)
    if not integers or not ((lengths >= 1) & (lengths <= T)).all():  # past T: the padding read, not exact
        raise ValueError(f"lengths must be {B} integers in [1, {T}] (the batch before padding); got {lengths.tolist()}")
    return np.pad(x, widths), lengths
