"""Test-wide settings: float64 available, full-precision matmuls, TF32 off, strict promotion."""

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
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
