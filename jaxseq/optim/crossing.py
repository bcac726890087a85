"""PyTorch to JAX and back: the optax transformation that steps as a torch optimizer and scheduler
(`from_torch`), the torch objects of a framework-free rule and schedule (`torch_optimizer`,
`torch_scheduler`), and the optimizer and scheduler state both ways (`state_from_torch`,
`state_to_torch`). torch is imported inside these functions only."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxseq.errors import ConversionError, OptionError
from jaxseq.optim import lbfgs as L
from jaxseq.optim import schedules as S
from jaxseq.optim import transforms as T
from jaxseq.optim.chain import config_schedule, transformation
from jaxseq.optim.options import OPTIONS, TORCH_CLASSES, Rule, rule
from jaxseq.optim.rates import PlateauState, _restarts, momentum_fn, rate_fn, rate_now
from jaxseq.optim.state import (
    _groups_state,
    _map_pieces,
    _path_name,
    _pieces,
    _tree_by_name,
    _with_groups_state,
    rate_state,
)

# ---------------------------------------------------------------------------------------------
# Reading torch optimizers and schedulers


def _optimizer_name(optimizer) -> str:
    """The rule name of a torch optimizer of exactly one of the supported classes ("lbfgs" for LBFGS)."""
    import torch

    if type(optimizer) is torch.optim.LBFGS:
        return "lbfgs"
    for name, cls in TORCH_CLASSES.items():
        if type(optimizer) is getattr(torch.optim, cls):
            return name
    supported = ", ".join(f"torch.optim.{cls}" for cls in (*TORCH_CLASSES.values(), "LBFGS"))
    raise ConversionError(f"optimizer {type(optimizer).__name__} is not supported (only {supported})")


def _check_group(group: dict, index: int) -> None:
    """Refuses what the single-tensor step does not cover: tensor hyperparameters, differentiable, fused."""
    import torch

    for key, value in group.items():
        values = value if isinstance(value, tuple) else (value,)
        if key != "params" and any(isinstance(v, torch.Tensor) for v in values):
            raise ConversionError(f"param group {index}: {key} is a tensor; only Python numbers convert")
    for key in ("differentiable", "fused"):
        if group.get(key):
            raise ConversionError(f"param group {index}: {key}=True is not supported (only the single-tensor step)")


def _rule_from_group(optimizer, group: dict, index: int, base_lr: float) -> Rule:
    name = _optimizer_name(optimizer)
    if name == "adam" and group.get("decoupled_weight_decay"):
        name = "adamw"  # Adam(decoupled_weight_decay=True) is AdamW
    _check_group(group, index)
    if name in ("nadam", "asgd"):
        _check_scalar_dtype(name)
    try:
        return rule(name, base_lr, **{key: group[key] for key in OPTIONS[name]})
    except OptionError as e:
        raise ConversionError(f"param group {index}: {e}") from None


def _check_scalar_dtype(name: str) -> None:
    import torch

    if torch.get_default_dtype() != torch.float32:
        raise ConversionError(
            f"{TORCH_CLASSES[name]} under torch's default dtype {torch.get_default_dtype()}: its per-parameter "
            "scalars follow that dtype; jaxseq follows torch's default, float32"
        )


def _base_lrs(optimizer, scheduler) -> list[float]:
    """Each group's base rate: the lr before any scheduler (initial_lr); OneCycleLR's max_lr;
    CyclicLR's base_lr; ReduceLROnPlateau's current lr (it keeps no other)."""
    kind = None if scheduler is None else type(scheduler).__name__
    if kind == "OneCycleLR":
        return [float(g["max_lr"]) for g in optimizer.param_groups]
    if kind == "CyclicLR":
        return [float(b) for b in scheduler.base_lrs]
    key = "lr" if kind in (None, "ReduceLROnPlateau") else "initial_lr"
    return [float(g[key]) for g in optimizer.param_groups]


def _group_names(optimizer, model) -> list[list[str] | None]:
    """Each param group's parameter names: the group's own `param_names` (torch.optim given
    `named_parameters()`), else `model.named_parameters()`'s, else None for a single group."""
    groups = optimizer.param_groups
    by_id = None if model is None else {id(p): name for name, p in model.named_parameters()}
    names = []
    for i, group in enumerate(groups):
        if "param_names" in group:
            names.append(list(group["param_names"]))
        elif by_id is not None:
            missing = [j for j, p in enumerate(group["params"]) if id(p) not in by_id]
            if missing:
                raise ConversionError(f"param group {i}: parameter {missing[0]} is not among model.named_parameters()")
            names.append([by_id[id(p)] for p in group["params"]])
        elif len(groups) == 1:
            names.append(None)
        else:
            raise ConversionError(f"{len(groups)} param groups: pass model= to name their parameters")
    return names


