"""Train a PyTorch model and its JAX port side by side, step for step, and say where they part.

    >>> report = check(model, (x, y), optimizer=torch.optim.Adam(model.parameters(), 1e-3), loss="mse")
    >>> print(report.table())        # forward, gradients, loss at every step, parameters, steps/s
    >>> report.first_divergence      # None, or "diverges at step 3, first in `encoder.gru.bias_hh_l0` ..."

`check` converts the torch model (`jaxseq.from_torch`: `jaxseq.fx` for your own modules), or
loads its state_dict by name into a hand-written NNX port (`jax_model=`), then trains both from
the same weights on the same batches: torch with your optimizer (and scheduler, and
clip_grad_norm_), JAX with the optax transformation that steps as it (`jaxseq.optim.from_torch`,
built before torch's first step) in one jitted pure step, `train_step`. After every step it
compares every parameter and floating buffer on the host, so it can name the first step and
the first tensor (in `named_parameters()` order, then the buffers) past the dtype's tolerance
(`TOLERANCES`). Both models are trained in place (the JAX one is `report.jax_model`).

Modes, dropout, batch norm. Both models run in the torch model's mode, as you set it. Dropout
draws random masks, and JAX's draws are not torch's, so no two runs with active dropout agree
step for step: `check` refuses a model in training mode that drops out (nn.Dropout with p > 0,
F.dropout with training=True, recurrent dropout between layers) with an OptionError. Call
`model.eval()` (dropout off; BatchNorm then normalises with its running statistics, unchanged)
or build the model with dropout 0. In training mode BatchNorm1d normalises with the batch's
statistics and updates its running ones in both: the JAX step carries every non-parameter
variable from step to step, and the running statistics are compared after every step.

`jaxseq check FILE.py[:FUNCTION]` is `check_file`: FUNCTION (default `make`) returns the
keyword arguments of `check` as a dict. torch is imported inside the functions only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import json
import math
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxseq import outputs
from jaxseq.errors import ConversionError, OptionError, UserError, torch_required

__all__ = [
    "TOLERANCES",
    "LOSSES",
    "Tolerances",
    "ParityReport",
    "Divergence",
    "ModelFileError",
    "check",
    "check_file",
    "load_setup",
    "load_torch_weights",
    "train_step",
]


class ModelFileError(UserError, ValueError):
    """A model file for `jaxseq check` that cannot be used (missing, failing to import, without the
    function, the function failing or returning something else than the setup dict), or a model in
    it that does not convert. Exit status 2, as a bad option's."""

    exit_code = 2


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

# check's `loss` names -> the torch.nn.functional function (its defaults) and jaxseq.fx's version of it.
LOSSES = {
    "mse": "mse_loss",
    "cross_entropy": "cross_entropy",
    "nll": "nll_loss",
    "l1": "l1_loss",
    "smooth_l1": "smooth_l1_loss",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}
DEFAULT_STEPS = 100  # for one batch used at every step
SETUP_KEYS = ("model", "optimizer", "batches")  # what a model file's function must return
OPTIONAL_KEYS = ("loss", "scheduler", "clip_grad_norm", "steps", "jax_model")
PLOT_FLOOR = 1e-20  # a difference of exactly 0 is drawn here on the log axes


