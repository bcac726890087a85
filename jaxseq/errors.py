"""The errors a user can cause. The command line turns these, and only these, into one line on
stderr and a non-zero exit; anything else is a bug of ours and keeps its traceback.

Each is also the built-in exception a Python caller would expect (ValueError, OSError, ...), so
`except ValueError` keeps working for library users.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: an option, a data file, a weights file, a checkpoint, a model file."""

    exit_code = 1


class OptionError(UserError, ValueError):
    """An option value, or a combination of options, that cannot work. Exit status 2, as argparse's."""

    exit_code = 2


class DataError(UserError, ValueError):
    """A data file (CSV, .npy, .npz) that cannot be read as sequences; names the file and the problem."""


class FileError(UserError, OSError):
    """A file or directory that cannot be read or written where the user pointed."""


class MissingDependency(UserError, ImportError):
    """An optional package (PyTorch) that this request needs; says how to install it."""


class Diverged(UserError, FloatingPointError):
    """Training stopped on a NaN or infinite loss; the finite history has been kept."""


class DivergenceError(Diverged):
    """The loss became NaN or infinite; `.losses` holds the finite history before it. Both
    trainers (jaxseq.app.training, torchseq.train) raise it."""

    def __init__(self, message: str, losses):
        super().__init__(message)
        self.losses = losses


def torch_required(what: str) -> MissingDependency:
    """The error for a request that needs PyTorch where it is not installed."""
    return MissingDependency(f"{what} needs PyTorch: install a CPU build of torch (see the README's install section)")


class ConversionError(UserError, ValueError):
    """Weights or a model that cannot be converted: names the key, the op or the shape at fault."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be resumed: missing, unreadable, or of another run."""


def one_line(error: BaseException) -> str:
    """An exception as one line: its class and the first non-blank line of its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
