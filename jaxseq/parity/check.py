"""Train a PyTorch model and its JAX port side by side, step for step, and say where they part.

    >>> report = check(model, (x, y), optimizer=torch.optim.Adam(model.parameters(), 1e-3), loss="mse")
    >>> print(report.table())        # forward, gradients, loss at every step, parameters, steps/s
    >>> report.first_divergence      # None, or "diverges at step 3, first in `encoder.gru.bias_hh_l0` ..."

`check` converts the torch model (`jaxseq.from_torch(model, *first_inputs)`, captured with
torch.export), or loads its state_dict by name into a hand-written NNX port (`jax_model=`), then
trains both from the same weights on the same batches: torch with your optimizer (and scheduler,
and clip_grad_norm_), JAX with the optax transformation that steps as it
(`jaxseq.optim.from_torch`, built before torch's first step) in one jitted pure step,
`train_step`. The loss (a name, a torch loss module or function) is converted like the model.
After every step it compares every parameter and floating buffer on the host, so it can name the
first step and the first tensor (in `named_parameters()` order, then the buffers) past the
dtype's tolerance (`TOLERANCES`). Both models are trained in place (the JAX one is
`report.jax_model`).

Modes, dropout, batch norm. Both models run in the torch model's mode, as you set it. Dropout
draws random masks, and JAX's draws are not torch's, so no two runs with active dropout agree
step for step: `check` refuses a model in training mode that drops out with an OptionError. Call
`model.eval()` or build the model with dropout 0. In training mode BatchNorm normalises with the
batch's statistics and updates its running ones in both: the JAX step carries every
non-parameter variable from step to step, and the running statistics are compared after every step.

Carried state. With `hidden=` (the initial hidden state, as `model.init_hidden(batch)` gives),
each step calls `output, hidden = model(*inputs, hidden)`, takes the loss on `output`, and carries
`hidden`, detached, to the next step, as language-model loops do.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxseq.errors import ConversionError, OptionError, UserError
from jaxseq.errors import one_line as _one_line
from jaxseq.parity.report import TOLERANCES, ParityReport
from jaxseq.port.module import variable_at
from jaxseq.port.program import as_jax

# check's `loss` names -> the torch.nn.functional function (its defaults), converted like the model.
LOSSES = {
    "mse": "mse_loss",
    "cross_entropy": "cross_entropy",
    "nll": "nll_loss",
    "l1": "l1_loss",
    "smooth_l1": "smooth_l1_loss",
    "bce_with_logits": "binary_cross_entropy_with_logits",
}
DEFAULT_STEPS = 100  # for one batch used at every step


# ---------------------------------------------------------------------------------------------
# The JAX step


def train_step(graphdef, tx, loss, static, state, arrays):
    """One torch training step in JAX, pure: (state, batch) -> (state, metrics).

    state: (params, rest, opt_state, hidden), `rest` every variable of the model that is not an
    nnx.Param (BatchNorm's running statistics, buffers, frozen parameters, random-number state),
    updated by the forward as torch updates them; `hidden` the carried hidden state (None when not
    carried), passed as forward's last argument and replaced, without its gradient, by the one it
    returns. The batch is `arrays` (its arrays) with `static` (its structure and other leaves).
    metrics: the loss before the update, the outputs, the gradients (before clipping).
    A closure optimizer (LBFGS) evaluates the objective several times inside its step.
    """
    params, rest, opt_state, hidden = state
    inputs, targets = loss.split(_unflatten(static, arrays))

    def objective(params):
        model = nnx.merge(graphdef, params, rest, copy=True)  # new variables, mutable in this trace
        out = model(*inputs) if hidden is None else model(*inputs, hidden)
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        new_hidden = None
        if hidden is not None:
            out, new_hidden = out
            new_hidden = jax.lax.stop_gradient(new_hidden)
        return loss.jax(out, targets), (out, new_rest, new_hidden)

    if hasattr(tx, "step"):  # a closure optimizer (LBFGS), handed this first evaluation
        (value, (out, new_rest, new_hidden)), grads = jax.value_and_grad(objective, has_aux=True)(params)

        def value_and_grad(p):
            (v, _), g = jax.value_and_grad(objective, has_aux=True)(p)
            return v, g

        params, opt_state, _, _ = tx.step(value_and_grad, params, opt_state, first=(value, grads))
    else:
        (value, (out, new_rest, new_hidden)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params, value=value)
        params = optax.apply_updates(params, updates)
    state = (params, new_rest, opt_state, new_hidden)
    return state, {"loss": value, "outputs": out, "grads": grads}


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


class Loss:
    """The loss of a check, in both frameworks: torch's function (a name of LOSSES, a loss module
    such as nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1), any function of (output,
    target)), and its conversion, exported like the model; or the model's own loss (`spec` None).
    Hashable by identity: the jitted step takes it as a static argument."""

    def __init__(self, spec):
        import torch.nn.functional as F

        self.spec = spec
        self.own = spec is None
        if isinstance(spec, str):
            if spec not in LOSSES:
                raise OptionError(
                    f"loss must be one of {', '.join(LOSSES)}, a torch loss module or function, or None "
                    f"(the model returns its loss); got {spec!r}"
                )
            self.torch_fn = getattr(F, LOSSES[spec])
            self.description = f"loss {spec}"
        elif spec is None:
            self.torch_fn = None
            self.description = "the model's own loss"
        elif callable(spec):
            self.torch_fn = spec
            self.description = f"loss {_describe_callable(spec)}"
        else:
            raise OptionError(f"loss must be a name, a torch loss module or function, or None; got {type(spec).__name__}")
        self.converted = None

    def convert(self, prediction, target) -> None:
        """Exports the torch loss on examples of (prediction, target): torch tensors."""
        import torch

        from jaxseq.port.module import from_torch

        if self.own:
            return

        class LossModule(torch.nn.Module):
            def __init__(self, fn):
                super().__init__()
                self.fn = fn

            def forward(self, output, target):
                return self.fn(output, target)

        try:
            converted = from_torch(LossModule(self.torch_fn), prediction, target)
        except ConversionError as e:
            raise ConversionError(f"the loss ({self.description}): {e}") from None
        self.converted = nnx.split(converted)

    def jax(self, out, targets):
        if self.own:
            return _own_loss(out)
        graphdef, state = self.converted
        return nnx.merge(graphdef, state, copy=True)(_prediction(out), targets)

    def torch(self, out, targets):
        return _own_loss(out) if self.own else self.torch_fn(_prediction(out), targets)

    def split(self, batch) -> tuple[tuple, object]:
        """(inputs, targets): with a loss, the batch's last element is the targets; without, none."""
        return (tuple(batch), None) if self.own else (tuple(batch[:-1]), batch[-1])