# ---------------------------------------------------------------------------------------------
# The report


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
    torch_steps_per_second: float  # over steps 2..S (step 1 alone when S = 1)
    jax_steps_per_second: float  # over steps 2..S: the compiled step (step 1 alone when S = 1)
    jax_first_step_seconds: float  # tracing and compiling the step, then running it
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
        lines = [f"{self.model} ({self.dtype}), {self.steps} steps in torch and JAX: {self.setup}"]
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
            f"steps/s: torch {self.torch_steps_per_second:.1f}, JAX {self.jax_steps_per_second:.1f} "
            f"(JAX's first step, compiling: {self.jax_first_step_seconds:.2f} s)"
        )
        problem = self.problem
        lines.append(f"ok: within the {self.dtype} tolerances" if problem is None else f"DIFFERS: {problem}")
        return "\n".join(lines)

    def plot(self, path) -> None:
        """Both loss curves; their relative difference and the largest parameter difference at every
        step; every parameter's final difference. PNG, written atomically."""
        plt = outputs.pyplot()
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
        ax_params.barh(y, floor(self.diffs_SxN[-1]), color="C2")
        ax_params.axvline(self.tolerances.param, color="C1", ls=":")
        ax_params.set_yticks(y, self.names, fontsize="small")
        ax_params.invert_yaxis()
        ax_params.set(xscale="log", xlabel="max |jax - torch|", title=f"after step {self.steps}")
        for ax in (ax_loss, ax_diff, ax_params):
            ax.grid(True, which="both", alpha=0.3)
        outputs.save_figure(Path(path), fig)

    def write(self, out: Path) -> None:
        """report.json and parity.png into the directory `out`, each written atomically."""
        outputs.write_text(out / "report.json", json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
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


# ---------------------------------------------------------------------------------------------
# The JAX step


def train_step(graphdef, tx, loss, static, state, arrays):
    """One torch training step in JAX, pure: (state, batch) -> (state, metrics).

    state: (params, rest, opt_state), `rest` every variable of the model that is not an nnx.Param
    (BatchNorm's running statistics, buffers, random-number state), updated by the forward as
    torch updates them. The batch is `arrays` (its arrays) with `static` (its structure and other
    leaves). metrics: the loss before the update, the outputs, the gradients (before clipping).
    """
    params, rest, opt_state = state
    inputs, targets = _split(_unflatten(static, arrays), loss)

    def objective(params):
        model = nnx.merge(graphdef, params, rest, copy=True)  # new variables, mutable in this trace
        out = model(*inputs)
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        return _jax_loss(loss, out, targets), (out, new_rest)

    (value, (out, rest)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, rest, opt_state), {"loss": value, "outputs": out, "grads": grads}


def _flatten(batch):
    """(arrays, static): a batch's arrays, and its structure with every other leaf (numbers, strings)."""
    leaves, treedef = jax.tree.flatten(batch)
    is_array = [isinstance(x, np.ndarray | jax.Array) for x in leaves]
    others = tuple((i, x) for i, (x, a) in enumerate(zip(leaves, is_array, strict=True)) if not a)
    return [x for x, a in zip(leaves, is_array, strict=True) if a], (treedef, len(leaves), others)


def _unflatten(static, arrays):
    treedef, n, others = static
    fixed = dict(others)
    it = iter(arrays)
    return jax.tree.unflatten(treedef, [fixed[i] if i in fixed else next(it) for i in range(n)])


def _split(batch, loss):
    """(inputs, targets): with a loss, the batch's last element is the targets; without, none."""
    return (tuple(batch), None) if loss is None else (tuple(batch[:-1]), batch[-1])


@functools.cache
def _jax_losses() -> dict:
    """{loss name: jaxseq.fx's registered version of torch.nn.functional's function}."""
    from jaxseq import fx

    by_name = {name: op.fn for op in fx.OPS for name in op.names}
    return {key: by_name[f"torch.nn.functional.{fn}"] for key, fn in LOSSES.items()}


def _jax_loss(loss, out, targets):
    if loss is None:
        return _own_loss(out)
    return _jax_losses()[loss](_prediction(out), targets)


def _torch_loss(loss, out, targets):
    import torch.nn.functional as F

    if loss is None:
        return _own_loss(out)
    return getattr(F, LOSSES[loss])(_prediction(out), targets)


def _own_loss(out):
    """The loss a model returns: a scalar, a dict's "loss", or a tuple's (list's) first element."""
    if isinstance(out, dict) and "loss" in out:
        out = out["loss"]
    elif isinstance(out, tuple | list) and out:
        out = out[0]
    return out


def _prediction(out):
    """What a named loss applies to: the output, or a tuple's (list's) first element (e.g. the
    output of (output, state))."""
    if isinstance(out, dict):
        raise OptionError("the model returns a dict: return its loss as the dict's 'loss' and pass loss=None")
    return out[0] if isinstance(out, tuple | list) and out else out


def _check_loss_value(value, loss) -> None:
    """A scalar tensor, as backward() needs; else OptionError saying what the model returned."""
    if getattr(value, "ndim", None) == 0 and getattr(value, "is_floating_point", lambda: False)():
        return
    shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
    if loss is None:
        raise OptionError(
            "with loss=None the model must return its loss: a scalar tensor, a dict with 'loss', or a tuple "
            f"whose first element is the loss; got {shape}. Or name a loss (one of {', '.join(LOSSES)})"
        )
    raise OptionError(f"loss {loss!r} gave shape {shape}, not a scalar: check the outputs' and targets' shapes")


# ---------------------------------------------------------------------------------------------
# check


def check(
    model,
    batches,
    *,
    optimizer,
    loss: str | None = None,
    scheduler=None,
    clip_grad_norm: float | None = None,
    steps: int | None = None,
    jax_model: nnx.Module | None = None,
) -> ParityReport:
    """Trains `model` (torch) and its JAX version from the same weights on the same batches with
    the same optimizer, and reports how far apart they are at every step.

    Args:
      model: a torch.nn.Module (float32 or float64), in the mode to train it in (see the module
        docstring on dropout). Converted with `jaxseq.from_torch` unless `jax_model` is given.
      batches: one tuple, used at every step, or a list of tuples, one per step (cycled when
        `steps` is larger); elements torch tensors or NumPy arrays (or nested tuples of them).
        With `loss`, a tuple is (inputs..., targets); without, every element is an input.
      optimizer: the torch.optim optimizer of `model`'s parameters, not yet stepped (or stepped:
        its state carries over); SGD, Adam, AdamW, RMSprop or Adagrad (`jaxseq.optim`).
      loss: one of LOSSES, applied as torch.nn.functional's (its defaults) to `model(*inputs)`
        (or its first element, for a tuple) and the targets; None when the model returns its loss
        (a scalar, a dict's "loss", or a tuple's first element).
      scheduler: a torch.optim.lr_scheduler of `optimizer`, stepped after every optimizer step.
      clip_grad_norm: torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm) before each step.
      steps: optimizer steps; default 100 for one tuple, len(batches) for a list.
      jax_model: a hand-written NNX port holding every state_dict entry as an nnx.Variable at the
        path of its key (`lstm.weight_ih_l0` at jax_model.lstm.weight_ih_l0), called as `model` is;
        torch's weights are loaded into it by name (`load_torch_weights`) and it is trained in place.
    Returns:
      a ParityReport: `.ok`, `.first_divergence`, `.table()`, `.to_dict()`, `.plot(path)`.
    Raises:
      OptionError for arguments that cannot work (with the reason), ConversionError for a model,
      optimizer or scheduler that does not convert (naming the op, layer or key).
    """
    from jaxseq.nn.model import enable_dtype

    named = _check_arguments(model, optimizer, loss, jax_model)
    dtype = _dtype_of(model)
    enable_dtype(jnp.dtype(dtype))
    jax_model = _jax_side(model, jax_model)
    # the torch names of what is compared after every step: parameters, then floating buffers
    buffers = [k for k, t in model.state_dict().items() if t.is_floating_point() and k not in named]
    names = (*named, *buffers)
    trained = {name for name in named if isinstance(_walk(jax_model, name), nnx.Param)}
    run = _train_both(model, jax_model, batches, steps, optimizer, scheduler, clip_grad_norm, loss, names, trained)
    state_dict = model.state_dict()
    return ParityReport(
        model=type(model).__name__,
        setup=_describe(optimizer, scheduler, clip_grad_norm, loss),
        dtype=dtype,
        tolerances=TOLERANCES[dtype],
        names=names,
        parameters=len(named),
        untrained=tuple(name for name in named if name not in trained),
        shapes={name: tuple(state_dict[name].shape) for name in names},
        jax_model=jax_model,
        **run,
    )


def _check_arguments(model, optimizer, loss, jax_model) -> dict:
    """The model's named parameters, once the arguments are checked (OptionError naming the first wrong one)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise OptionError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise OptionError(f"optimizer must be a torch.optim optimizer; got {type(optimizer).__name__}")
    if loss is not None and loss not in LOSSES:
        raise OptionError(f"loss must be one of {', '.join(LOSSES)} or None (the model returns its loss); got {loss!r}")
    if jax_model is not None and not isinstance(jax_model, nnx.Module):
        raise OptionError(f"jax_model must be a flax.nnx.Module; got {type(jax_model).__name__}")
    named = dict(model.named_parameters())
    frozen = [name for name, p in named.items() if not p.requires_grad]
    if frozen:
        raise OptionError(f"parameter `{frozen[0]}` has requires_grad=False, which check does not support")
    return named


def _jax_side(model, jax_model):
    """`jax_model` holding the torch model's weights (converted with `jaxseq.from_torch` when None),
    in its mode; refuses training-mode dropout."""
    from jaxseq import convert
    from jaxseq.nn import set_training

    dropout = _active_dropout(model)
    if jax_model is None:
        jax_model = convert.from_torch(model)
        dropout = dropout or _traced_dropout(model, jax_model)
    else:
        load_torch_weights(jax_model, model)
        set_training(jax_model, model.training)
    if dropout is not None:
        raise OptionError(
            f"the model is in training mode with dropout ({dropout}): torch and JAX draw different masks, so they "
            "cannot agree step for step; call model.eval() or set the dropout to 0"
        )
    return jax_model


def _jax_training(model, jax_model, optimizer, scheduler, clip_grad_norm, loss):
    """(the jitted JAX step, its state (params, other variables, optimizer state)): the optimizer
    converted from the torch one, before torch takes a step."""
    from jaxseq import optim

    named = dict(model.named_parameters())
    groups = optimizer.param_groups
    in_groups = {id(p) for g in groups for p in g["params"]}
    names_needed = len(groups) > 1 or in_groups != {id(p) for p in named.values()} or bool(optimizer.state)
    tx_model = model if names_needed else None
    tx = optim.from_torch(optimizer, scheduler, model=tx_model, clip_grad_norm=clip_grad_norm)
    graphdef, params, rest = nnx.split(jax_model, nnx.Param, ...)
    opt_state = optim.state_from_torch(optimizer, scheduler, params=params, model=tx_model)
    step_fn = jax.jit(functools.partial(train_step, graphdef, tx, loss), static_argnums=0)
    return step_fn, (params, rest, opt_state)


def _train_both(model, jax_model, batches, steps, optimizer, scheduler, clip_grad_norm, loss, names, trained) -> dict:
    """Both trainings, step by step, and the differences after each: the ParityReport's run fields."""
    import torch

    named = dict(model.named_parameters())
    device = next(iter(named.values())).device if named else torch.device("cpu")
    schedule, steps = _schedule(batches, steps, loss)
    torch_batches = [_to_torch(b, device) for b in schedule]
    numpy_batches = [_flatten(_to_numpy(b)) for b in schedule]
    where = _paths(jax_model, names)

    step_fn, state = _jax_training(model, jax_model, optimizer, scheduler, clip_grad_norm, loss)

    torch_losses, jax_losses, diffs = [], [], []
    torch_seconds, jax_seconds = [], []
    output_diffs = grad_diffs = None
    with jax.default_matmul_precision("highest"):
        for k in range(steps):
            i = k % len(schedule)
            start = time.perf_counter()
            try:
                t_out, t_loss, t_grads = _torch_step(
                    model, optimizer, scheduler, clip_grad_norm, loss, torch_batches[i], record=k == 0
                )
            except UserError:
                raise
            except Exception as e:  # the user's model, loss or scheduler on the user's batch
                raise OptionError(f"the torch training step {k + 1} raised {_one_line(e)}") from e
            torch_seconds.append(time.perf_counter() - start)

            arrays, static = numpy_batches[i]
            start = time.perf_counter()
            state, metrics = step_fn(static, state, arrays)
            jax.block_until_ready(state)
            jax_seconds.append(time.perf_counter() - start)

            if k == 0:
                output_diffs = _output_diffs(t_out, jax.device_get(metrics["outputs"]))
                grads = dict(nnx.to_flat_state(jax.device_get(metrics["grads"])))
                grad_diffs = {
                    name: _max_abs(
                        grads[where[name]][...] if name in trained else np.zeros_like(t_grads[name]), t_grads[name]
                    )
                    for name in named
                }
            torch_losses.append(t_loss)
            jax_losses.append(float(metrics["loss"]))
            diffs.append(_tensor_diffs(model, state, names, where))

    nnx.update(jax_model, state[0], state[1])
    return dict(
        output_diffs=output_diffs,
        grad_diffs=grad_diffs,
        torch_losses=np.array(torch_losses),
        jax_losses=np.array(jax_losses),
        diffs_SxN=np.array(diffs).reshape(steps, len(names)),
        torch_steps_per_second=_rate(torch_seconds),
        jax_steps_per_second=_rate(jax_seconds),
        jax_first_step_seconds=jax_seconds[0],
    )


def _torch_step(model, optimizer, scheduler, clip_grad_norm, loss, batch, *, record: bool):
    """One step of a torch training loop: (outputs, loss, {name: gradient}) where `record`, else
    (None, loss, None). The loss is checked to be a scalar."""
    import torch

    inputs, targets = _split(batch, loss)
    model.zero_grad(set_to_none=True)
    out = model(*inputs)
    t_out = jax.tree.map(_numpy_of, _torch_tree(out)) if record else None
    value = _torch_loss(loss, out, targets)
    _check_loss_value(value, loss)
    value.backward()
    grads = None
    if record:
        grads = {
            name: np.zeros(tuple(p.shape)) if p.grad is None else p.grad.detach().cpu().numpy().copy()
            for name, p in model.named_parameters()
        }
    if clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return t_out, value.item(), grads


def _tensor_diffs(model, state, names, where) -> list[float]:
    """Max abs difference of each named torch tensor from its JAX variable, after a step."""
    params, rest, _ = jax.device_get(state)
    flat = dict(nnx.to_flat_state(params)) | dict(nnx.to_flat_state(rest))
    tensors = model.state_dict()
    return [_max_abs(flat[where[name]][...], tensors[name].detach().cpu().numpy()) for name in names]


def _max_abs(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b), initial=0.0)) if not (np.isnan(a).any() or np.isnan(b).any()) else math.nan