def from_torch(
    optimizer,
    scheduler=None,
    *,
    model=None,
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
) -> optax.GradientTransformationExtraArgs | L.LBFGS:
    """The optax transformation that steps as `optimizer` (any torch.optim optimizer of
    OPTIMIZER_OPTIONS, any options, one rule per param group) with `scheduler` (any
    torch.optim.lr_scheduler, stepped once every `steps_per_epoch` optimizer steps) and torch's
    clip_grad_norm_ / clip_grad_value_ before each step. Its update takes `value=loss` (what
    ReduceLROnPlateau reads).

    torch.optim.LBFGS, which calls its closure several times a step, gives an `LBFGS` instead (a
    ClosureOptimizer: `init(params)`, `step(value_and_grad, params, state)`); it takes no clipping.

    model: the torch module, to name the parameters of several param groups (not needed where the
    groups hold `param_names`). The parameter pytree's `param_names` must be those names.
    epochs: how many scheduler steps to tabulate the user's function over (LambdaLR,
    MultiplicativeLR, CyclicLR's scale_fn). Anything else raises ConversionError naming it.
    """
    schedule = None if scheduler is None else schedule_from_torch(scheduler, epochs=epochs)
    bases = _base_lrs(optimizer, scheduler)
    if _optimizer_name(optimizer) == "lbfgs":
        if (clip_grad_norm, clip_grad_value) != (None, None):
            raise ConversionError("LBFGS: clip the gradients inside value_and_grad (torch: inside the closure)")
        _check_group(optimizer.param_groups[0], 0)
        return L.lbfgs_from_group(optimizer.param_groups[0], bases[0], schedule, steps_per_epoch or 1)
    names = _group_names(optimizer, model)
    rules = [_rule_from_group(optimizer, g, i, bases[i]) for i, g in enumerate(optimizer.param_groups)]
    return transformation(
        list(zip(rules, names, strict=True)),
        schedule=schedule,
        steps_per_epoch=steps_per_epoch,
        clip_grad_norm=clip_grad_norm,
        clip_norm_type=clip_norm_type,
        clip_grad_value=clip_grad_value,
    )


def schedule_from_torch(scheduler, *, epochs: int | None = None):
    """The Schedule of a torch.optim.lr_scheduler instance (PerGroup where its groups differ);
    ConversionError for other kinds. epochs: see `from_torch`."""
    from torch.optim import lr_scheduler

    kind = type(scheduler).__name__
    groups = scheduler.optimizer.param_groups
    if type(scheduler) is not getattr(lr_scheduler, kind, None) or kind not in {c.__name__ for c in S.SCHEDULES}:
        names = ", ".join(c.__name__ for c in S.SCHEDULES if c is not S.PerGroup)
        raise ConversionError(f"scheduler {kind} is not supported (only torch.optim.lr_scheduler's {names})")
    if kind in ("LambdaLR", "MultiplicativeLR"):
        tabulate, epochs = getattr(S, kind).tabulate, _epochs(kind, epochs)
        return _per_group([tabulate(fn, epochs) for fn in scheduler.lr_lambdas])
    if kind == "MultiStepLR":
        return _checked(S.MultiStepLR(tuple(sorted(scheduler.milestones.elements())), scheduler.gamma))
    if kind in ("SequentialLR", "ChainedScheduler"):
        subs = [schedule_from_torch(s, epochs=epochs) for s in scheduler._schedulers]

        def make(members):
            if kind == "SequentialLR":
                return S.SequentialLR(tuple(members), tuple(scheduler._milestones))
            return S.ChainedScheduler(tuple(members))

        if not any(isinstance(s, S.PerGroup) for s in subs):
            return _checked(make(subs))
        return _checked(S.PerGroup(tuple(make(S.for_group(s, i) for s in subs) for i in range(len(groups)))))
    if kind == "OneCycleLR":
        momenta = ("max_momentum", "base_momentum") if scheduler.cycle_momentum else ()
        for key in momenta:
            if len({g[key] for g in groups}) > 1:
                raise ConversionError(f"scheduler OneCycleLR: {key} differs between param groups")
        first, phases = groups[0], scheduler._schedule_phases
        return _checked(
            S.OneCycleLR(
                total_steps=scheduler.total_steps,
                pct_start=(phases[0]["end_step"] + 1) / scheduler.total_steps,
                anneal_strategy=scheduler._anneal_func_type,
                cycle_momentum=scheduler.cycle_momentum,
                base_momentum=first.get("base_momentum", 0.85),
                max_momentum=first.get("max_momentum", 0.95),
                div_factor=first["max_lr"] / first["initial_lr"],
                final_div_factor=first["initial_lr"] / first["min_lr"],
                three_phase=len(phases) == 3,
            )
        )
    if kind == "CyclicLR":
        return _per_group([_cyclic_of(scheduler, i, epochs) for i in range(len(groups))])
    if kind == "ReduceLROnPlateau":
        fields = {
            f.name: getattr(scheduler, f.name) for f in dataclasses.fields(S.ReduceLROnPlateau) if f.name != "min_lr"
        }
        return _per_group([S.ReduceLROnPlateau(**fields, min_lr=float(m)) for m in scheduler.min_lrs])
    cls = getattr(S, kind)
    return _checked(cls(**{f.name: getattr(scheduler, f.name) for f in dataclasses.fields(cls)}))


