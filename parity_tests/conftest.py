"""Test-wide settings: float64 available, full-precision matmuls, TF32 off, torch on one thread.

torch runs on one intra-op thread: on a small machine torch's and XLA's thread pools otherwise
fight over the cores (one test took 258 s instead of 8.7 s under load). XLA's threads are left
as they are. Benchmarks (benchmarks/) measure each framework at its best thread count instead.
"""

import jax

# x64 must be on before any float64 array exists; float32 tests ask for float32 explicitly.
jax.config.update("jax_enable_x64", True)
# Parity on GPU/TPU needs true float32 matmuls in both frameworks (no TF32 / bf16 passes).
jax.config.update("jax_default_matmul_precision", "highest")

try:
    import torch
except ImportError:  # the parity tests need torch; test_no_torch checks jaxseq without it
    torch = None
else:
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# No persistent compilation cache in the test process. The CLI switches JAX's cache on for the
# whole process unless --no-cache, so the first in-process `train` would have every later test
# write its programs into ~/.cache/jaxseq/xla (1801 files, 21 MB in one run, 2026-12-01); here
# that switch does nothing. (The suite's time did not change measurably: 667 s with the cache,
# 708 s without, one run each on a noisy machine.)
import jaxseq.app.training  # noqa: E402 (after the settings above)

jaxseq.app.training.enable_compilation_cache = lambda directory=None: None