def _rate(seconds: list[float]) -> float:
    later = seconds[1:] or seconds
    return len(later) / sum(later) if sum(later) > 0 else math.inf


def _output_diffs(torch_out, jax_out) -> dict[str, float]:
    """{output leaf: max abs difference}; a leaf only one side has differs by infinity."""
    expected, actual = dict(_leaves(torch_out)), dict(_leaves(jax_out))
    return {name: _max_abs(actual[name], expected[name]) if name in actual else math.inf for name in expected} | {
        name: math.inf for name in actual if name not in expected
    }


def _leaves(tree, name="output"):
    """[(name, leaf)] of a nested output (tuples, lists, dicts), in order."""
    if isinstance(tree, dict):
        return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{name}[{key!r}]")]
    if isinstance(tree, tuple | list):
        return [leaf for i, value in enumerate(tree) for leaf in _leaves(value, f"{name}[{i}]")]
    return [(name, tree)]


def _torch_tree(out):
    """A torch output with tuples (NamedTuples, PackedSequence) as plain tuples, for naming leaves."""
    if isinstance(out, dict):
        return {k: _torch_tree(v) for k, v in out.items()}
    if isinstance(out, tuple | list):
        return type(out)(map(_torch_tree, out)) if type(out) in (tuple, list) else tuple(map(_torch_tree, out))
    return out


