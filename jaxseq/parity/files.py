"""Model files: `jaxseq check FILE.py[:FUNCTION]` imports FILE.py and calls FUNCTION (default
`make`), which returns the keyword arguments of `jaxseq.parity.check` as a dict."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from jaxseq.errors import ConversionError, UserError, torch_required
from jaxseq.errors import one_line as _one_line
from jaxseq.parity.report import ParityReport

SETUP_KEYS = ("model", "optimizer", "batches")  # what a model file's function must return
OPTIONAL_KEYS = ("loss", "scheduler", "clip_grad_norm", "steps", "jax_model", "hidden")


class ModelFileError(UserError, ValueError):
    """A model file for `jaxseq check` that cannot be used (missing, failing to import, without the
    function, the function failing or returning something else than the setup dict), or a model in
    it that does not convert. Exit status 2, as a bad option's."""

    exit_code = 2


def check_file(spec: str, *, steps: int | None = None) -> ParityReport:
    """`check(**FUNCTION())` for the FILE.py[:FUNCTION] `spec` (FUNCTION defaults to `make`), with
    `steps` (when given) in place of the dict's. Every problem of the file, and a model that does
    not convert, is a ModelFileError (exit status 2)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise torch_required("jaxseq check") from None
    setup = load_setup(spec)
    if steps is not None:
        setup["steps"] = steps
    try:
        from jaxseq.parity.check import check

        return check(**setup)
    except ConversionError as e:
        raise ModelFileError(f"{spec}: {e}") from None


def load_setup(spec: str) -> dict:
    """The dict that FUNCTION of FILE.py (`spec` "FILE.py[:FUNCTION]", FUNCTION `make` by default)
    returns, checked to hold `model`, `optimizer` and `batches` and only `check`'s keywords.
    The file is imported as a module (its `if __name__ == "__main__":` block does not run), with
    its directory on sys.path, as when Python runs it."""
    path, function = _parse_spec(spec)
    where = f"{path}:{function}()"
    module = _import_file(path)
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ModelFileError(
            f"{path} has no function {function!r}: define {function}() returning "
            "dict(model=..., optimizer=..., batches=...)"
        )
    with _on_path(path.parent):
        try:
            setup = fn()
        except (Exception, SystemExit) as e:
            raise ModelFileError(f"{where} raised {_one_line(e)}{_line_in(e, path)}") from None
    if not isinstance(setup, dict):
        raise ModelFileError(f"{where} returned {type(setup).__name__}, not a dict with keys {', '.join(SETUP_KEYS)}")
    missing = [key for key in SETUP_KEYS if key not in setup]
    if missing:
        raise ModelFileError(
            f"{where} returned no {missing[0]!r}: the dict needs {', '.join(SETUP_KEYS)} "
            f"(and may have {', '.join(OPTIONAL_KEYS)})"
        )
    unknown = [key for key in setup if key not in SETUP_KEYS + OPTIONAL_KEYS]
    if unknown:
        raise ModelFileError(
            f"{where} returned an unknown key {unknown[0]!r} (keys: {', '.join(SETUP_KEYS + OPTIONAL_KEYS)})"
        )
    return dict(setup)


def _parse_spec(spec: str) -> tuple[Path, str]:
    file, sep, function = str(spec).rpartition(":")
    if sep and function.isidentifier() and file:
        return Path(file), function
    return Path(spec), "make"


def _import_file(path: Path):
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    name = "jaxseq_check_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined in it (dataclasses, pickling) look their module up
    with _on_path(path.parent):
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            del sys.modules[name]
            raise ModelFileError(f"{path}, line {e.lineno}: syntax error: {e.msg}") from None
        except (Exception, SystemExit) as e:
            del sys.modules[name]
            raise ModelFileError(f"importing {path} raised {_one_line(e)}{_line_in(e, path)}") from None
    return module


class _on_path:
    """`directory` first on sys.path while inside, as Python puts a script's own directory."""

    def __init__(self, directory: Path):
        self.directory = str(directory.resolve())

    def __enter__(self):
        sys.path.insert(0, self.directory)

    def __exit__(self, *exc):
        if self.directory in sys.path:
            sys.path.remove(self.directory)


def _line_in(e: BaseException, path: Path) -> str:
    """` (line N)`: the last frame of the traceback in the user's file; "" where none is."""
    target = str(path.resolve())
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if str(Path(f.filename).resolve()) == target]
    return f" (line {lines[-1]})" if lines else ""