def schedule_fn(schedule, base_lr=None, *, steps_per_epoch: int = 1, epochs: int | None = None):
    """optax schedule `count -> lr`: the rate `schedule` gives at optimizer step `count` (from 0), the
    scheduler stepping once every `steps_per_epoch` optimizer steps.

    `schedule`: a Schedule, a torch scheduler (read by `schedule_from_torch`, with `epochs` for a
    tabulated one), or None (constant). `base_lr`: the rate it starts from (OneCycleLR: its max_lr;
    CyclicLR: its base_lr); by default the torch scheduler's first param group's.
    """
    if schedule is not None and not isinstance(schedule, S.SCHEDULES):
        if base_lr is None:
            base_lr = _base_lrs(schedule.optimizer, schedule)[0]
        schedule = S.for_group(schedule_from_torch(schedule, epochs=epochs), 0)
    if base_lr is None:
        raise OptionError("schedule_fn needs base_lr for a framework-free schedule")
    return rate_fn(schedule, base_lr, steps_per_epoch=steps_per_epoch)


def _epochs(kind: str, epochs: int | None) -> int:
    if epochs is None:
        raise ConversionError(
            f"scheduler {kind} calls a Python function: pass epochs= (how many scheduler steps to tabulate it over)"
        )
    return epochs


def _cyclic_of(scheduler, index: int, epochs: int | None) -> S.CyclicLR:
    """Group `index`'s CyclicLR. torch keeps total_size and step_ratio, not the two step sizes."""
    total, ratio = scheduler.total_size, scheduler.step_ratio
    up = round(total * ratio)
    if up / (up + (total - up)) != ratio:
        raise ConversionError(f"scheduler CyclicLR: step sizes {total * ratio}, {total * (1 - ratio)} are not integers")
    custom = scheduler._scale_fn_custom
    cycled = scheduler.cycle_momentum
    return S.CyclicLR(
        max_lr=float(scheduler.max_lrs[index]),
        step_size_up=up,
        step_size_down=round(total - up),
        mode=scheduler.mode,
        gamma=scheduler.gamma,
        cycle_momentum=cycled,
        base_momentum=float(scheduler.base_momentums[index]) if cycled else 0.8,
        max_momentum=float(scheduler.max_momentums[index]) if cycled else 0.9,
        scales=None
        if custom is None
        else S.CyclicLR.tabulate(custom, scheduler.scale_mode, _epochs("CyclicLR (scale_fn)", epochs), up, total - up),
    )


def _per_group(specs: list):
    """One schedule where every group's is the same, else PerGroup."""
    return _checked(specs[0] if all(s == specs[0] for s in specs) else S.PerGroup(tuple(specs)))


def _checked(spec):
    try:
        S.check_schedule(spec)
    except OptionError as e:
        raise ConversionError(f"scheduler {e}") from None
    return spec


# ---------------------------------------------------------------------------------------------
# Building torch objects from framework-free rules and schedules