def _numpy_of(x):
    return x.detach().cpu().numpy().copy() if hasattr(x, "detach") else np.asarray(x)


def _describe(optimizer, scheduler, clip_grad_norm, loss) -> str:
    """The setup in words, e.g. `AdamW(lr=0.01), CosineAnnealingLR, clip_grad_norm=1.0, loss cross_entropy`,
    with the first param group's options that are not torch's defaults."""
    from jaxseq import optim

    name = {cls: n for n, cls in optim.TORCH_CLASSES.items()}.get(type(optimizer).__name__)
    group = optimizer.param_groups[0]
    defaults = optim.OPTIONS.get(name, {})
    options = [f"lr={group.get('initial_lr', group['lr']):g}"]
    options += [f"{k}={group[k]}" for k, v in defaults.items() if k in group and group[k] != v]
    parts = [f"{type(optimizer).__name__}({', '.join(options)})"]
    if len(optimizer.param_groups) > 1:
        parts[0] += f" in {len(optimizer.param_groups)} param groups"
    if scheduler is not None:
        parts.append(type(scheduler).__name__)
    if clip_grad_norm is not None:
        parts.append(f"clip_grad_norm={clip_grad_norm}")
    parts.append(f"loss {loss}" if loss is not None else "the model's own loss")
    return ", ".join(parts)


