"""The whole torch step as one optax transformation, `chain(gradients, groups)`, and the ways to make
it: from a list of rules (`transformation`), from an optimizer's name and options (`build`), from a
run's TrainConfig (`from_config`)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import optax

from jaxseq.errors import ConversionError
from jaxseq.optim.clipping import gradient_stage
from jaxseq.optim.options import Rule, refuse, rule
from jaxseq.optim.rules import rule_transformation
from jaxseq.optim.schedules import PerGroup, check_schedule, for_group, parse_schedule
from jaxseq.optim.state import FROZEN, param_names


def transformation(
    groups: Sequence[tuple[Rule, Sequence[str] | None]],
    *,
    schedule=None,
    steps_per_epoch: int | None = None,
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    zero_grad: bool = True,
) -> optax.GradientTransformationExtraArgs:
    """The whole torch step: `chain(gradients, groups)` (package docstring).

    groups: (rule, parameter names) per param group; names None (one group only): every parameter.
    Names are `param_names` of the parameter pytree; parameters in no group are left unchanged.
    schedule: one for every group, or PerGroup with one per group. Its update takes `value=loss`
    (ReduceLROnPlateau reads it; the rest ignore it).
    """
    if schedule is not None:
        check_schedule(schedule)
    spe = 1 if steps_per_epoch is None else steps_per_epoch
    refuse([(not isinstance(spe, int) or spe < 1, f"steps_per_epoch must be an integer >= 1; got {steps_per_epoch}")])
    if isinstance(schedule, PerGroup) and len(schedule.schedules) != len(groups):
        raise ConversionError(f"{len(schedule.schedules)} per-group schedules for {len(groups)} param groups")
    gradients = gradient_stage(clip_grad_norm, clip_norm_type, clip_grad_value, zero_grad)
    rules = [rule_transformation(r, for_group(schedule, i), spe) for i, (r, _) in enumerate(groups)]
    if len(groups) == 1 and groups[0][1] is None:
        return optax.chain(gradients, rules[0])
    if any(names is None for _, names in groups):
        raise ConversionError(f"{len(groups)} param groups need their parameters' names")
    label_of = {name: f"group{i}" for i, (_, names) in enumerate(groups) for name in names}
    transforms = {f"group{i}": tx for i, tx in enumerate(rules)}
    transforms[FROZEN] = optax.set_to_zero()

    def labels(tree):
        return jax.tree.unflatten(jax.tree.structure(tree), [label_of.get(n, FROZEN) for n in param_names(tree)])

    return optax.chain(gradients, optax.partition(transforms, labels))


def build(
    name: str,
    lr: float,
    *,
    schedule=None,
    clip_grad_norm: float | None = None,
    clip_norm_type: float = 2.0,
    clip_grad_value: float | None = None,
    steps_per_epoch: int | None = None,
    zero_grad: bool = True,
    **options,
) -> optax.GradientTransformationExtraArgs:
    """torch.optim.<name>(params, lr, **options) with `schedule` (a Schedule) and clipping, as one
    optax transformation over every parameter. `options` are torch's keyword arguments of that
    optimizer (OPTIMIZER_OPTIONS[name]); one left None takes torch's default, one that `name` lacks
    raises OptionError. zero_grad=False sums the gradients over all steps first, as PyTorch does
    without `optimizer.zero_grad()`.

    >>> tx = build("sgd", 0.1, momentum=0.9, nesterov=True, schedule=StepLR(30), clip_grad_value=1.0)
    """
    return transformation(
        [(rule(name, lr, **options), None)],
        schedule=schedule,
        steps_per_epoch=steps_per_epoch,
        clip_grad_norm=clip_grad_norm,
        clip_norm_type=clip_norm_type,
        clip_grad_value=clip_grad_value,
        zero_grad=zero_grad,
    )


def make_optimizer(name: str, lr: float, zero_grad: bool = True) -> optax.GradientTransformationExtraArgs:
    """The trainer's optimizer: `build(name, lr)` with torch's defaults (Adam: betas 0.9/0.999, eps 1e-8).

    The learning rate is kept in the optimizer state (see `with_learning_rate`).
    zero_grad=False first sums the gradients over all steps, as PyTorch does without `zero_grad()`.
    """
    return build(name, lr, zero_grad=zero_grad)


# The run's optimizer from a TrainConfig (its --optimizer, options, --schedule, --clip-grad-norm), for
# both trainers: `from_config` for jaxseq, `torch_from_config` (jaxseq.optim.crossing) for torchseq.


def config_schedule(config):
    """The Schedule of --schedule over the run's steps, or None."""
    return None if config.schedule is None else parse_schedule(config.schedule, config.steps)


def from_config(config) -> optax.GradientTransformationExtraArgs:
    """The optax transformation of a run: `build` with the config's optimizer, options, schedule,
    --clip-grad-norm and --no-zero-grad."""
    return build(
        config.optimizer,
        config.lr,
        **config.optimizer_options(),
        schedule=config_schedule(config),
        clip_grad_norm=config.clip_grad_norm,
        zero_grad=config.zero_grad,
    )