def torch_optimizer(name: str, params, lr: float, **options):
    """torch.optim.<name>(params, lr, **options), options as `rule` takes them (None: torch's
    default), on the single-tensor code path (foreach=False) that this package follows."""
    import torch

    r = rule(name, lr, **options)
    return getattr(torch.optim, TORCH_CLASSES[name])(params, lr=lr, foreach=False, **r.torch_options)


def torch_scheduler(spec, optimizer):
    """The torch.optim.lr_scheduler for Schedule `spec` on `optimizer` (OneCycleLR's max_lr and
    CyclicLR's base_lr: each group's lr). A tabulated function becomes a lookup in its table."""
    from torch.optim import lr_scheduler

    S.check_schedule(spec)
    if isinstance(spec, S.SequentialLR):
        subs = [torch_scheduler(s, optimizer) for s in spec.schedulers]
        return lr_scheduler.SequentialLR(optimizer, subs, list(spec.milestones))
    if isinstance(spec, S.ChainedScheduler):
        return lr_scheduler.ChainedScheduler([torch_scheduler(s, optimizer) for s in spec.schedulers])
    specs = list(spec.schedules) if isinstance(spec, S.PerGroup) else [spec]
    per_group = [_torch_kwargs(s, optimizer) for s in specs]
    kwargs = {
        key: [kw[key] for kw in per_group] if any(kw[key] != per_group[0][key] for kw in per_group) else value
        for key, value in per_group[0].items()
    }
    return getattr(lr_scheduler, type(specs[0]).__name__)(optimizer, **kwargs)


def _torch_kwargs(spec, optimizer) -> dict:
    """The torch constructor's keyword arguments of one (group's) schedule."""
    if isinstance(spec, S.LambdaLR):
        return {"lr_lambda": lambda e, f=spec.factors: f[e]}
    if isinstance(spec, S.MultiplicativeLR):
        return {"lr_lambda": lambda e, f=spec.factors: f[e - 1]}
    kwargs = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    if isinstance(spec, S.MultiStepLR):
        kwargs["milestones"] = list(spec.milestones)
    if isinstance(spec, S.OneCycleLR):
        kwargs["max_lr"] = [g["lr"] for g in optimizer.param_groups]
    if isinstance(spec, S.CyclicLR):
        scales = kwargs.pop("scales")
        kwargs["base_lr"] = [g["lr"] for g in optimizer.param_groups]
        if scales is not None:
            kwargs.update(scale_fn=lambda e, s=scales: s[int(e)], scale_mode="iterations")
    return kwargs


def torch_from_config(config, params):
    """(torch optimizer, torch scheduler or None) of a run, for `params`: what `from_config` follows."""
    optimizer = torch_optimizer(config.optimizer, params, config.lr, **config.optimizer_options())
    schedule = config_schedule(config)
    return optimizer, None if schedule is None else torch_scheduler(schedule, optimizer)


# ---------------------------------------------------------------------------------------------
# The state both ways

# Which field of which optax state holds which torch per-parameter state (state_dict()["state"]);
# OVERRIDES where an optimizer names a field of the same state otherwise.
STATE_KEYS: dict[type, dict[str, str]] = {
    optax.ScaleByAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq"},
    T.TorchAmsgradState: {"mu": "exp_avg", "nu": "exp_avg_sq", "nu_max": "max_exp_avg_sq"},
    optax.TraceState: {"trace": "momentum_buffer"},
    optax.ScaleByRmsState: {"nu": "square_avg"},
    optax.ScaleByRStdDevState: {"mu": "grad_avg", "nu": "square_avg"},
    T.TorchAdagradState: {"sum": "sum"},
    T.TorchNAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq"},
    optax.ScaleByAdaDeltaState: {"e_g": "square_avg", "e_x": "acc_delta"},
    T.TorchRpropState: {"prev": "prev", "step_size": "step_size"},
    T.TorchAsgdState: {"ax": "ax"},
}
OVERRIDES = {"adamax": {optax.ScaleByAdamState: {"mu": "exp_avg", "nu": "exp_inf"}}}
# The per-group scalars that torch keeps once per parameter, as 0-d tensors of its scalar dtype.
SCALAR_KEYS: dict[type, dict[str, str]] = {
    T.TorchNAdamState: {"mu_product": "mu_product"},
    T.TorchAsgdState: {"eta": "eta", "mu": "mu"},
}
STEPPED = tuple(name for name in OPTIONS if name != "sgd")  # the optimizers whose torch state holds `step`