def _dtype_of(model) -> str:
    """float64, or float32 where any floating tensor is float32 (the wider tolerance)."""
    dtypes = {str(t.dtype).removeprefix("torch.") for t in model.state_dict().values() if t.is_floating_point()}
    if dtypes - {"float32", "float64"}:
        raise OptionError(
            f"dtype {', '.join(sorted(dtypes - {'float32', 'float64'}))}: only float32 and float64 compare"
        )
    return "float32" if "float32" in dtypes else "float64"


def _schedule(batches, steps, loss) -> tuple[list, int]:
    """(the distinct batches, steps): one tuple for every step, or a list of tuples, one per step."""
    if isinstance(batches, tuple):
        schedule, default = [batches], DEFAULT_STEPS
    elif isinstance(batches, Sequence) and not isinstance(batches, str | bytes) and len(batches) > 0:
        kinds = {type(b).__name__ for b in batches if not isinstance(b, tuple | list)}
        if kinds:
            raise OptionError(
                f"batches is a list holding {', '.join(sorted(kinds))}: a list holds one tuple per step "
                "(inputs..., targets); pass one tuple to use it at every step"
            )
        schedule, default = list(batches), len(batches)
    else:
        raise OptionError(
            "batches must be one tuple (inputs..., targets), used at every step, or a non-empty list of such "
            f"tuples, one per step; got {type(batches).__name__}"
        )
    if loss is not None and any(len(b) < 2 for b in schedule):
        raise OptionError(f"with loss={loss!r} a batch is (inputs..., targets): at least two elements")
    if loss is None and any(len(b) < 1 for b in schedule):
        raise OptionError("a batch is a tuple of the model's inputs; got an empty one")
    steps = default if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise OptionError(f"steps must be an integer >= 1; got {steps!r}")
    return schedule, int(steps)


