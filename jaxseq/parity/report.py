"""What `check` measured, and how it is shown: the ParityReport (its verdict, the table `jaxseq
check` prints, report.json, parity.png) and the tolerances per dtype."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np
from flax import nnx

from jaxseq import files

@dataclasses.dataclass(frozen=True)
class Tolerances:
    """How far the JAX run may be from torch's and still count as the same run."""

    forward: float  # every output leaf of the first forward, before training: max abs difference
    gradient: float  # every parameter's gradient at the first step: max abs difference
    loss: float  # the loss at every step: |jax - torch| / |torch|
    param: float  # every parameter and floating buffer after every step: max abs difference


# Per dtype, those of the parity tests (parity_tests/helpers.py): float64 rounds only (the two
# frameworks order and fuse operations differently, 1e-16 per operation, amplified by training);
# float32's rounding is 1e-7 per operation, and 100 steps of training amplify it to about 1e-4.
TOLERANCES = {
    "float64": Tolerances(forward=1e-12, gradient=1e-10, loss=1e-9, param=1e-8),
    "float32": Tolerances(forward=1e-5, gradient=1e-4, loss=1e-3, param=1e-3),
}

PLOT_FLOOR = 1e-20  # a difference of exactly 0 is drawn here on the log axes


@dataclasses.dataclass(frozen=True)
class Divergence:
    """The first step after which a tensor's difference passes its tolerance."""

    step: int  # the optimizer step (from 1) after which it differs
    name: str  # torch's name of the parameter or buffer
    difference: float  # max |jax - torch| over its elements
    tolerance: float

    def __str__(self):
        return (
            f"diverges at step {self.step}, first in `{self.name}`: "
            f"max |jax - torch| = {self.difference:.3g} > {self.tolerance:g}"
        )

    def to_dict(self) -> dict:
        return {**_jsonable(dataclasses.asdict(self)), "message": str(self)}