def _describe_callable(fn) -> str:
    import torch

    if isinstance(fn, torch.nn.Module):
        return repr(fn)
    return getattr(fn, "__qualname__", type(fn).__name__)


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


def _check_loss_value(value, loss: Loss) -> None:
    """A scalar tensor, as backward() needs; else OptionError saying what the model returned."""
    if getattr(value, "ndim", None) == 0 and getattr(value, "is_floating_point", lambda: False)():
        return
    shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
    if loss.own:
        raise OptionError(
            "with loss=None the model must return its loss: a scalar tensor, a dict with 'loss', or a tuple "
            f"whose first element is the loss; got {shape}. Or name a loss (one of {', '.join(LOSSES)})"
        )
    raise OptionError(f"{loss.description} gave shape {shape}, not a scalar: check the outputs' and targets' shapes")


# ---------------------------------------------------------------------------------------------
# check


def check(
    model,
    batches,
    *,
    optimizer,
    loss=None,
    scheduler=None,
    clip_grad_norm: float | None = None,
    steps: int | None = None,
    jax_model: nnx.Module | None = None,
    hidden=None,
    progress: bool | None = None,
) -> ParityReport:
    """Trains `model` (torch) and its JAX version from the same weights on the same batches with
    the same optimizer, and reports how far apart they are at every step.

    Args:
      model: a torch.nn.Module (float32 or float64), in the mode to train it in (see the module
        docstring on dropout). Converted with `jaxseq.from_torch` on the first batch's inputs
        unless `jax_model` is given. Parameters with requires_grad=False stay as they are in both.
      batches: one tuple, used at every step, or any iterable of tuples (a list, a DataLoader),
        one per step (cycled when `steps` is larger); elements torch tensors or NumPy arrays (or
        nested tuples of them). With `loss`, a tuple is (inputs..., targets); without, every
        element is an input.
      optimizer: the torch.optim optimizer of `model`'s parameters, not yet stepped (or stepped:
        its state carries over); any of torch.optim's (`jaxseq.optim`), LBFGS included.
      loss: a name of LOSSES (torch.nn.functional's with its defaults), a torch loss module
        (nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)) or any function of (output,
        target), applied to `model(*inputs)` (or its first element, for a tuple) and the targets;
        None when the model returns its loss (a scalar, a dict's "loss", or a tuple's first element).
      scheduler: a torch.optim.lr_scheduler of `optimizer`, stepped after every optimizer step
        (ReduceLROnPlateau with that step's loss).
      clip_grad_norm: torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm) before each step.
      steps: optimizer steps; default 100 for one tuple, one per batch for several.
      jax_model: a hand-written NNX port holding every state_dict entry as an nnx.Variable at the
        path of its key (`lstm.weight_ih_l0` at jax_model.lstm.weight_ih_l0), called as `model` is;
        torch's weights are loaded into it by name (`load_torch_weights`) and it is trained in place.
      hidden: the initial hidden state (a tensor or a tuple of tensors) of a loop that carries it
        across batches: each step calls `output, hidden = model(*inputs, hidden)` and carries the
        new hidden state, detached, to the next step.
      progress: a progress bar on stderr (None: when stderr is a terminal).
    Returns:
      a ParityReport: `.ok`, `.first_divergence`, `.table()`, `.to_dict()`, `.plot(path)`.
    Raises:
      OptionError for arguments that cannot work (with the reason), ConversionError for a model,
      loss, optimizer or scheduler that does not convert (naming every op, the line, or the key).
    """
    named = _check_arguments(model, optimizer, jax_model)
    loss = Loss(loss)
    schedule, steps = _schedule(batches, steps, loss)
    jax_side = _jax_training(model, jax_model, schedule[0], optimizer, scheduler, clip_grad_norm, loss, hidden, steps)
    jax_model = jax_side.model
    # the torch names of what is compared after every step: parameters, then floating buffers
    buffers = [k for k, t in model.state_dict().items() if t.is_floating_point() and k not in named]
    names = (*named, *buffers)
    trained = {name for name in named if isinstance(variable_at(jax_model, name), nnx.Param)}
    run = _train_both(
        model, jax_side, schedule, steps, optimizer, scheduler, clip_grad_norm, loss, names, trained, hidden, progress
    )
    state_dict, dtype = model.state_dict(), _dtype_of(model)
    return ParityReport(
        model=type(model).__name__,
        setup=_describe(optimizer, scheduler, clip_grad_norm, loss, hidden),
        dtype=dtype,
        tolerances=TOLERANCES[dtype],
        names=names,
        parameters=len(named),
        untrained=tuple(name for name in named if name not in trained),
        shapes={name: tuple(state_dict[name].shape) for name in names},
        training=bool(model.training),
        jax_model=jax_model,
        **run,
    )


