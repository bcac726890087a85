"""What a run writes into its --out directory, for jaxseq and torchseq alike, and the one rule by
which it writes there (`RunDir`):

A run writes into a fresh temporary directory beside --out. Once it has something complete (its
first checkpoint, or its end: finished, diverged or interrupted, with its files written), that
directory takes --out's place by rename, and the run writes on there, each file written aside and
renamed into place. So an earlier run's results stay whole until the new run has its own, and then
no file of theirs (a predictions.csv) is left beside the new ones. A run that fails before that
(bad input, a bug) leaves --out as it was. --out must be new, empty or a run's directory: one
holding anything else is refused, since it would be replaced whole.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxseq.errors import FileError
from jaxseq.files import atomic_write, pyplot, save_figure, write_text


class OutputError(FileError):
    """The output directory cannot be created or written, or holds what no run wrote."""


# Every file a run, a comparison, a sweep, a check or a prediction writes into a run directory.
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
    "predictions.csv",
)


def _is_run_file(name: str) -> bool:
    """A file a run wrote, or the temporary file of one that a killed run left (`.history.csv.x7a.csv`)."""
    return name in RUN_FILES or any(name.startswith(f".{file}.") for file in RUN_FILES)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunDir:
    """A run's output directory under the module's rule: a context manager giving the directory to
    write into, `out / "history.csv"`.

    `target` is checked on creation (refused if it holds anything no run wrote, so before any
    work); on entering, a temporary directory `.NAME.PID.XXXX.tmp` is made beside it. `publish()`
    renames that directory over `target` (the earlier run's directory is renamed aside, then
    removed); after it, `out / name` is in `target`. Leaving without an exception publishes;
    leaving with one before publishing removes the temporary directory. `str(out)` is always
    `target`, for messages.
    """

    def __init__(self, target):
        self.target = Path(target)
        self.path: Path | None = None  # where files go now: the temporary directory, then target
        self.published = False
        real = self._real = Path(os.path.realpath(self.target))  # a link's directory is replaced, not the link
        if real.exists() and not real.is_dir():
            raise OutputError(f"cannot write to output directory {str(self.target)!r}: it is a file")
        if real.is_dir():
            foreign = sorted(p.name for p in real.iterdir() if not _is_run_file(p.name))
            if foreign:
                raise OutputError(
                    f"output directory {str(self.target)!r} holds {foreign[0]!r}, which no run wrote: a run "
                    "replaces its whole --out directory, so give a new directory or a run's"
                )

    def __enter__(self) -> RunDir:
        real = self._real
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(real)
            self.path = Path(tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.{os.getpid()}.", suffix=".tmp"))
        except OSError as e:
            raise OutputError(f"cannot write to output directory {str(self.target)!r}: {e.strerror or e}") from None
        umask = os.umask(0)
        os.umask(umask)
        self.path.chmod(0o777 & ~umask)  # mkdtemp's is 0o700: the directory gets what any new one would
        return self

    def publish(self) -> None:
        """Makes what the run has written so far `target` (once; later calls do nothing)."""
        if self.published:
            return
        real = self._real
        if real.exists():
            aside = tempfile.mkdtemp(dir=real.parent, prefix=f".{real.name}.", suffix=".old")
            os.rename(real, aside)  # until the next line, the earlier run is here
            os.rename(self.path, real)
            shutil.rmtree(aside)
        else:
            os.rename(self.path, real)
        self.path, self.published = real, True

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            self.publish()
        elif not self.published:
            shutil.rmtree(self.path, ignore_errors=True)
        return False

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.target)


def _remove_abandoned(real: Path) -> None:
    """Removes the temporary directories beside `real` of runs whose process is gone (killed)."""
    for tmp in real.parent.glob(f".{real.name}.*.tmp"):
        pid = tmp.name[len(real.name) + 2 :].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a diverging run's 1e300 overflows the log axis's ticks
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


def write_summary(out, summary: dict) -> None:
    write_text(out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")


def write_run(
    out,
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
    write_summary(out, summary)


def write_diverged(out, *, name: str, losses: np.ndarray, summary: dict) -> None:
    """A diverged run's files: history.csv and loss_curve.png up to the last finite loss, and
    summary.json (its weights are not finite, so there are none; its last checkpoint stays)."""
    write_text(out / "history.csv", history_csv(losses))
    if len(losses):
        plot_loss(out / "loss_curve.png", {name: losses}, f"{name}: training loss, diverged")
    write_summary(out, summary)