@dataclasses.dataclass(frozen=True, eq=False)
class ParityReport:
    """What `check` measured. Steps count from 1; the loss of step k is computed before its update
    (as `loss.item()` in a torch loop), the parameters of step k after it."""

    model: str  # the torch model's class
    setup: str  # optimizer, scheduler, clipping, loss, in words
    dtype: str  # "float64" or "float32": picks `tolerances`
    tolerances: Tolerances
    names: tuple[str, ...]  # named_parameters() order, then the floating buffers of the state_dict
    parameters: int  # how many of `names` are parameters
    untrained: tuple[str, ...]  # torch parameters the JAX model holds as other variables than nnx.Param
    shapes: dict  # name -> shape
    output_diffs: dict  # output leaf ("output", "output[0]", "output['loss']") -> max abs difference, step 1
    grad_diffs: dict  # parameter -> max abs difference of its gradient at step 1 (before clipping)
    torch_losses: np.ndarray  # (S,)
    jax_losses: np.ndarray  # (S,)
    diffs_SxN: np.ndarray  # max abs difference of each of `names` after each step
    torch_steps_per_second: float  # 1 / the median step time over steps 2..S (step 1 alone when S = 1)
    jax_steps_per_second: float  # 1 / the median time of the steps that did not compile
    jax_first_step_seconds: float  # tracing and compiling the step, then running it
    training: bool = False  # the mode both models trained in
    jax_compiles: int = 1  # steps whose batch shapes compiled the JAX step anew (the first included)
    jax_compile_seconds: float = 0.0  # those steps' time, all together
    jax_model: nnx.Module = dataclasses.field(repr=False, default=None)  # trained, as the torch model is

    @property
    def steps(self) -> int:
        return len(self.torch_losses)

    @property
    def loss_rel_diffs(self) -> np.ndarray:
        """|jax - torch| / |torch| at every step (the absolute difference where torch's loss is 0)."""
        err = np.abs(self.jax_losses - self.torch_losses)
        scale = np.abs(self.torch_losses)
        return np.where(scale > 0, err / np.where(scale > 0, scale, 1), err)

    @property
    def max_rel_loss_diff(self) -> float:
        return _max(self.loss_rel_diffs)

    @property
    def param_diffs(self) -> dict[str, float]:
        """Every parameter's (and floating buffer's) max abs difference after the last step."""
        return dict(zip(self.names, map(float, self.diffs_SxN[-1]), strict=True))

    @property
    def max_abs_param_diff(self) -> float:
        """The largest of `param_diffs`."""
        return _max(self.diffs_SxN[-1])

    @property
    def first_divergence(self) -> Divergence | None:
        """The first step after which a parameter (or buffer) passes `tolerances.param`, and the
        first such one in `names` order; None when every one stays within it at every step."""
        bad = ~(self.diffs_SxN <= self.tolerances.param)  # NaN counts as diverged
        if not bad.any():
            return None
        step = int(np.argmax(bad.any(axis=1)))
        i = int(np.argmax(bad[step]))
        return Divergence(step + 1, self.names[i], float(self.diffs_SxN[step, i]), self.tolerances.param)

    @property
    def problem(self) -> str | None:
        """One line on what differs, the cause first: the forward before training, then the first
        diverging parameter, the gradients, the loss; None when everything is within tolerance."""
        tol = self.tolerances
        forward = _first_past(self.output_diffs, tol.forward)
        if forward is not None:
            name, d = forward
            return (
                f"the forward differs before training, first in `{name}`: max |jax - torch| = {d:.3g} > {tol.forward:g}"
            )
        if self.first_divergence is not None:
            return str(self.first_divergence)
        grad = _first_past(self.grad_diffs, tol.gradient)
        if grad is not None:
            name, d = grad
            return f"the gradients differ at step 1, first of `{name}`: max |jax - torch| = {d:.3g} > {tol.gradient:g}"
        rel = self.loss_rel_diffs
        if not (rel <= tol.loss).all():
            k = int(np.argmax(~(rel <= tol.loss)))
            return f"the loss differs at step {k + 1}: relative difference {rel[k]:.3g} > {tol.loss:g}"
        return None

    @property
    def ok(self) -> bool:
        """Forward, gradients, the loss at every step and every tensor after every step within tolerance."""
        return self.problem is None

    def to_dict(self) -> dict:
        """JSON-able (NaN and infinities as None)."""
        divergence = self.first_divergence
        return _jsonable(
            {
                "ok": self.ok,
                "problem": self.problem,
                "model": self.model,
                "setup": self.setup,
                "dtype": self.dtype,
                "steps": self.steps,
                "tolerances": dataclasses.asdict(self.tolerances),
                "max_rel_loss_diff": self.max_rel_loss_diff,
                "max_abs_param_diff": self.max_abs_param_diff,
                "first_divergence": None if divergence is None else divergence.to_dict(),
                "output_diffs": self.output_diffs,
                "grad_diffs": self.grad_diffs,
                "param_diffs": self.param_diffs,
                "untrained_in_jax": list(self.untrained),
                "max_abs_param_diff_per_step": self.diffs_SxN.max(axis=1, initial=0.0).tolist(),
                "loss_rel_diffs": self.loss_rel_diffs.tolist(),
                "losses": {"torch": self.torch_losses.tolist(), "jax": self.jax_losses.tolist()},
                "steps_per_second": {"torch": self.torch_steps_per_second, "jax": self.jax_steps_per_second},
                "jax_first_step_seconds": self.jax_first_step_seconds,
                "jax_compiles": self.jax_compiles,
                "jax_compile_seconds": self.jax_compile_seconds,
                "training": self.training,
            }
        )

    def table(self) -> str:
        """The report as printed by `jaxseq check`."""
        tol = self.tolerances
        outputs_ = len(self.output_diffs)
        rows = [
            (f"forward before training ({outputs_} output{'s' * (outputs_ != 1)})", _max(self.output_diffs.values()),
             "abs", tol.forward),
            (f"gradients at step 1 ({len(self.grad_diffs)} parameters)", _max(self.grad_diffs.values()), "abs",
             tol.gradient),
            (f"loss at every step ({self.steps})", self.max_rel_loss_diff, "rel", tol.loss),
            (f"parameters{' and buffers' * (len(self.names) > self.parameters)} after every step",
             _max(self.diffs_SxN.ravel()), "abs", tol.param),
        ]  # fmt: skip
        mode = "training mode" if self.training else "eval mode"
        lines = [f"{self.model} ({self.dtype}, {mode}), {self.steps} steps in torch and JAX: {self.setup}"]
        if self.steps < 2:
            lines.append("note: one step shows the gradients, not training: give 2 or more steps (steps=, --steps)")
        lines.append(f"{'':<44}{'max difference':>18}{'tolerance':>11}")
        for what, d, kind, bound in rows:
            lines.append(f"{what:<44}{_num(d):>14} {kind}{bound:>11g}  {'ok' if d <= bound else 'DIFFERS'}")
        width = max(len("parameter"), *map(len, self.names))
        lines.append("")
        lines.append(f"{'parameter':<{width}}  {'shape':<14}{'gradient, step 1':>18}{f'after step {self.steps}':>18}")
        final = self.param_diffs
        for i, name in enumerate(self.names):
            grad = _num(self.grad_diffs[name]) if i < self.parameters else "(buffer)"
            lines.append(f"{name:<{width}}  {str(tuple(self.shapes[name])):<14}{grad:>18}{_num(final[name]):>18}")
        if self.untrained:
            lines.append(f"not trained in JAX (held as another variable than nnx.Param): {', '.join(self.untrained)}")
        lines.append("")
        lines.append(
            f"steps/s (medians): torch {self.torch_steps_per_second:.1f}, JAX {self.jax_steps_per_second:.1f}; "
            f"JAX compiled {self.jax_compiles} time{'s' * (self.jax_compiles != 1)} "
            f"({self.jax_compile_seconds:.2f} s, not counted; one per new batch shape)"
        )
        problem = self.problem
        lines.append(f"ok: within the {self.dtype} tolerances" if problem is None else f"DIFFERS: {problem}")
        return "\n".join(lines)

    def plot(self, path) -> None:
        """Both loss curves; their relative difference and the largest parameter difference at every
        step; every parameter's final difference. PNG, written atomically."""
        plt = files.pyplot()
        steps = np.arange(1, self.steps + 1)
        fig, (ax_loss, ax_diff, ax_params) = plt.subplots(1, 3, figsize=(16, max(4.0, 0.22 * len(self.names) + 1)))
        ax_loss.plot(steps, self.torch_losses, label="torch")
        ax_loss.plot(steps, self.jax_losses, "--", label="JAX")
        positive = np.all(self.torch_losses > 0) and np.all(self.jax_losses > 0)
        ax_loss.set(xlabel="step", ylabel="loss", yscale="log" if positive else "linear", title=f"{self.model}: loss")
        ax_loss.legend()
        floor = functools.partial(np.maximum, PLOT_FLOOR)
        ax_diff.plot(steps, floor(self.loss_rel_diffs), label="loss, relative")
        ax_diff.plot(steps, floor(self.diffs_SxN.max(axis=1, initial=0.0)), label="parameters, max abs")
        ax_diff.axhline(self.tolerances.loss, color="C0", ls=":", label=f"loss tolerance {self.tolerances.loss:g}")
        ax_diff.axhline(
            self.tolerances.param, color="C1", ls=":", label=f"parameter tolerance {self.tolerances.param:g}"
        )
        ax_diff.set(xlabel="step", ylabel=f"difference (0 drawn at {PLOT_FLOOR:g})", yscale="log",
                    title="JAX against torch")  # fmt: skip
        ax_diff.legend(fontsize="small")
        y = np.arange(len(self.names))
        within = self.diffs_SxN[-1] <= self.tolerances.param
        ax_params.barh(y, floor(self.diffs_SxN[-1]), color=np.where(within, "C2", "C3"))
        ax_params.axvline(self.tolerances.param, color="C1", ls=":")
        ax_params.set_yticks(y, self.names, fontsize="small")
        ax_params.invert_yaxis()
        ax_params.set(xscale="log", xlabel="max |jax - torch|", title=f"after step {self.steps}")
        for ax in (ax_loss, ax_diff, ax_params):
            ax.grid(True, which="both", alpha=0.3)
        files.save_figure(Path(path), fig)

    def write(self, out: Path) -> None:
        """report.json and parity.png into the directory `out`, each written atomically."""
        files.write_text(out / "report.json", json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        self.plot(out / "parity.png")


def _max(values) -> float:
    values = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return float("nan") if np.isnan(values).any() else float(values.max())


def _first_past(diffs: dict, bound: float):
    return next(((name, d) for name, d in diffs.items() if not d <= bound), None)


def _num(x: float) -> str:
    return "0" if x == 0 else f"{x:.2e}"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x

