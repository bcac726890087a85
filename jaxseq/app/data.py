"""A run's data as `Sequences`, and the user's own sequences, from CSV, .npy or .npz, checked
where they enter. (The built-in tasks: `jaxseq.app.task`.)

Formats:

- CSV with a header holding `input` and `target` columns: one row per time step, one feature
  each (a file of several features is a .npz). An optional `sequence` column names the sequence
  of each row (rows of a sequence in time order); without it the file is one sequence. Other
  columns are ignored. Sequences may differ in length: shorter ones are padded with zeros to the
  longest, and their lengths kept. Example: `examples/shifted.csv`.
- .npz with arrays `input` and `target`, each of shape (N, T) or (N, T, F), and optionally
  `lengths`, N integers in [1, T]: sequence n is its first lengths[n] steps.
- .npy holding one array of shape (2, N, T) or (2, N, T, F): [inputs, targets], all of length T.

Returns `Sequences` (x_NxTxF, y_NxTxG, lengths_N or None), ready for `train(config, batch=...)`.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxseq.errors import DataError

__all__ = ["DataError", "Sequences", "check_lengths", "load_data"]


class Sequences(NamedTuple):
    """A dataset: inputs, targets and, for sequences of several lengths, each one's length."""

    x: np.ndarray  # (N, T, I)
    y: np.ndarray  # (N, T, O)
    lengths: np.ndarray | None = None  # (N,) int32, valid steps of each sequence; None: all T


def check_lengths(lengths, shape: tuple[int, ...]) -> np.ndarray:
    """`lengths` as (N,) int32 for sequences of shape (N, T, ...); DataError unless each is in [1, T]."""
    N, T = shape[:2]
    lengths = np.asarray(lengths)
    if lengths.dtype.kind not in "iu" or lengths.shape != (N,):
        raise DataError(f"lengths must be {N} integers, one per sequence; got {lengths.dtype} {lengths.shape}")
    bad = np.flatnonzero((lengths < 1) | (lengths > T))
    if bad.size:
        raise DataError(f"lengths[{bad[0]}] is {lengths[bad[0]]}; each must lie in [1, {T}]")
    return lengths.astype(np.int32)


def load_data(path, dtype="float64") -> Sequences:
    """(x_NxTxF, y_NxTxG, lengths_N or None) from a CSV, .npy or .npz file; raises DataError naming
    the problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    loaders = {".csv": _load_csv, ".npy": _load_npy, ".npz": _load_npz}
    if path.suffix.lower() not in loaders:
        raise DataError(f"{path}: unknown data format {path.suffix!r} (expected .csv, .npy or .npz)")
    try:
        x, y, lengths = loaders[path.suffix.lower()](path)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({type(e).__name__}: {str(e)[:200]})") from None
    try:
        x, y = _check(x, "input").astype(dtype), _check(y, "target").astype(dtype)
        return Sequences(x, y, None if lengths is None else check_lengths(lengths, x.shape))
    except ValueError as e:  # DataError is one
        raise DataError(f"{path}: {e}") from None


def _check(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise DataError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise DataError(f"{name} must have shape (N, T) or (N, T, F), got {a.shape}")
    if 0 in a.shape:
        raise DataError(f"{name} is empty (shape {a.shape})")
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        n, t, f = bad[0]
        raise DataError(f"{name} has a non-finite value {a[n, t, f]} at sequence {n}, step {t}, feature {f}")
    return a


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[:2] != y.shape[:2]:
        raise DataError(f"input and target lengths differ: input {x.shape}, target {y.shape}")
    return x, y


def _load_npz(path: Path):
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("input", "target") if k not in f.files]
        if missing:
            raise DataError(f"missing array {missing[0]!r} (has: {', '.join(f.files) or 'nothing'})")
        x, y = f["input"], f["target"]
        lengths = f["lengths"] if "lengths" in f.files else None
    x, y = (a[..., None] if a.ndim == 2 else a for a in (x, y))
    return *_pair(x, y), lengths


def _load_npy(path: Path):
    a = np.load(path, allow_pickle=False)
    if a.ndim not in (3, 4) or a.shape[0] != 2:
        raise DataError(f"expected an array of shape (2, N, T) or (2, N, T, F), got {a.shape}")
    return a[0], a[1], None


def _load_csv(path: Path):
    with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a byte-order mark is skipped
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if not columns:
            raise DataError("empty file (expected a header with 'input' and 'target')")
        several = [c for c in columns if c.startswith(("input", "target")) and c not in ("input", "target")]
        if several:
            raise DataError(
                f"column {several[0]!r}: a CSV holds one input and one target feature (columns 'input' and "
                "'target'); for several features use a .npz file with arrays input and target of shape (N, T, F)"
            )
        for required in ("input", "target"):
            if required not in columns:
                raise DataError(f"missing column {required!r} (found: {', '.join(columns)})")
        reader.fieldnames = columns
        sequences: dict[str, list[tuple[float, float]]] = {}
        for row in reader:
            line = reader.line_num
            try:
                pair = (float(row["input"]), float(row["target"]))
            except (TypeError, ValueError):
                raise DataError(
                    f"row {line}: input {row['input']!r} and target {row['target']!r} must be numbers"
                ) from None
            if not all(np.isfinite(pair)):
                raise DataError(f"row {line}: non-finite value (input {row['input']}, target {row['target']})")
            sequences.setdefault(row.get("sequence", "") or "", []).append(pair)
    if not sequences:
        raise DataError("no data rows after the header")
    lengths_N = np.array([len(rows) for rows in sequences.values()])
    a = np.zeros((len(sequences), lengths_N.max(), 2))  # (N, T, input and target), zero-padded
    for n, rows in enumerate(sequences.values()):
        a[n, : len(rows)] = rows
    return a[..., 0], a[..., 1], None if (lengths_N == lengths_N[0]).all() else lengths_N