def _device(model):
    import torch

    tensor = next(iter(model.state_dict().values()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _example_prediction(jax_model, inputs, carried: bool):
    """A torch tensor shaped as what a named loss is applied to (the model's output, or its first
    element), from the converted model's shapes: the torch model is not run (it would step
    BatchNorm's running statistics)."""
    import torch

    graphdef, state = nnx.split(jax_model)
    arrays = jax.tree.map(as_jax, inputs)

    def forward(state, arrays):
        out = nnx.merge(graphdef, state, copy=True)(*arrays)
        return _prediction(out[0] if carried else out)

    shape = jax.eval_shape(forward, state, arrays)
    return torch.zeros(shape.shape, dtype=getattr(torch, np.dtype(shape.dtype).name))


def _check_arguments(model, optimizer, jax_model) -> dict:
    """The model's named parameters, once the arguments are checked (OptionError naming the first wrong one)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise OptionError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise OptionError(f"optimizer must be a torch.optim optimizer; got {type(optimizer).__name__}")
    if jax_model is not None and not isinstance(jax_model, nnx.Module):
        raise OptionError(f"jax_model must be a flax.nnx.Module; got {type(jax_model).__name__}")
    return dict(model.named_parameters())


@dataclasses.dataclass(frozen=True)
class JaxTraining:
    """The JAX side of a check before its first step (`jax_training`).

    model: the converted model (or the given `jax_model`), holding the torch model's weights.
    loss: the check's loss, converted.
    step: `train_step` with the model's graph, the optimizer and the loss bound; pure, not jitted:
      `step(static, state, arrays) -> (state, metrics)`; jit it with static_argnums=0. `check`
      runs it under `jax.default_matmul_precision("highest")` (float32 matmuls in full precision,
      as torch's): do the same to get its numbers on a GPU or TPU.
    state: the first state (params, other variables, optimizer state, hidden).
    """

    model: nnx.Module
    loss: Loss
    step: Callable
    state: tuple

    @staticmethod
    def arrays_of(batch) -> tuple[list, tuple]:
        """(arrays, static) of a batch tuple (torch tensors or arrays): `step`'s last and first arguments."""
        return _flatten(_to_numpy(batch))


def jax_training(
    model,
    batch,
    *,
    optimizer,
    loss=None,
    scheduler=None,
    clip_grad_norm: float | None = None,
    jax_model: nnx.Module | None = None,
    hidden=None,
    steps: int = DEFAULT_STEPS,
) -> JaxTraining:
    """What `check(model, batch, ...)` trains on the JAX side, before its first step: to time that
    step (benchmarks/zoo.py) or to go on training in JAX. Arguments as `check`'s; `batch` is one
    batch tuple, or check's `batches` (the first one sets the shapes the model is converted at);
    `steps` how far a schedule evaluated on the host is tabulated. The optimizer's state is read
    now: call it before torch steps."""
    _check_arguments(model, optimizer, jax_model)
    loss = Loss(loss)
    schedule, steps = _schedule(batch, steps, loss)  # the batch checked as check checks its batches
    return _jax_training(model, jax_model, schedule[0], optimizer, scheduler, clip_grad_norm, loss, hidden, steps)


def _jax_training(model, jax_model, batch, optimizer, scheduler, clip_grad_norm, loss, hidden, steps) -> JaxTraining:
    from jaxseq import optim
    from jaxseq.nn.model import enable_dtype

    enable_dtype(jnp.dtype(_dtype_of(model)))
    inputs, targets = loss.split(_to_torch(batch, _device(model)))
    example_inputs = inputs if hidden is None else (*inputs, hidden)
    jax_model = _jax_model(model, jax_model, example_inputs)
    if not loss.own:
        loss.convert(_example_prediction(jax_model, example_inputs, hidden is not None), targets)

    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    groups = optimizer.param_groups
    in_groups = {id(p) for g in groups for p in g["params"] if p.requires_grad}
    names_needed = len(groups) > 1 or in_groups != {id(p) for p in named.values()} or bool(optimizer.state)
    tx_model = model if names_needed else None
    # epochs: how far a host-evaluated schedule (LambdaLR's function) is tabulated
    tx = optim.from_torch(optimizer, scheduler, model=tx_model, clip_grad_norm=clip_grad_norm, epochs=steps + 1)
    if not hasattr(tx, "step"):
        tx = optax.with_extra_args_support(tx)
    graphdef, params, rest = nnx.split(jax_model, nnx.Param, ...)
    opt_state = optim.state_from_torch(optimizer, scheduler, params=params, model=tx_model, epochs=steps + 1)
    carried = None if hidden is None else jax.tree.map(as_jax, hidden)
    step = functools.partial(train_step, graphdef, tx, loss)
    return JaxTraining(model=jax_model, loss=loss, step=step, state=(params, rest, opt_state, carried))


def _jax_model(model, jax_model, inputs):
    """`jax_model` holding the torch model's weights (converted with `jaxseq.from_torch` on the
    first batch's inputs when None), in its mode; refuses training-mode dropout."""
    from jaxseq.nn import set_training
    from jaxseq.port.module import from_torch

    dropout = _active_dropout(model)
    if jax_model is None:
        jax_model = from_torch(model, *inputs)
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


def _train_both(
    model, jax_side, schedule, steps, optimizer, scheduler, clip_grad_norm, loss, names, trained, hidden, progress
) -> dict:
    """Both trainings, step by step, and the differences after each: the ParityReport's run fields."""
    import tqdm

    device = _device(model)
    torch_batches = [_to_torch(b, device) for b in schedule]
    numpy_batches = [JaxTraining.arrays_of(b) for b in schedule]
    where = _paths(jax_side.model, names)
    named = dict(model.named_parameters())

    step_fn, state = jax.jit(jax_side.step, static_argnums=0), jax_side.state
    t_hidden = hidden

    torch_losses, jax_losses, diffs = [], [], []
    torch_seconds, jax_seconds, compiled = [], [], []
    output_diffs = grad_diffs = None
    bar = tqdm.tqdm(total=steps, desc="check", unit="step", file=sys.stderr, disable=None if progress is None
                    else not progress, leave=False)
    with jax.default_matmul_precision("highest"), bar:
        for k in range(steps):
            i = k % len(schedule)
            start = time.perf_counter()
            try:
                t_out, t_loss, t_grads, t_hidden = _torch_step(
                    model, optimizer, scheduler, clip_grad_norm, loss, torch_batches[i], t_hidden, record=k == 0
                )
            except UserError:
                raise
            except Exception as e:  # the user's model, loss or scheduler on the user's batch
                raise OptionError(f"the torch training step {k + 1} raised {_one_line(e)}") from e
            torch_seconds.append(time.perf_counter() - start)

            arrays, static = numpy_batches[i]
            cache_before = _cache_size(step_fn)
            start = time.perf_counter()
            state, metrics = step_fn(static, state, arrays)
            jax.block_until_ready(state)
            jax_seconds.append(time.perf_counter() - start)
            compiled.append(_cache_size(step_fn) != cache_before or k == 0)

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
            bar.update(1)

    nnx.update(jax_side.model, state[0], state[1])
    jax_seconds, compiled = np.array(jax_seconds), np.array(compiled)
    return dict(
        output_diffs=output_diffs,
        grad_diffs=grad_diffs,
        torch_losses=np.array(torch_losses),
        jax_losses=np.array(jax_losses),
        diffs_SxN=np.array(diffs).reshape(steps, len(names)),
        torch_steps_per_second=_rate(torch_seconds[1:] or torch_seconds),
        jax_steps_per_second=_rate(list(jax_seconds[~compiled]) or list(jax_seconds)),
        jax_first_step_seconds=float(jax_seconds[0]),
        jax_compiles=int(compiled.sum()),
        jax_compile_seconds=float(jax_seconds[compiled].sum()),
    )


def _cache_size(step_fn) -> int:
    """How many programs the jitted step has compiled (one per batch structure and shapes)."""
    size = getattr(step_fn, "_cache_size", None)
    return size() if callable(size) else 0


def _torch_step(model, optimizer, scheduler, clip_grad_norm, loss, batch, hidden, *, record: bool):
    """One step of a torch training loop: (outputs, loss, {name: gradient}, hidden) where `record`,
    else (None, loss, None, hidden). The loss is checked to be a scalar; `hidden` (carried state)
    is the forward's new hidden state, detached."""
    import torch

    inputs, targets = loss.split(batch)
    state = {}

    def closure():
        optimizer.zero_grad(set_to_none=True)
        out = model(*inputs) if hidden is None else model(*inputs, hidden)
        if hidden is not None:
            out, state["hidden"] = out
        value = loss.torch(out, targets)
        _check_loss_value(value, loss)
        value.backward()
        state.setdefault("out", out)
        state.setdefault("value", value.item())
        if "grads" not in state:
            state["grads"] = {
                name: np.zeros(tuple(p.shape)) if p.grad is None else p.grad.detach().cpu().numpy().copy()
                for name, p in model.named_parameters()
            } if record else None
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        return value

    model.zero_grad(set_to_none=True)
    if isinstance(optimizer, torch.optim.LBFGS):
        optimizer.step(closure)
    else:
        closure()
        optimizer.step()
    if scheduler is not None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(state["value"])
        else:
            scheduler.step()
    t_out = jax.tree.map(_numpy_of, _torch_tree(state["out"])) if record else None
    new_hidden = None if hidden is None else _detach(state["hidden"])
    return t_out, state["value"], state["grads"], new_hidden


def _detach(tree):
    if isinstance(tree, tuple | list):
        return type(tree)(_detach(t) for t in tree)
    return tree.detach()


def _tensor_diffs(model, state, names, where) -> list[float]:
    """Max abs difference of each named torch tensor from its JAX variable, after a step."""
    params, rest = jax.device_get(state[:2])
    flat = dict(nnx.to_flat_state(params)) | dict(nnx.to_flat_state(rest))
    tensors = model.state_dict()
    return [_max_abs(flat[where[name]][...], tensors[name].detach().cpu().numpy()) for name in names]


def _max_abs(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b), initial=0.0)) if not (np.isnan(a).any() or np.isnan(b).any()) else math.nan


def _rate(seconds: list[float]) -> float:
    """Steps per second: 1 / the median step time (the machine is shared, so a mean would be noise)."""
    median = float(np.median(seconds))
    return 1 / median if median > 0 else math.inf


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


def _describe(optimizer, scheduler, clip_grad_norm, loss: Loss, hidden) -> str:
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
    parts.append(loss.description)
    if hidden is not None:
        parts.append("hidden state carried across steps")
    return ", ".join(parts)


def _dtype_of(model) -> str:
    """float64, or float32 where any floating tensor is float32 (the wider tolerance)."""
    dtypes = {str(t.dtype).removeprefix("torch.") for t in model.state_dict().values() if t.is_floating_point()}
    if dtypes - {"float32", "float64"}:
        raise OptionError(
            f"dtype {', '.join(sorted(dtypes - {'float32', 'float64'}))}: only float32 and float64 compare"
        )
    return "float32" if "float32" in dtypes else "float64"


def _schedule(batches, steps, loss: Loss) -> tuple[list, int]:
    """(the distinct batches, steps): one tuple for every step, or an iterable of tuples (a list, a
    DataLoader: its batches, read once), one per step."""
    if isinstance(batches, tuple):
        schedule, default = [batches], DEFAULT_STEPS
    elif isinstance(batches, Iterable) and not isinstance(batches, str | bytes | dict) and not hasattr(batches, "shape"):
        schedule = list(batches)
        kinds = {type(b).__name__ for b in schedule if not isinstance(b, tuple | list)}
        if kinds:
            raise OptionError(
                f"batches holds {', '.join(sorted(kinds))}: it holds one tuple per step (inputs..., targets); "
                "pass one tuple to use it at every step"
            )
        if not schedule:
            raise OptionError("batches is empty: it needs at least one tuple (inputs..., targets)")
        schedule, default = [tuple(b) for b in schedule], len(schedule)
    else:
        raise OptionError(
            "batches must be one tuple (inputs..., targets), used at every step, or an iterable of such "
            f"tuples (a list, a DataLoader), one per step; got {type(batches).__name__}"
        )
    if not loss.own and any(len(b) < 2 for b in schedule):
        raise OptionError(f"with {loss.description} a batch is (inputs..., targets): at least two elements")
    if loss.own and any(len(b) < 1 for b in schedule):
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
    """A random op (F.dropout with p > 0 and training=True, ...) in the converted model's graph;
    recurrent layers' dropout is read off the torch layers (`_active_dropout`)."""
    from jaxseq.port.module import ExportedModule
    from jaxseq.port.table import table

    if not model.training or not isinstance(jax_model, ExportedModule):
        return None
    for program in jax_model.port.programs:
        for node in program.nodes:
            if node.target == "aten.native_dropout.default" and (node.args[1] == 0 or node.args[2] is False):
                continue
            if node.target in ("aten.lstm.input", "aten.gru.input", "aten.rnn_tanh.input", "aten.rnn_relu.input"):
                continue  # recurrent dropout: _active_dropout has looked at the torch layers
            if node.target == "jaxseq.packed_rnn.default":
                continue
            if table()[node.target].random:
                return f"{node.target} at {node.where}"
    return None


# ---------------------------------------------------------------------------------------------
# Hand-written ports: torch's weights by name


def _paths(jax_model, names) -> dict[str, tuple]:
    """{torch name: the path of its variable in the split states} (one path for a shared variable)."""
    canonical = {id(v): path for path, v in nnx.iter_graph(jax_model) if isinstance(v, nnx.Variable)}
    return {name: canonical[id(variable_at(jax_model, name))] for name in names}


def load_torch_weights(jax_model: nnx.Module, model) -> None:
    """Sets every state_dict entry of the torch `model` into the nnx.Variable of `jax_model` at the
    path its key names (`encoder.gru.weight_ih_l0`), in torch's dtype, checking that every key has
    a variable there, of the same shape and floating dtype, and that every nnx.Param of
    `jax_model` is one of them. ConversionError names the first key at fault."""
    seen = set()
    for key, t in model.state_dict().items():
        try:
            variable = variable_at(jax_model, key)
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


