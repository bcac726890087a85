"""jaxseq imports, trains, converts and saves with torch made unimportable."""

import subprocess
import sys
import textwrap

BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)

    sys.meta_path.insert(0, BlockTorch())
    """
)


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_jaxseq_works_without_torch(tmp_path):
    proc = run_without_torch(
        """
        import jaxseq
        from jaxseq.app.config import TrainConfig
        result = jaxseq.train(TrainConfig(steps=20, hidden=8, chunk=10))
        assert len(result.losses) == 20 and result.losses[-1] < result.losses[0]
        state_dict = jaxseq.to_torch_state_dict(result.model)
        again = jaxseq.to_torch_state_dict(jaxseq.from_torch(state_dict))
        assert all((state_dict[k] == again[k]).all() for k in state_dict)
        assert "torch" not in sys.modules, "jaxseq imported torch"
        print("ok")
        """
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_cli_without_torch(tmp_path):
    code = """
        import sys
        from jaxseq.app.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    proc = run_without_torch(code, "train", "--steps", "10", "--hidden", "4", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "weights.safetensors").exists()
    proc = run_without_torch(code, "train", "--init-from-torch", "0", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--init-from-torch needs PyTorch" in proc.stderr, proc.stderr


def test_torch_commands_without_torch_say_how_to_install(tmp_path):
    """`torchseq train` and `jaxseq export --format pt` in a JAX-only install: one line saying to install
    a CPU build of torch (not the extra, which can pull a multi-gigabyte CUDA build)."""
    for module, args in (
        ("torchseq.cli", ["train", "--steps", "5", "--out", str(tmp_path / "t")]),
        ("jaxseq.app.cli", ["export", str(tmp_path), "--format", "pt", "--to", str(tmp_path / "w.pt")]),
    ):
        code = f"""
            import sys
            from {module} import main
            sys.exit(main(sys.argv[1:]))
            """
        proc = run_without_torch(code, *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "install a CPU build of torch" in proc.stderr, proc.stderr
        assert "jaxseq[torch]" not in proc.stderr, proc.stderr
