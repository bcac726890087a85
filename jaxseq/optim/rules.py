"""One param group's torch update rule as an optax chain: [negate if maximize] [+ wd * p (coupled
decay)] direction [+ wd * p (AdamW's decoupled decay)] then -lr_t (Rprop and ASGD: their whole step)."""

from __future__ import annotations

import optax

from jaxseq.errors import OptionError
from jaxseq.optim import transforms as T
from jaxseq.optim.options import CYCLED_BETA1, CYCLED_MOMENTUM, Rule
from jaxseq.optim.rates import momentum_fn


def rule_transformation(r: Rule, schedule=None, steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """One param group's update: `r`'s torch rule, then -lr_t (see the package docstring). `schedule`
    is this group's (a PerGroup already resolved)."""
    momentum = momentum_fn(schedule, steps_per_epoch=steps_per_epoch)
    if momentum is not None and r.name not in CYCLED_MOMENTUM and r.name not in CYCLED_BETA1:
        raise OptionError(
            f"{type(schedule).__name__} with cycle_momentum needs an optimizer with momentum or betas, not {r.name}"
        )
    pieces = [optax.scale(-1.0)] if r.maximize else []
    decoupled = r.name == "adamw" or r.decoupled_weight_decay
    if r.weight_decay != 0 and not decoupled:
        pieces.append(optax.add_decayed_weights(r.weight_decay))
    b1 = momentum if momentum is not None else r.betas[0]
    if r.name == "sgd":
        if r.dampening != 0:
            pieces.append(T.dampen(r.dampening))
        if momentum is not None:
            pieces.append(_cycled(optax.trace, "decay", momentum, nesterov=r.nesterov))
        elif r.momentum != 0:
            pieces.append(optax.trace(r.momentum, nesterov=r.nesterov))
    elif r.name in ("adam", "adamw"):
        adam = T.scale_by_torch_amsgrad if r.amsgrad else optax.scale_by_adam
        pieces.append(_cycled(adam, "b1", b1, b2=r.betas[1], eps=r.eps))
    elif r.name == "rmsprop":
        rms = optax.scale_by_stddev if r.centered else optax.scale_by_rms
        pieces.append(rms(decay=r.alpha, eps=r.eps, initial_scale=0.0, eps_in_sqrt=False))
        if momentum is not None:
            pieces.append(_cycled(optax.trace, "decay", momentum))
        elif r.momentum != 0:
            pieces.append(optax.trace(r.momentum))
    elif r.name == "adagrad":
        pieces.append(T.scale_by_torch_adagrad(r.lr_decay, r.initial_accumulator_value, r.eps))
    elif r.name == "nadam":
        nadam = T.scale_by_torch_nadam
        pieces.append(_cycled(nadam, "b1", b1, b2=r.betas[1], eps=r.eps, momentum_decay=r.momentum_decay))
    elif r.name == "radam":
        pieces.append(_cycled(T.scale_by_torch_radam, "b1", b1, b2=r.betas[1], eps=r.eps))
    elif r.name == "adamax":
        pieces.append(_cycled(optax.scale_by_adamax, "b1", b1, b2=r.betas[1], eps=r.eps))
    elif r.name == "adadelta":
        pieces.append(optax.scale_by_adadelta(rho=r.rho, eps=r.eps))
    elif r.name == "rprop":
        return optax.chain(*pieces, T.torch_rprop(r.etas, r.step_sizes, r.lr, schedule, steps_per_epoch))
    elif r.name == "asgd":
        return optax.chain(*pieces, T.torch_asgd(r.lambd, r.alpha, r.t0, r.lr, schedule, steps_per_epoch))
    if r.weight_decay != 0 and decoupled:
        pieces.append(optax.add_decayed_weights(r.weight_decay))
    pieces.append(T.scale_by_learning_rate_schedule(r.lr, schedule, steps_per_epoch))
    return optax.chain(*pieces)


def _cycled(factory, name: str, value, **static) -> optax.GradientTransformation:
    """`factory(name=value, **static)`; where `value` is a schedule (a cycled momentum or beta1),
    through optax.inject_hyperparams so it follows the step count."""
    if not callable(value):
        return factory(**{name: value}, **static)
    return optax.inject_hyperparams(factory, static_args=tuple(static))(**{name: value}, **static)
