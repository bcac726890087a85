"""Writing files so that no reader ever sees half of one: a temporary file beside the target,
renamed over it. Shared by the parity report and the application's run directories.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from jaxseq.errors import FileError


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
