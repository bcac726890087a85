"""torch.optim in optax, step for step: every torch.optim optimizer (SGD, Adam, AdamW, RMSprop,
Adagrad, NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD, LBFGS), every torch.optim.lr_scheduler,
gradient clipping, and the optimizer and scheduler state both ways.

A torch training step is `loss.backward(); clip_(...); optimizer.step(); scheduler.step()`. Here it
is one optax transformation, `chain(gradients, groups)` (jaxseq.optim.chain):

  gradients  torch's `clip_grad_norm_` then `clip_grad_value_` (identity where off); with
             zero_grad=False, first the running sum of all gradients (PyTorch without `zero_grad()`,
             where clipping rewrites the stored sum) (jaxseq.optim.clipping);
  groups     one chain per param group: [negate if maximize] [+ wd * p (coupled decay)] direction
             [+ wd * p (decoupled decay: AdamW, NAdam/RAdam's decoupled_weight_decay)], then
             `-lr_t *` (jaxseq.optim.rules).

Almost every torch rule is `p <- p - lr_t * direction(g, state, p)` with a direction that does not
depend on the learning rate (AdamW's `p *= 1 - lr*wd` is `- lr * wd * p`; Adagrad's `lr / (1 + (t-1)
lr_decay)` moves the divisor into the direction), so the base learning rate is a value in the state
(`LearningRateState.base_lr`, set with `with_learning_rate`) and one compiled program serves every
rate (`jaxseq sweep` vmaps over it). lr_t = schedule(epoch, base_lr), epoch = count //
steps_per_epoch (jaxseq.optim.rates). Rprop and ASGD take the rate otherwise (Rprop's lr is its first
step size; ASGD's eta = lr / (1 + lambd lr t) ** alpha): their transformation is the whole step and
holds the rate's state itself. Every transformation's update takes `value=loss` (optax's extra
arguments): ReduceLROnPlateau steps on it, the others ignore it. LBFGS evaluates the objective
several times a step, so it is not a transformation but a `ClosureOptimizer` (jaxseq.optim.lbfgs).

Which pieces are optax's, which are written here, and why. Measured against torch in float64 on the
seed's task (200 steps of an 8-unit LSTM), where the parity tests hold the loss at every step to a
relative 1e-9 and the final parameters to 1e-10:

  optax's    where its formula is torch's and only the rounding differs (the order of operations,
             and XLA fusing `a * b + c` into one rounding where torch rounds twice: about half of
             the momentum-buffer elements differ in the last bit; 200 steps' losses agree to 1e-13
             relative, except where the run itself amplifies rounding, as torch does a 1-ulp change
             of one weight):
             `scale_by_adam` (Adam, AdamW: `m_hat / (sqrt(v_hat) + eps)` for torch's
             `(lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps)`; `b1 m + (1 - b1) g` for torch's lerp),
             `scale_by_adamax` (Adamax: `max(b2 u, |g| + eps)`, `m / bc1 / u`),
             `scale_by_adadelta` (Adadelta: `sqrt(acc + eps) / sqrt(sq + eps) * g`, both averages
             with rho), `add_decayed_weights` (`g + wd * p`, and the decoupled form after the
             direction), `trace` (SGD and RMSprop momentum, `g + m * buf`), `scale_by_rms` and
             `scale_by_stddev` (RMSprop plain and centered, eps outside the root: `g * (1 / (sqrt(v)
             + eps))` for torch's `g / (sqrt(v) + eps)`), `clip` (`clip_grad_value_`), `scale(-1)`
             (maximize), `partition` (param groups), `inject_hyperparams` (OneCycleLR's and
             CyclicLR's cycled momentum or beta1), `set_to_zero` (parameters in no group).
  written    (jaxseq.optim.transforms, clipping, rates, lbfgs)
             `scale_by_learning_rate_schedule`: the base rate lives in the state and the schedule
             takes it as an argument (optax's schedules close over a constant);
             `dampen`: SGD's dampening, which `optax.trace` lacks (torch's first buffer is `g`, later
             ones add `(1 - dampening) g`);
             `scale_by_torch_amsgrad`: torch keeps the maximum of the raw second moment and divides
             it by sqrt(bc2) each step; `optax.scale_by_amsgrad` keeps the maximum of the
             bias-corrected one, another algorithm (relative difference in the loss up to 6.7);
             `scale_by_torch_adagrad`: torch adds eps after the root (`sqrt(sum) + eps`), optax's
             `scale_by_rss` inside it (`rsqrt(sum + eps)`; 5e-7 relative in the loss), and optax
             has no `lr_decay`;
             `scale_by_torch_nadam`: torch's NAdam is Dozat's, with the momentum schedule mu_t =
             b1 (1 - 0.96^(t momentum_decay) / 2) and its running product (kept in float32, as
             torch keeps it); `optax.nadam` is Adam with a constant-b1 Nesterov look-ahead;
             `scale_by_torch_radam`: torch adds eps to sqrt(v) before the bias correction
             (`sqrt(bc2) / (sqrt(v) + eps)`), `optax.scale_by_radam` to sqrt(v / bc2) (1e-6 relative
             in the loss), and rectifies where rho_t > 5, optax where >= 5;
             `torch_rprop`: torch's step sizes start at the first step's lr and are clamped every
             step; it keeps the masked gradient as `prev`; `optax.scale_by_rprop` keeps step *
             sign(g), does not clamp where the sign product is 0, and fixes its first step size;
             `torch_asgd`: optax has no averaged SGD (eta and mu in float32, as torch keeps them);
             `clip_by_total_norm`: torch scales by `min(max_norm / (norm + 1e-6), 1)`,
             `optax.clip_by_global_norm` by `max_norm / norm` (3e-6 relative in the loss);
             the schedules: torch's closed forms (`_get_closed_form_lr`) in jnp, with its order of
             operations and IEEE divisions (`_ieee_div`). torch steps them recursively in Python
             floats; the two agree to 3e-13 relative over 1000 steps. LambdaLR's and
             MultiplicativeLR's function (and CyclicLR's scale_fn) is the user's Python: it is
             evaluated on the host for every epoch before training into a table that the compiled
             step indexes (`LambdaLR.tabulate`; `from_torch(..., epochs=N)`), not traced;
             ReduceLROnPlateau: `optax.contrib.reduce_on_plateau` reduces after `patience` bad steps
             where torch waits for more than `patience`, bounds a relative scale where torch bounds
             the rate (min_lr, per group), lacks torch's eps and max mode; here it is torch's step in
             jnp, reading the loss from `update(..., value=loss)`;
             `LBFGS`: torch's loop, two-loop recursion and strong Wolfe line search in
             `lax.while_loop`s, evaluating the objective inside the compiled step (`optax.lbfgs` is
             a GradientTransformation with one gradient per update and a line search of its own).

>>> tx = build("adamw", 1e-3, schedule=parse_schedule("cosine", steps=1000), clip_grad_norm=1.0)
>>> opt_state = with_learning_rate(tx.init(params), 3e-4)
>>> tx = from_torch(optimizer, scheduler, model=model)  # steps as the torch pair does
>>> updates, opt_state = tx.update(grads, opt_state, params, value=loss)

The names below load on first use (as `jaxseq`'s): `jaxseq.app.config` imports the framework-free
option table (jaxseq.optim.options) without importing JAX.
"""

