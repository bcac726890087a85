"""What a training run writes into its --out directory, for jaxseq and torchseq alike.

Every file is written aside and renamed into place, so a failure never leaves a
half-written file, and a run that fails before the end leaves the directory as it was.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxseq.errors import FileError


class OutputError(FileError):
    """The output directory cannot be created or written."""


# Every file a run, a comparison, a sweep or a check writes into its --out directory.
RUN_FILES = (
    "weights.safetensors",
    "model.pt",
    "history.csv",
    "loss_curve.png",
    "predictions.png",
    "summary.json",
    "checkpoint.npz",
    "checkpoint.pt",
    "loss_curves.png",
    "sweep.png",
    "report.json",
    "parity.png",
)


def prepare_out_dir(path) -> Path:
    """Creates `path` if needed and checks it is a writable directory, before any training."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise OutputError(f"cannot write to output directory {str(out)!r}: {e.strerror or e}") from None
    return out


@contextlib.contextmanager
def new_run_dir(path):
    """--out for a new run, so that it never describes two runs at once: an earlier run's files
    (RUN_FILES, nothing else) are removed once every input has been checked, i.e. on entering;
    a directory this call created is removed again if the run fails before writing into it."""
    out = Path(path)
    created = not out.exists()
    out = prepare_out_dir(out)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    try:
        yield out
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


@functools.cache
def _file_mode() -> int:
    """The mode a new file gets from the user's umask (0o644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`, with the
    permissions any new file of the user's gets (umask)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileError(f"cannot write {path}: no directory {str(path.parent)!r}")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    except OSError as e:
        raise FileError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def history_csv(losses: np.ndarray) -> str:
    """`step,loss` rows, steps counted from 1; losses with 17 significant digits (exact in float64)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "loss"])
    writer.writerows((step, repr(float(loss))) for step, loss in enumerate(losses, start=1))
    return buffer.getvalue()


def read_history(path) -> np.ndarray:
    """The losses of a history.csv written by `history_csv`."""
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=1, ndmin=1)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: Path, fig) -> None:
    """Writes `fig` as a PNG atomically, then frees it."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    pyplot().close(fig)


def plot_loss(path: Path, curves: dict[str, np.ndarray], title: str) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for label, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=label)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    save_figure(path, fig)


def plot_predictions(path: Path, y_T: np.ndarray, pred_T: np.ndarray, title: str) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    ax.plot(y_T, "o", label="target")
    ax.plot(pred_T, ".-", label="prediction")
    ax.set(xlabel="time step", ylabel="output", title=title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    save_figure(path, fig)


def predictions_csv(data, pred_NxTxG: np.ndarray) -> str:
    """`step,input,target,prediction` rows (steps from 0), with a leading `sequence` column when N > 1,
    for `data` (Sequences: x_NxTxF, y_NxTxG, lengths); each sequence's padded steps are left out.

    With several features, each column becomes `input_0, input_1, ...` (and so on).
    """
    x_NxTxF, y_NxTxG = data.x, data.y
    N, T, F = x_NxTxF.shape
    lengths_N = np.full(N, T) if data.lengths is None else data.lengths
    G = y_NxTxG.shape[-1]

    def names(base, k):
        return [base] if k == 1 else [f"{base}_{i}" for i in range(k)]

    header = (["sequence"] if N > 1 else []) + ["step"] + names("input", F) + names("target", G)
    header += names("prediction", G)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for n in range(N):
        for t in range(lengths_N[n]):
            values = [repr(float(v)) for v in (*x_NxTxF[n, t], *y_NxTxG[n, t], *pred_NxTxG[n, t])]
            writer.writerow(([n] if N > 1 else []) + [t] + values)
    return buffer.getvalue()


WEIGHTS_FILES = {"jaxseq": "weights.safetensors", "torchseq": "model.pt"}


def write_run(
    out: Path,
    *,
    name: str,
    losses: np.ndarray,
    summary: dict,
    data,
    pred: np.ndarray,
    save_weights: Callable[[Path], None],
) -> None:
    """Writes the weights file, history.csv, loss_curve.png, predictions.png and summary.json.

    `data` is the run's Sequences and `pred` (N, T, G) the model's outputs for them; the
    predictions plot shows the first sequence's first feature, up to its length.
    """
    atomic_write(out / WEIGHTS_FILES[name], save_weights)
    write_text(out / "history.csv", history_csv(losses))
    plot_loss(out / "loss_curve.png", {name: losses}, f"{name}: training loss")
    T = data.y.shape[1] if data.lengths is None else data.lengths[0]
    plot_predictions(out / "predictions.png", data.y[0, :T, 0], pred[0, :T, 0], f"{name}: after {len(losses)} steps")
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
