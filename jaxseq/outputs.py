"""What a training run writes into its --out directory, for jaxseq and torchseq alike.

Every file is written aside and renamed into place, so a failure never leaves a
half-written file, and a run that fails before the end leaves the directory as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


class OutputError(OSError):
    """The output directory cannot be created or written."""


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


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
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


def plot_loss(path: Path, curves: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=label)
    ax.set(xlabel="step", ylabel="loss", yscale="log", title=title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_predictions(path: Path, x_T: np.ndarray, y_T: np.ndarray, pred_T: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x_T, y_T, "o", label="target (x + shift)")
    ax.plot(x_T, pred_T, ".-", label="prediction")
    ax.set(xlabel="input x", ylabel="output", title=title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_run(
    out: Path,
    *,
    name: str,
    losses: np.ndarray,
    summary: dict,
    x_T: np.ndarray,
    y_T: np.ndarray,
    pred_T: np.ndarray,
    weights_file: str,
    save_weights: Callable[[Path], None],
) -> None:
    """Writes history.csv, summary.json, loss_curve.png, predictions.png and the weights file."""
    atomic_write(out / weights_file, save_weights)
    _write_text(out / "history.csv", history_csv(losses))
    plot_loss(out / "loss_curve.png", {name: losses}, f"{name}: training loss")
    plot_predictions(out / "predictions.png", x_T, y_T, pred_T, f"{name}: predictions after {len(losses)} steps")
    _write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