def _state_keys(name: str) -> dict[type, dict[str, str]]:
    return {**STATE_KEYS, **OVERRIDES.get(name, {})}


def _torch_groups(optimizer, model):
    """[(rule, names or None, [torch parameters])] per param group."""
    names = _group_names(optimizer, model)
    rules = [_rule_from_group(optimizer, g, i, float(g["lr"])) for i, g in enumerate(optimizer.param_groups)]
    return [(r, n, list(g["params"])) for r, n, g in zip(rules, names, optimizer.param_groups, strict=True)]


def _scheduler_epoch(scheduler) -> int | None:
    """The scheduler's epoch (ChainedScheduler keeps none of its own: its first member's)."""
    if scheduler is None:
        return None
    if type(scheduler).__name__ == "ChainedScheduler":
        return _scheduler_epoch(scheduler._schedulers[0])
    return scheduler.last_epoch


def _torch_count(states: list[dict], index: int, scheduler, steps_per_epoch: int, step: int | None) -> int:
    """Optimizer steps group `index` has taken: its `step` state; else `step`; else the scheduler's
    epoch times steps_per_epoch; else 0. At least 1 where it holds state (SGD's momentum buffer)."""
    if any(states) and not all(states):
        raise ConversionError(f"param group {index}: some parameters have optimizer state and some have none")
    steps = {int(s["step"]) for s in states if "step" in s}
    if len(steps) > 1:
        raise ConversionError(f"param group {index}: its parameters have taken different numbers of steps {steps}")
    if steps and step is not None and steps != {step}:
        raise ConversionError(f"param group {index} has taken {steps.pop()} steps, not step={step}")
    epoch = _scheduler_epoch(scheduler)
    if steps:
        count = steps.pop()
    elif step is not None:
        count = step
    else:
        count = max(0 if epoch is None else epoch * steps_per_epoch, int(any(states)))
    if epoch is not None and epoch != count // steps_per_epoch:
        raise ConversionError(
            f"scheduler at epoch {epoch} but param group {index} at step {count} ({steps_per_epoch} steps per epoch)"
        )
    return count


def state_from_torch(
    optimizer,
    scheduler=None,
    *,
    params,
    model=None,
    steps_per_epoch: int | None = None,
    step: int | None = None,
    epochs: int | None = None,
):
    """The state of `from_torch(optimizer, scheduler, model=model)` that continues where `optimizer`
    and `scheduler` are: every param group's step count, base rate and per-parameter buffers (Adam's
    exp_avg, exp_avg_sq, max_exp_avg_sq; SGD's momentum_buffer; RMSprop's square_avg,
    momentum_buffer, grad_avg; Adagrad's sum; NAdam's mu_product; Adamax's exp_inf; Adadelta's
    square_avg, acc_delta; Rprop's prev, step_size; ASGD's eta, mu, ax; LBFGS's history), each
    checked against its parameter's shape, and ReduceLROnPlateau's best, bad epochs and cooldown.

    params: the JAX parameter pytree (structure and names). A torch optimizer that has not stepped
    yet has no state: the result is then `init(params)`'s. SGD and LBFGS record no step count: pass
    `step` (the optimizer steps taken) where the scheduler's epoch does not tell it (steps_per_epoch
    > 1, mid-epoch) and dampening or a schedule depends on it.
    """
    spe = 1 if steps_per_epoch is None else steps_per_epoch
    tx = from_torch(optimizer, scheduler, model=model, steps_per_epoch=spe, epochs=epochs)
    if isinstance(tx, L.LBFGS):
        count = _torch_count([{}], 0, scheduler, spe, step)
        state = L.lbfgs_state_from_torch(tx, optimizer, params, _group_names(optimizer, model)[0], count)
        return state._replace(rate=_plateau_from_torch(state.rate, scheduler))
    opt_state = tx.init(params)
    groups = _groups_state(opt_state)
    new = {}
    for i, (r, names, tensors) in enumerate(_torch_groups(optimizer, model)):
        states = [optimizer.state.get(p, {}) for p in tensors]
        count = _torch_count(states, i, scheduler, spe, step)
        if names is None and any(states):
            raise ConversionError("the optimizer has per-parameter state: pass model= to name its parameters")
        by_name = {} if names is None else dict(zip(names, states, strict=True))
        new[f"group{i}"] = _map_pieces(groups[f"group{i}"], _filler(count, by_name, r, scheduler))
    return _with_groups_state(opt_state, new)


