"""The same run in both frameworks, from the same initial weights, side by side.

Needs torch. `compare(config)` builds torchseq's model for `config.seed`, converts
it with `from_torch`, trains both, and measures how far the two runs drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from jaxseq.app.config import TrainConfig
from jaxseq.errors import torch_required


@dataclass
class Comparison:
    jax: object  # jaxseq.app.training.TrainResult
    torch: object  # torchseq.train.TorchResult
    max_abs_param_diff: float  # max over all final parameters of |jax - torch|

    @property
    def rel_loss_diff(self) -> np.ndarray:
        """|loss_jax - loss_torch| / |loss_torch|, step by step."""
        return np.abs(self.jax.losses - self.torch.losses) / np.abs(self.torch.losses)

    @property
    def max_rel_loss_diff(self) -> float:
        return float(np.max(self.rel_loss_diff))


def compare(config: TrainConfig, batch=None, *, progress: bool = False, weights=None) -> Comparison:
    """Trains torchseq's model in torch, and its exact copy in JAX, on `batch` (Sequences), by
    default `load_sequences(config)`. The model holds `weights` (a NumPy state_dict, e.g. read
    from --init-from), else config.init_from's, else torchseq's initialisation for config.seed."""
    try:
        import torchseq
        from torchseq.model import from_state_dict
        from torchseq.train import init_model
    except ImportError:
        raise torch_required("compare") from None
    from jaxseq.app.task import load_sequences
    from jaxseq.app.training import train
    from jaxseq.port.convert import from_torch, to_torch_state_dict

    batch = load_sequences(config) if batch is None else batch
    if weights is not None:
        t_model = from_state_dict(weights)
    else:
        t_model = init_model(config, batch.x.shape[-1], batch.y.shape[-1])
    j_result = train(config, model=from_torch(t_model), batch=batch, progress=progress)
    t_result = torchseq.train(config, model=t_model, batch=batch, progress=progress)
    j_params = to_torch_state_dict(j_result.model)
    t_params = {k: v.detach().cpu().numpy() for k, v in t_result.model.state_dict().items()}
    return Comparison(
        jax=j_result,
        torch=t_result,
        max_abs_param_diff=float(max(np.max(np.abs(j_params[k] - t_params[k])) for k in t_params)),
    )


def summary(c: Comparison, config: TrainConfig) -> dict:
    """What `jaxseq compare` writes to summary.json."""

    def section(result, compile_seconds):
        return {
            "final_loss": float(result.losses[-1]),
            "steps_per_second": result.steps_per_second,
            "wall_seconds": compile_seconds + result.run_seconds,
        }

    return {
        "jax": {
            **section(c.jax, c.jax.compile_seconds),
            "compile_seconds": c.jax.compile_seconds,
            "platform": c.jax.platform,
        },
        "torch": section(c.torch, 0.0),
        "max_rel_loss_diff": c.max_rel_loss_diff,
        "max_abs_param_diff": c.max_abs_param_diff,
        "speed_ratio": c.jax.steps_per_second / c.torch.steps_per_second,
        "config": dataclasses.asdict(config),
    }


def table(c: Comparison, config: TrainConfig) -> str:
    """The side-by-side table `jaxseq compare` prints."""
    rows = [
        ("final loss", f"{c.jax.losses[-1]:.6e}", f"{c.torch.losses[-1]:.6e}"),
        ("steps/s", f"{c.jax.steps_per_second:,.0f}", f"{c.torch.steps_per_second:,.0f}"),
        ("wall time (s)", f"{c.jax.compile_seconds + c.jax.run_seconds:.2f}", f"{c.torch.run_seconds:.2f}"),
        ("compile time (s)", f"{c.jax.compile_seconds:.2f}", "-"),
    ]
    lines = [f"{'':<18}{'jaxseq':>16}{'torchseq':>16}"] + [f"{a:<18}{b:>16}{t:>16}" for a, b, t in rows]
    lines.append(f"speed ratio jaxseq/torchseq: {c.jax.steps_per_second / c.torch.steps_per_second:.1f}x")
    lines.append(f"max relative loss difference over {config.steps} steps: {c.max_rel_loss_diff:.3e}")
    lines.append(f"max absolute final parameter difference: {c.max_abs_param_diff:.3e}")
    if not config.zero_grad:
        fixed = "without zero_grad (the original bug): both frameworks accumulate gradients"
        lines.append(f"{fixed}; final losses {c.jax.losses[-1]:.3e} (jax) and {c.torch.losses[-1]:.3e} (torch)")
    return "\n".join(lines)


def plot(path, c: Comparison, config: TrainConfig) -> None:
    """Both loss curves (log scale), and their relative difference below."""
    from jaxseq.files import pyplot, save_figure

    steps = np.arange(1, config.steps + 1)
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(2, 1))
    top.plot(steps, c.jax.losses, label="jaxseq")
    top.plot(steps, c.torch.losses, "--", label="torchseq")
    top.set(ylabel="loss", yscale="log", title=f"same initial weights, {config.optimizer} lr {config.lr:g}")
    top.legend()
    bottom.plot(steps, np.maximum(c.rel_loss_diff, 1e-18))
    bottom.set(xlabel="step", ylabel="|jax - torch| / torch", yscale="log")
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    save_figure(path, fig)
