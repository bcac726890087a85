"""The package's layering (docs/architecture.md), as import-linter checks it: no layer imports a
higher one, the library never imports torchseq, no import circles; and no benchmark or example
imports a test module."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"import-linter's contracts (pyproject.toml) are broken:\n{result.stdout}{result.stderr}"


def test_benchmarks_and_examples_import_no_test_module():
    for path in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("examples/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [n for n in names if n.split(".")[0] == "parity_tests"]
            assert not bad, f"{path.relative_to(ROOT)} imports the test module {bad[0]}"