def _filler(count: int, by_name: dict, r: Rule, scheduler):
    keys = _state_keys(r.name)

    def fill(s):
        if not hasattr(s, "_fields"):
            return s
        if "count" in s._fields:
            s = s._replace(count=jnp.asarray(count, s.count.dtype))
        if isinstance(s, PlateauState):
            s = _plateau_from_torch(s, scheduler)
        for field, key in keys.get(type(s), {}).items():
            s = s._replace(**{field: _fill_tree(getattr(s, field), by_name, key, count, r)})
        for field, key in SCALAR_KEYS.get(type(s), {}).items():
            s = s._replace(**{field: _fill_scalar(getattr(s, field), by_name, key)})
        return s

    return fill


def _plateau_from_torch(s, scheduler):
    if not isinstance(s, PlateauState):
        return s
    return s._replace(
        best=jnp.asarray(float(scheduler.best), s.best.dtype),
        num_bad_epochs=jnp.asarray(scheduler.num_bad_epochs, jnp.int32),
        cooldown_counter=jnp.asarray(scheduler.cooldown_counter, jnp.int32),
    )


def _numpy(tensor) -> np.ndarray:
    # a copy: jnp.asarray of a tensor's NumPy view may share its memory on the CPU, and torch's
    # optimizer updates its state in place (Adagrad's `sum` exists from construction on)
    return np.array(tensor.detach().cpu().numpy(), copy=True)


def _fill_tree(tree, by_name: dict, key: str, count: int, r: Rule):
    def put(path, leaf):
        name = _path_name(path)
        state = by_name.get(name, {})  # {}: torch has not stepped (or one unnamed group without state)
        if key not in state:
            if state:
                raise ConversionError(f"{name}: the torch state has no {key!r} (optimizer {r.name}, step {count})")
            return leaf
        value = _numpy(state[key])
        if value.shape != leaf.shape:
            raise ConversionError(f"{name}: torch {key} has shape {value.shape}, the parameter {leaf.shape}")
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(put, tree)


def _fill_scalar(leaf, by_name: dict, key: str):
    """A per-group scalar from torch's per-parameter copies, which must agree."""
    values = {float(s[key]) for s in by_name.values() if key in s}
    if len(values) > 1:
        raise ConversionError(f"the torch state's {key!r} differs between the parameters of a group: {values}")
    return jnp.asarray(values.pop(), leaf.dtype) if values else leaf


def state_to_torch(
    opt_state,
    optimizer,
    scheduler=None,
    *,
    model=None,
    steps_per_epoch: int | None = None,
    epochs: int | None = None,
    params=None,
) -> None:
    """Loads `opt_state` (of `from_torch(optimizer, scheduler, model=model)`, or `build` with the same
    rule) into `optimizer` and `scheduler` through their `load_state_dict`, so that torch continues
    where JAX stopped: per-parameter buffers and `step`, each group's lr (and a cycled momentum) at
    that step, its base rate, and the scheduler's counters. (zero_grad=False's gradient sum is
    torch's `.grad`, not optimizer state, and is not carried over.) LBFGS's state is flat vectors
    in the JAX leaves' order: pass `params` (the JAX parameters) for it."""
    spe = 1 if steps_per_epoch is None else steps_per_epoch
    if _optimizer_name(optimizer) == "lbfgs":
        if params is None:
            raise ConversionError("LBFGS's state is flat vectors in the JAX leaves' order: pass params=")
        L.lbfgs_state_to_torch(opt_state, optimizer, params, _group_names(optimizer, model)[0])
        rates = [opt_state.rate]
    else:
        rates = _buffers_to_torch(opt_state, optimizer, model)
    schedule = None if scheduler is None else schedule_from_torch(scheduler, epochs=_epochs_for(rates, spe, epochs))
    sd = optimizer.state_dict()
    for i, rate in enumerate(rates):
        spec = S.for_group(schedule, i)
        count, base = int(rate.count), float(rate.base_lr)
        group = sd["param_groups"][i]
        group["lr"] = float(rate_now(rate, spec, spe))
        if isinstance(spec, S.OneCycleLR):
            group["max_lr"], group["initial_lr"] = base, base / spec.div_factor
            group["min_lr"] = group["initial_lr"] / spec.final_div_factor
        elif scheduler is not None and not isinstance(spec, S.ReduceLROnPlateau):
            group["initial_lr"] = base
        momentum = momentum_fn(spec, steps_per_epoch=spe)
        if momentum is not None and "betas" in group:
            group["betas"] = (float(momentum(count)), *group["betas"][1:])
        elif momentum is not None:
            group["momentum"] = float(momentum(count))
    optimizer.load_state_dict(sd)
    if scheduler is not None:
        epoch = int(rates[0].count) // spe
        last_lr = [g["lr"] for g in optimizer.param_groups]
        base = [float(r.base_lr) for r in rates]
        scheduler.load_state_dict(_scheduler_state(scheduler, epoch, last_lr, base, rates[0]))