import importlib

_MODULES = {
    "options": ("OPTIMIZER_OPTIONS", "OPTIONS", "TORCH_CLASSES", "LBFGS_OPTIONS", "Rule", "rule"),
    "schedules": (
        "StepLR",
        "MultiStepLR",
        "ExponentialLR",
        "CosineAnnealingLR",
        "LinearLR",
        "ConstantLR",
        "PolynomialLR",
        "CosineAnnealingWarmRestarts",
        "OneCycleLR",
        "CyclicLR",
        "LambdaLR",
        "MultiplicativeLR",
        "SequentialLR",
        "ChainedScheduler",
        "ReduceLROnPlateau",
        "PerGroup",
        "SCHEDULES",
        "Schedule",
        "CHAINABLE",
        "SCHEDULE_SYNTAX",
        "check_schedule",
        "parse_schedule",
        "for_group",
    ),
    "rates": ("rate_fn", "momentum_fn", "LearningRateState", "PlateauState"),
    "transforms": (
        "scale_by_learning_rate_schedule",
        "dampen",
        "DampenState",
        "scale_by_torch_amsgrad",
        "TorchAmsgradState",
        "scale_by_torch_adagrad",
        "TorchAdagradState",
        "scale_by_torch_nadam",
        "TorchNAdamState",
        "scale_by_torch_radam",
        "torch_rprop",
        "TorchRpropState",
        "torch_asgd",
        "TorchAsgdState",
        "TORCH_SCALAR",
    ),
    "clipping": ("clip_by_total_norm", "accumulate_gradients", "AccumulateState", "gradient_stage"),
    "rules": ("rule_transformation",),
    "chain": ("transformation", "build", "make_optimizer", "config_schedule", "from_config"),
    "state": ("with_learning_rate", "param_names", "FROZEN"),
    "crossing": (
        "from_torch",
        "schedule_from_torch",
        "schedule_fn",
        "torch_optimizer",
        "torch_scheduler",
        "torch_from_config",
        "state_from_torch",
        "state_to_torch",
        "STATE_KEYS",
        "STEPPED",
    ),
    "lbfgs": ("ClosureOptimizer", "LBFGS", "LBFGSState"),
}
_EXPORTS = {name: f"jaxseq.optim.{module}" for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'jaxseq.optim' has no attribute {name!r}")


def __dir__():
    return __all__