def _to_torch(batch, device):
    import torch

    def convert(x):
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.array(x, copy=True)).to(device)
        if isinstance(x, jax.Array):
            return torch.from_numpy(np.array(x, copy=True)).to(device)
        return x

    return _map_batch(convert, batch)


def _to_numpy(batch):
    """NumPy copies (JAX may alias NumPy memory, which torch could change in place)."""

    def convert(x):
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            return x.detach().cpu().numpy().copy()
        if isinstance(x, np.ndarray | jax.Array):
            return np.array(x, copy=True)
        return x

    return _map_batch(convert, batch)


def _map_batch(fn, x):
    if isinstance(x, dict):
        return {k: _map_batch(fn, v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return tuple(_map_batch(fn, v) for v in x)
    return fn(x)


def _active_dropout(model) -> str | None:
    """The first module of `model` that drops out in training mode (p > 0), in words; or None."""
    import torch

    for path, m in model.named_modules():
        if not m.training:
            continue
        where = f"`{path}`" if path else "the model"
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            return f"{type(m).__name__}(p={m.p}) at {where}"
        if isinstance(m, torch.nn.RNNBase) and m.dropout > 0 and m.num_layers > 1:
            return f"{type(m).__name__}(dropout={m.dropout}) at {where}"
    return None


def _traced_dropout(model, jax_model) -> str | None:
    """F.dropout with p > 0 and training=True in the train-mode graph of a converted model."""
    from jaxseq import fx

    if not model.training or not isinstance(jax_model, fx.TracedModule):
        return None
    signature = inspect.signature(fx.dropout)
    for ins in jax_model.fx_programs[1]:
        if isinstance(ins.target, fx.Op) and ins.target.random:
            bound = signature.bind_partial(*ins.args, **dict(ins.kwargs)).arguments
            p, training = bound.get("p", 0.5), bound.get("training", True)
            if training is not False and not (isinstance(p, int | float) and p == 0):
                return f"F.dropout at {ins.where}"
    return None


# ---------------------------------------------------------------------------------------------
# Hand-written ports: torch's weights by name


def _walk(root, key: str):
    obj = root
    for part in key.split("."):
        obj = obj[int(part)] if part.isdigit() and not hasattr(obj, part) else getattr(obj, part)
    return obj


def _paths(jax_model, names) -> dict[str, tuple]:
    """{torch name: the path of its variable in the split states} (one path for a shared variable)."""
    canonical = {id(v): path for path, v in nnx.iter_graph(jax_model) if isinstance(v, nnx.Variable)}
    return {name: canonical[id(_walk(jax_model, name))] for name in names}


def load_torch_weights(jax_model: nnx.Module, model) -> None:
    """Sets every state_dict entry of the torch `model` into the nnx.Variable of `jax_model` at the
    path its key names (`encoder.gru.weight_ih_l0`), in torch's dtype, checking that every key has
    a variable there, of the same shape and floating dtype, and that every nnx.Param of
    `jax_model` is one of them. ConversionError names the first key at fault."""
    seen = set()
    for key, t in model.state_dict().items():
        try:
            variable = _walk(jax_model, key)
        except (AttributeError, IndexError, KeyError, TypeError):
            variable = None
        if not isinstance(variable, nnx.Variable):
            raise ConversionError(
                f"the JAX model has no variable at `{key}`, which the torch state_dict has (shape {tuple(t.shape)}): "
                "a port holds every torch tensor at the path of its key"
            )
        value = t.detach().cpu().numpy().copy()
        current = np.shape(variable[...])
        if current != value.shape:
            raise ConversionError(f"`{key}`: torch's shape is {value.shape}, the JAX model's {current}")
        current_dtype = jnp.asarray(variable[...]).dtype
        if t.is_floating_point():
            if current_dtype != value.dtype:
                raise ConversionError(f"`{key}`: torch's dtype is {value.dtype}, the JAX model's {current_dtype}")
            variable.set_value(jnp.asarray(value))
        else:
            variable.set_value(jnp.asarray(value, current_dtype))
        seen.add(id(variable))
    for path, v in nnx.iter_graph(jax_model):
        if isinstance(v, nnx.Param) and id(v) not in seen:
            key = ".".join(map(str, path))
            raise ConversionError(f"the JAX model's parameter `{key}` is not in the torch state_dict")


# ---------------------------------------------------------------------------------------------
# Model files: `jaxseq check FILE.py[:FUNCTION]`


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


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _line_in(e: BaseException, path: Path) -> str:
    """` (line N)`: the last frame of the traceback in the user's file; "" where none is."""
    target = str(path.resolve())
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if str(Path(f.filename).resolve()) == target]
    return f" (line {lines[-1]})" if lines else ""