def _epochs_for(rates, steps_per_epoch: int, epochs: int | None) -> int:
    """Enough epochs to tabulate a schedule up to the state's step."""
    return max(epochs or 0, int(rates[0].count) // steps_per_epoch + 1)


def _buffers_to_torch(opt_state, optimizer, model) -> list:
    """Writes every group's per-parameter buffers and `step` into `optimizer`; returns each group's
    rate state."""
    import torch

    groups = _groups_state(opt_state)
    sd = optimizer.state_dict()
    sd["state"] = {}
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    rates = []
    for i, (r, names, _) in enumerate(_torch_groups(optimizer, model)):
        pieces = _pieces(groups[f"group{i}"])
        rate = rate_state(groups[f"group{i}"])
        rates.append(rate)
        count = int(rate.count)
        keys = _state_keys(r.name)
        buffers = {  # torch key -> {parameter name -> array}
            key: _tree_by_name(getattr(s, field)) for s in pieces for field, key in keys.get(type(s), {}).items()
        }
        scalars = {key: getattr(s, field) for s in pieces for field, key in SCALAR_KEYS.get(type(s), {}).items()}
        if count > 0 and (buffers or r.name in STEPPED):
            if names is None:
                raise ConversionError("the optimizer state has per-parameter buffers: pass model= to name them")
            for name, index in zip(names, sd["param_groups"][i]["params"], strict=True):
                missing = [key for key, by_name in buffers.items() if name not in by_name]
                if missing:
                    raise ConversionError(f"{name}: no {missing[0]} in the JAX optimizer state")
                entry = {
                    key: torch.tensor(np.asarray(jax.device_get(by_name[name]))) for key, by_name in buffers.items()
                }
                entry.update({key: torch.tensor(float(v), dtype=scalar) for key, v in scalars.items()})
                if r.name in STEPPED:
                    entry["step"] = torch.tensor(float(count), dtype=scalar)
                sd["state"][index] = entry
    optimizer.load_state_dict(sd)
    return rates


def _scheduler_state(scheduler, epoch: int, last_lr: list, base: list, rate) -> dict:
    """`scheduler.state_dict()` as after `epoch` steps, with the optimizer's current rates."""
    sd = scheduler.state_dict()
    kind = type(scheduler).__name__
    if kind == "ChainedScheduler":
        sd["_schedulers"] = [_scheduler_state(s, epoch, last_lr, base, rate) for s in scheduler._schedulers]
        sd["_last_lr"] = list(last_lr)
        return sd
    sd.update(last_epoch=epoch, _last_lr=list(last_lr))
    if kind == "ReduceLROnPlateau":
        sd.update(best=float(rate.best), num_bad_epochs=int(rate.num_bad_epochs))
        sd.update(cooldown_counter=int(rate.cooldown_counter))
        return sd
    sd.update(_step_count=max(epoch, 0) + 1, _is_initial=False, _get_lr_called_within_step=False)
    if "base_lrs" in sd:
        sd["base_lrs"] = list(base)
    if kind == "CosineAnnealingWarmRestarts":
        spec = S.CosineAnnealingWarmRestarts(scheduler.T_0, scheduler.T_mult, scheduler.eta_min)
        t_cur, t_i = _restarts(spec, jnp.asarray(max(epoch, 0)))
        sd.update(T_cur=int(t_cur), T_i=int(t_i))
    if kind == "SequentialLR":
        milestones = list(sd["_milestones"])
        active = sum(m <= epoch for m in milestones)
        starts = [0, *milestones]
        subs = []
        for j, sub in enumerate(scheduler._schedulers):
            sub_epoch = starts[j + 1] - starts[j] - 1 if j < active else epoch - starts[j] if j == active else -1
            subs.append(_scheduler_state(sub, sub_epoch, last_lr, base, rate))
        sd["_schedulers"] = subs
    return sd
