"""Every code block of README.md and docs/ runs as written (mktestdocs finds them).

- ```python blocks are executed, each on its own, in a fresh directory. A block whose first line is
  a comment naming a file (`# my_model.py`) is written to that file instead, for the shell blocks
  after it to use.
- ```bash blocks: each line that runs `jaxseq` or `torchseq` runs, with `--steps` capped at
  STEPS and its outputs in the fresh directory (`examples/` is reachable there). The lines run
  in this process, through the commands' `main` (what the installed console scripts call, tested
  in test_cli.py), which saves importing JAX and torch again for each of the ~25 lines. The
  install and test commands are what CI itself runs (.ci/run), so they are not run again here.
Blocks in other languages (output transcripts) are not run.
"""

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mktestdocs import grab_code_blocks

from parity_tests.helpers import MAINS

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STEPS = 5
RUN_BY_CI = ("pip install", "python -m pytest")  # the README's two commands: .ci/run runs them


def blocks(lang: str):
    for page in PAGES:
        for i, block in enumerate(grab_code_blocks(page.read_text(), lang=lang)):
            yield pytest.param(page, block, id=f"{page.relative_to(ROOT)}-{lang}-{i}")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files_before(page: Path, block: str) -> dict[str, str]:
    """The python blocks of `page` that name a file, up to `block`: {file name: text}."""
    files = {}
    for other in grab_code_blocks(page.read_text(), lang="python"):
        name = re.match(r"#\s*(\S+\.py)\s*\n", other)
        if name:
            files[name.group(1)] = other
    return files


@pytest.mark.parametrize("page,block", list(blocks("python")))
def test_python_block_runs(page, block, workdir):
    if re.match(r"#\s*\S+\.py\s*\n", block):
        return  # a file for the shell blocks: run through them
    result = subprocess.run([sys.executable, "-c", block], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}: the block failed:\n{block}\n{result.stderr[-3000:]}"


def _commands(block: str) -> list[list[str]]:
    commands = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or any(ci in line for ci in RUN_BY_CI):
            continue
        words = shlex.split(line)
        if words and words[0] in ("jaxseq", "torchseq"):
            if "--steps" in words:
                i = words.index("--steps")
                words[i + 1] = str(min(int(words[i + 1]), STEPS))
            elif len(words) > 1 and words[1] in ("train", "compare", "check", "sweep"):
                words += ["--steps", str(STEPS)]
            commands.append(words)
    return commands


@pytest.mark.parametrize("page,block", list(blocks("bash")))
def test_shell_block_runs(page, block, workdir):
    for name, text in _files_before(page, block).items():
        (workdir / name).write_text(text)
    for words in _commands(block):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = MAINS[words[0]](words[1:])
        assert code == 0, f"{page.name}: `{shlex.join(words)}` exited {code}:\n{err.getvalue()[-3000:]}"
