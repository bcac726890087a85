"""jaxseq.optim against torch.optim, float64 on the CPU: every optimizer but LBFGS
(test_optim_lbfgs.py) over a pairwise grid of its options with schedules and clipping (200 steps of
the seed's task, each update given `value=loss`), ReduceLROnPlateau stepped on those losses, several
param groups and per-group schedules, every torch.optim.lr_scheduler's rate over 1000 steps, the
optimizer and scheduler state carried across frameworks both ways, and the errors for what does not
convert."""

import dataclasses
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from jaxseq import optim
from jaxseq.errors import ConversionError, OptionError
from jaxseq.nn import Linear
from jaxseq.nn.recurrent import LSTM
from jaxseq.optim.state import _pieces
from parity_tests.helpers import assert_close

# Loss at every step of a 200-step trajectory, relative; final parameters, absolute (float64).
LOSS_RTOL = 1e-9
PARAM_ATOL = 1e-10
# A schedule's learning rate (and OneCycleLR's momentum) at every step, relative (float64).
LR_RTOL = 1e-12
# One compiled program for every rate (with_learning_rate) against one built for that rate: the same
# arithmetic, so the same bits.
SAME_PROGRAM_ATOL = 0.0
# The same update vmapped over rates, or run op by op: other programs, which may round differently.
BATCHED_RTOL = 1e-15
EAGER_RTOL = 1e-15

HIDDEN = 8
STEPS = 200
X_1x21x1 = np.linspace(0.0, 1.0, 21).reshape(1, 21, 1)  # the seed's x = 0, 0.05, ..., 1.0
Y_1x21x1 = X_1x21x1 + 0.1


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(1, HIDDEN, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN, 1)

    def forward(self, x_BxTx1):
        return self.linear(self.lstm(x_BxTx1)[0])


class Net(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.lstm = LSTM(1, HIDDEN, batch_first=True, param_dtype=jnp.float64, rngs=rngs)
        self.linear = Linear(HIDDEN, 1, param_dtype=jnp.float64, rngs=rngs)

    def __call__(self, x_BxTx1):
        return self.linear(self.lstm(x_BxTx1)[0])


def torch_model(seed: int = 0) -> TorchNet:
    torch.manual_seed(seed)
    return TorchNet().double()


def jax_twin(t_model):
    """(graphdef, params) of a Net holding `t_model`'s weights, copied by name."""
    graphdef, params = nnx.split(Net())
    weights = {k: v.detach().numpy().copy() for k, v in t_model.state_dict().items()}
    leaves, treedef = jax.tree.flatten(params)
    copied = [jnp.asarray(weights[name]) for name in optim.param_names(params)]
    assert [a.shape for a in copied] == [a.shape for a in leaves], "torch and JAX shapes differ"
    return graphdef, jax.tree.unflatten(treedef, copied)


def named(params) -> dict:
    return dict(zip(optim.param_names(params), map(np.asarray, jax.tree.leaves(params)), strict=True))


def torch_loss(t_model, sign: float):
    pred = t_model(torch.from_numpy(X_1x21x1))
    return sign * torch.square(pred - torch.from_numpy(Y_1x21x1)).mean(dim=(0, 2)).sum()


def run_torch(
    t_model, optimizer, scheduler=None, *, steps=STEPS, first=0, sign=1.0, clip=None, steps_per_epoch=1, zero_grad=True
):
    """Steps first .. first + steps - 1 of torch's loop (the scheduler steps after every
    `steps_per_epoch`-th); returns (the loss before each step, the final weights by name).
    sign -1 makes the objective -loss (for maximize=True, which then descends the loss). Every
    parameter's gradient is zeroed, and clipped, also one in no param group."""
    clip = clip or {}
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's scheduler-order warning after a state transfer
        for k in range(steps):
            if zero_grad:
                t_model.zero_grad()
            loss = torch_loss(t_model, sign)
            loss.backward()
            if "clip_grad_norm" in clip:
                torch.nn.utils.clip_grad_norm_(t_model.parameters(), clip["clip_grad_norm"], clip["clip_norm_type"])
            if "clip_grad_value" in clip:
                torch.nn.utils.clip_grad_value_(t_model.parameters(), clip["clip_grad_value"])
            optimizer.step()
            if scheduler is not None and (first + k + 1) % steps_per_epoch == 0:
                step_scheduler(scheduler, loss.item())
            losses.append(sign * loss.item())
    return np.array(losses), {k: v.detach().numpy().copy() for k, v in t_model.state_dict().items()}


def step_scheduler(scheduler, loss: float) -> None:
    """scheduler.step(), ReduceLROnPlateau's with the step's loss (the objective, as JAX's `value`)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(loss)
    else:
        scheduler.step()


def _loss(params, sign, *, graphdef):
    pred_1x21x1 = nnx.merge(graphdef, params)(jnp.asarray(X_1x21x1))
    return sign * jnp.sum(jnp.mean(jnp.square(pred_1x21x1 - jnp.asarray(Y_1x21x1)), axis=(0, 2)))


# The model's gradient is compiled once for the file; each case compiles its optimizer step only
# (compiling the LSTM's gradient takes about 1.5 s, the rest of a step a tenth of that).
loss_and_grad = jax.jit(jax.value_and_grad(_loss), static_argnames="graphdef")


@jax.jit(static_argnames="tx")
def optimizer_step(params, opt_state, grads, loss, *, tx):
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state


@jax.jit(static_argnames=("graphdef", "tx", "steps"))
def one_program(params, opt_state, sign, *, graphdef, tx, steps):
    """`steps` whole steps (gradient and update) in one compiled lax.scan, as jaxseq.app.training runs them."""

    def step(carry, _):
        p, s = carry
        loss, grads = jax.value_and_grad(_loss)(p, sign, graphdef=graphdef)
        updates, s = tx.update(grads, s, p, value=loss)
        return (optax.apply_updates(p, updates), s), sign * loss

    return jax.lax.scan(step, (params, opt_state), length=steps)


def run_jax(graphdef, params, tx, opt_state=None, *, steps=STEPS, sign=1.0):
    """`steps` steps, each a compiled gradient then a compiled optimizer step; returns (the loss
    before each step, the final parameters by name, the final optimizer state)."""
    opt_state = tx.init(params) if opt_state is None else opt_state
    losses = []
    for _ in range(steps):
        loss, grads = loss_and_grad(params, sign, graphdef=graphdef)
        params, opt_state = optimizer_step(params, opt_state, grads, loss, tx=tx)
        losses.append(sign * loss)
    return np.asarray(losses), named(params), opt_state


def assert_same_run(what, j_losses, j_weights, t_losses, t_weights):
    assert_close(f"{what}: loss at every step", j_losses, t_losses, rtol=LOSS_RTOL)
    for key in t_weights:
        assert_close(f"{what}: final {key}", j_weights[key], t_weights[key], atol=PARAM_ATOL)


# ---------------------------------------------------------------------------------------------
# Every optimizer, a pairwise grid of its options, with and without a schedule and clipping.

S = optim  # the schedules, in short
NORM = {"clip_grad_norm": 1.0, "clip_norm_type": 2.0}
INF_NORM = {"clip_grad_norm": 1.0, "clip_norm_type": float("inf")}
VALUE = {"clip_grad_value": 0.05}
TRAJECTORIES = [
    # (optimizer, lr, options, schedule, clipping, steps_per_epoch)
    ("sgd", 1e-2, {}, None, {}, 1),
    ("sgd", 1e-2, dict(momentum=0.9, dampening=0.3, weight_decay=1e-2), S.StepLR(10, 0.5), NORM, 5),
    ("sgd", 1e-2, dict(momentum=0.5, nesterov=True, maximize=True), S.CosineAnnealingLR(STEPS), VALUE, 1),
    ("sgd", 1e-2, dict(momentum=0.9, weight_decay=1e-2, maximize=True), S.OneCycleLR(STEPS), INF_NORM, 1),
    ("sgd", 1e-2, dict(nesterov=True, momentum=0.9, weight_decay=1e-3), S.ExponentialLR(0.99), {}, 1),
    ("adam", 1e-2, {}, None, {}, 1),
    ("adam", 1e-2, dict(weight_decay=1e-2, amsgrad=True), S.ExponentialLR(0.9), NORM, 20),
    ("adam", 1e-2, dict(amsgrad=True, maximize=True), S.OneCycleLR(STEPS, anneal_strategy="linear"), VALUE, 1),
    ("adam", 3e-3, dict(betas=(0.8, 0.99), eps=1e-6, maximize=True), S.LinearLR(0.2, 1.0, 50), INF_NORM, 1),
    ("adamw", 1e-2, {}, None, {}, 1),
    ("adamw", 1e-2, dict(amsgrad=True, weight_decay=0.1), S.MultiStepLR((50, 120, 120), 0.5), INF_NORM, 1),
    ("adamw", 1e-2, dict(maximize=True, eps=1e-6), S.SequentialLR((S.LinearLR(0.1, 1.0, 20), S.CosineAnnealingLR(180)),
                                                                   (20,)), NORM, 1),
    ("rmsprop", 1e-3, {}, None, {}, 1),
    ("rmsprop", 1e-3, dict(centered=True, momentum=0.9, alpha=0.9), S.ConstantLR(0.5, 40), NORM, 1),
    ("rmsprop", 1e-3, dict(weight_decay=1e-2, eps=1e-6, maximize=True, centered=True),
     S.OneCycleLR(STEPS, three_phase=True, pct_start=0.25), VALUE, 1),
    ("rmsprop", 1e-3, dict(momentum=0.5, maximize=True), S.StepLR(3, 0.9), INF_NORM, 7),
    ("adagrad", 1e-2, {}, None, {}, 1),
    ("adagrad", 1e-2, dict(lr_decay=1e-2, initial_accumulator_value=0.1), S.CosineAnnealingLR(STEPS, 1e-3), NORM, 1),
    ("adagrad", 1e-2, dict(weight_decay=1e-2, eps=1e-8, maximize=True), S.ExponentialLR(0.995), VALUE, 1),
    ("nadam", 2e-3, {}, None, {}, 1),
    ("nadam", 1e-3, dict(momentum_decay=1e-2, weight_decay=1e-2, decoupled_weight_decay=True, maximize=True),
     S.CosineAnnealingWarmRestarts(30, 2), NORM, 1),
    ("nadam", 2e-3, dict(weight_decay=1e-2, betas=(0.8, 0.99), eps=1e-6), S.OneCycleLR(STEPS), VALUE, 1),
    ("radam", 1e-2, {}, None, {}, 1),
    ("radam", 1e-2, dict(weight_decay=1e-2, decoupled_weight_decay=True), S.PolynomialLR(STEPS, 2.0), INF_NORM, 1),
    ("radam", 3e-3, dict(weight_decay=1e-3, maximize=True, betas=(0.85, 0.99)),
     S.CyclicLR(1e-2, 25, 15, mode="triangular2"), VALUE, 1),
    ("adamax", 1e-2, {}, None, {}, 1),
    ("adamax", 1e-2, dict(weight_decay=1e-2, maximize=True, betas=(0.8, 0.99)),
     S.CyclicLR(2e-2, 20, mode="exp_range", gamma=0.99), NORM, 1),
    ("adadelta", 0.1, {}, None, {}, 1),
    ("adadelta", 1.0, dict(rho=0.8, eps=1e-5, weight_decay=1e-2, maximize=True),
     S.ChainedScheduler((S.LinearLR(0.2, 1.0, 30), S.ExponentialLR(0.99))), VALUE, 1),
    ("rprop", 1e-2, {}, None, {}, 1),
    ("rprop", 1e-3, dict(etas=(0.3, 1.5), step_sizes=(1e-5, 1.0), maximize=True), S.StepLR(10, 0.5), NORM, 1),
    ("asgd", 1e-2, dict(t0=50), None, {}, 1),
    ("asgd", 1e-2, dict(lambd=1e-3, alpha=0.5, t0=20, weight_decay=1e-2, maximize=True),
     S.ExponentialLR(0.99), NORM, 3),
    # ReduceLROnPlateau steps on each step's loss (`value=loss`): down to min_lr; in max mode until eps stops it
    ("adamw", 1e-2, {}, S.ReduceLROnPlateau(factor=0.5, patience=3, threshold=0.05, cooldown=2, min_lr=1e-3), NORM, 1),
    ("rmsprop", 1e-3, dict(momentum=0.5),
     S.ReduceLROnPlateau(mode="max", factor=0.3, patience=2, threshold=1e-2, threshold_mode="abs", eps=1e-4), {}, 2),
]


def _case_id(case):
    name, lr, options, schedule, clip, spe = case
    parts = [name, *(f"{k}={v}" for k, v in options.items()), type(schedule).__name__ if schedule else "constant"]
    parts += [f"{k}={v}" for k, v in clip.items() if k != "clip_norm_type" or v != 2.0]
    return "-".join(parts + ([f"spe={spe}"] if spe != 1 else []))


@pytest.mark.parametrize("case", TRAJECTORIES, ids=map(_case_id, TRAJECTORIES))
def test_trajectory(case):
    """`build` (what the command line makes) and `from_torch` against torch.optim for 200 steps."""
    name, lr, options, schedule, clip, spe = case
    sign = -1.0 if options.get("maximize") else 1.0
    t_model = torch_model()
    graphdef, params = jax_twin(t_model)
    t_opt = optim.torch_optimizer(name, t_model.parameters(), lr, **options)
    t_sched = None if schedule is None else optim.torch_scheduler(schedule, t_opt)
    tx = optim.build(name, lr, **options, schedule=schedule, steps_per_epoch=spe, **clip)
    read = optim.from_torch(t_opt, t_sched, steps_per_epoch=spe, epochs=STEPS, **clip)
    assert jax.tree.structure(read.init(params)) == jax.tree.structure(tx.init(params)), "from_torch != build"
    t_losses, t_weights = run_torch(t_model, t_opt, t_sched, sign=sign, clip=clip, steps_per_epoch=spe)
    j_losses, j_weights, _ = run_jax(graphdef, params, tx, sign=sign)
    assert_same_run(_case_id(case), j_losses, j_weights, t_losses, t_weights)


def test_param_groups():
    """Several param groups with their own rule and rate (recurrent weights / head), named by the
    model, and a parameter in no group, which stays as it is; all 200 steps in one compiled program."""
    t_model = torch_model(1)
    graphdef, params = jax_twin(t_model)
    lstm = [p for n, p in t_model.named_parameters() if n.startswith("lstm.") and n != "lstm.bias_hh_l0"]
    t_opt = torch.optim.Adam(
        [
            {"params": lstm, "lr": 1e-2},
            {"params": t_model.linear.parameters(), "lr": 3e-3, "weight_decay": 1e-2, "amsgrad": True},
        ],
        lr=1e-3,
    )
    t_sched = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, STEPS)
    tx = optim.from_torch(t_opt, t_sched, model=t_model, clip_grad_norm=1.0)
    (j_params, _), j_losses = one_program(params, tx.init(params), 1.0, graphdef=graphdef, tx=tx, steps=STEPS)
    j_weights = named(j_params)
    t_losses, t_weights = run_torch(t_model, t_opt, t_sched, clip={"clip_grad_norm": 1.0, "clip_norm_type": 2.0})
    assert_same_run("Adam, two groups", j_losses, j_weights, t_losses, t_weights)
    assert_close("lstm.bias_hh_l0 (in no group)", j_weights["lstm.bias_hh_l0"], named(params)["lstm.bias_hh_l0"])


def test_param_groups_named_by_torch():
    """Groups given torch's named parameters carry their names (`param_names`): no model needed."""
    t_model = torch_model(2)
    graphdef, params = jax_twin(t_model)
    pairs = list(t_model.named_parameters())
    t_opt = torch.optim.SGD(
        [{"params": pairs[:4], "momentum": 0.9, "dampening": 0.1}, {"params": pairs[4:], "lr": 3e-2}], lr=1e-2
    )
    j_losses, j_weights, _ = run_jax(graphdef, params, optim.from_torch(t_opt))
    t_losses, t_weights = run_torch(t_model, t_opt)
    assert_same_run("SGD, two named groups", j_losses, j_weights, t_losses, t_weights)


def test_per_group_schedules():
    """A scheduler that differs per param group (LambdaLR's one function per group, CyclicLR's
    max_lr per group) reads as PerGroup, each group following its own."""
    t_model = torch_model(7)
    graphdef, params = jax_twin(t_model)
    groups = [{"params": t_model.lstm.parameters()}, {"params": t_model.linear.parameters(), "lr": 3e-3}]
    t_opt = torch.optim.Adam(groups, lr=1e-2)
    t_sched = torch.optim.lr_scheduler.LambdaLR(t_opt, [lambda e: 0.99**e, lambda e: 1 / (1 + e / 10)])
    tx = optim.from_torch(t_opt, t_sched, model=t_model, epochs=STEPS + 1)
    assert isinstance(optim.schedule_from_torch(t_sched, epochs=5), S.PerGroup), "two functions: PerGroup"
    j_losses, j_weights, _ = run_jax(graphdef, params, tx)
    t_losses, t_weights = run_torch(t_model, t_opt, t_sched)
    assert_same_run("Adam, two groups, LambdaLR per group", j_losses, j_weights, t_losses, t_weights)

    t_opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in range(2)], lr=0.1, momentum=0.9)
    t_sched = torch.optim.lr_scheduler.CyclicLR(t_opt, 0.1, [0.5, 0.3], step_size_up=7)
    read = optim.schedule_from_torch(t_sched)
    assert read == S.PerGroup((S.CyclicLR(0.5, 7, 7), S.CyclicLR(0.3, 7, 7))), f"CyclicLR per group read as {read}"


def test_without_zero_grad():
    """make_optimizer(zero_grad=False): gradients summed over every step, as torch without
    `optimizer.zero_grad()`; clipping rewrites the stored sum as clip_grad_norm_ rewrites `.grad`."""
    t_model = torch_model(3)
    graphdef, params = jax_twin(t_model)
    clip = {"clip_grad_norm": 2.0, "clip_norm_type": 2.0}
    t_opt = optim.torch_optimizer("sgd", t_model.parameters(), 1e-3)
    j_losses, j_weights, _ = run_jax(graphdef, params, optim.build("sgd", 1e-3, zero_grad=False, **clip), steps=100)
    t_losses, t_weights = run_torch(t_model, t_opt, steps=100, clip=clip, zero_grad=False)
    assert_same_run("SGD without zero_grad", j_losses, j_weights, t_losses, t_weights)
    tx = optim.make_optimizer("adam", 1e-3, zero_grad=False)
    assert isinstance(tx.init(params)[0], optim.AccumulateState), "zero_grad=False starts with the running sum"


@pytest.mark.parametrize(
    "name,schedule",
    [
        ("adam", S.CosineAnnealingLR(10)),
        ("rprop", S.CosineAnnealingLR(10)),  # the rate is Rprop's first step size, held by its own piece
        ("asgd", S.CosineAnnealingLR(10)),  # ASGD's eta
        ("sgd", S.ReduceLROnPlateau()),  # the plateau's rate state
    ],
    ids=["adam", "rprop", "asgd", "plateau"],
)
def test_with_learning_rate(name, schedule):
    """The rate lives in the state: one transformation with the rate set afterwards steps as the one
    built for that rate, and its step vmaps over rates (the sweep)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    grads = {"w": jnp.linspace(0.5, -0.3, 5)}
    tx = optim.build(name, 1.0, schedule=schedule, weight_decay=None if name == "rprop" else 1e-2)
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=1.0))
    rates = (1e-3, 0.3)
    for lr in rates:
        got, _ = update(grads, optim.with_learning_rate(tx.init(params), lr), params)
        tx_lr = optim.build(name, lr, schedule=schedule, weight_decay=None if name == "rprop" else 1e-2)
        want, _ = jax.jit(lambda g, s, p, t=tx_lr: t.update(g, s, p, value=1.0))(grads, tx_lr.init(params), params)
        assert_close(f"{name} update at lr {lr}", got["w"], want["w"], atol=SAME_PROGRAM_ATOL)
        eager, _ = tx.update(grads, optim.with_learning_rate(tx.init(params), lr), params, value=1.0)
        assert_close(f"{name} update at lr {lr}, not compiled", eager["w"], got["w"], rtol=EAGER_RTOL)
        states = jax.vmap(lambda r: optim.with_learning_rate(tx.init(params), r))(jnp.array(rates))
        swept, _ = jax.jit(jax.vmap(lambda s: tx.update(grads, s, params, value=1.0)))(states)
        assert_close(f"{name} vmapped update at lr {lr}", swept["w"][rates.index(lr)], got["w"], rtol=BATCHED_RTOL)


# ---------------------------------------------------------------------------------------------
# Schedules: torch's rate at each of 1000 steps.

SCHEDULE_STEPS = 1000
SCHEDULES = [
    S.StepLR(100, 0.5),
    S.MultiStepLR((100, 300, 300, 700), 0.3),
    S.ExponentialLR(0.995),
    S.CosineAnnealingLR(SCHEDULE_STEPS),
    S.CosineAnnealingLR(300, 1e-3),  # past T_max: back up, as torch's
    S.CosineAnnealingLR(7),
    S.LinearLR(0.1, 1.0, 400),
    S.LinearLR(1.0, 0.0, SCHEDULE_STEPS),
    S.ConstantLR(0.25, 300),
    S.OneCycleLR(SCHEDULE_STEPS),
    S.OneCycleLR(SCHEDULE_STEPS, anneal_strategy="linear"),
    S.OneCycleLR(SCHEDULE_STEPS, three_phase=True, pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    S.SequentialLR((S.LinearLR(0.1, 1.0, 100), S.CosineAnnealingLR(900)), (100,)),
    S.SequentialLR((S.ConstantLR(0.5, 50), S.ExponentialLR(0.99), S.StepLR(50, 0.5)), (100, 400)),
    S.PolynomialLR(400, 2.0),
    S.PolynomialLR(SCHEDULE_STEPS),
    S.CosineAnnealingWarmRestarts(100),
    S.CosineAnnealingWarmRestarts(50, 2, 1e-3),
    S.CyclicLR(0.5, 100),  # with SGD: its momentum cycles
    S.CyclicLR(0.3, 60, 140, mode="triangular2", cycle_momentum=False),
    S.CyclicLR(0.4, 50, mode="exp_range", gamma=0.998, base_momentum=0.7, max_momentum=0.95),  # Adam's beta1 cycles
    S.CyclicLR(0.5, 80, scales=S.CyclicLR.tabulate(lambda cycle: 1 / cycle**0.5, "cycle", SCHEDULE_STEPS + 1, 80)),
    S.LambdaLR.tabulate(lambda e: min(1.0, (e + 1) / 100) * 0.999**e, SCHEDULE_STEPS + 1),
    S.MultiplicativeLR.tabulate(lambda e: 0.995 if e % 10 else 0.9, SCHEDULE_STEPS + 1),
    S.ChainedScheduler((S.LinearLR(0.1, 1.0, 100), S.ExponentialLR(0.998), S.StepLR(300, 0.5))),
    S.ChainedScheduler((S.ConstantLR(0.5, 50), S.PolynomialLR(800, 1.5), S.MultiStepLR((200, 600), 0.5))),
    S.SequentialLR((S.MultiplicativeLR.tabulate(lambda e: 0.99, SCHEDULE_STEPS + 1), S.CosineAnnealingWarmRestarts(100),
                    S.LambdaLR.tabulate(lambda e: 0.5 / (1 + e), SCHEDULE_STEPS + 1)), (100, 500)),
]


def _schedule_id(spec) -> str:
    """The schedule in one line, a tabulated function's values shortened to their count."""

    def short(value):
        if dataclasses.is_dataclass(value):
            return _schedule_id(value)
        if isinstance(value, tuple) and len(value) > 8:
            return f"<{len(value)} values>"
        if isinstance(value, tuple):
            return "(" + ",".join(short(v) for v in value) + ")"
        return repr(value)

    fields = ",".join(f"{f.name}={short(getattr(spec, f.name))}" for f in dataclasses.fields(spec))
    return f"{type(spec).__name__}({fields})"


def _cycles_beta1(spec) -> bool:
    """The schedules followed with Adam, whose beta1 they cycle (the rest: with SGD)."""
    linear_one_cycle = isinstance(spec, S.OneCycleLR) and spec.anneal_strategy == "linear"
    return linear_one_cycle or (isinstance(spec, S.CyclicLR) and spec.mode == "exp_range")


def torch_rates(spec, name: str, steps_per_epoch: int):
    """torch's (lr, momentum or beta1) at each optimizer step, the scheduler stepping every
    `steps_per_epoch` optimizer steps."""
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    t_opt = optim.torch_optimizer(name, [p], 0.1)
    t_sched = optim.torch_scheduler(spec, t_opt)
    rates = []
    for k in range(SCHEDULE_STEPS):
        group = t_opt.param_groups[0]
        rates.append((group["lr"], group["betas"][0] if "betas" in group else group["momentum"]))
        t_opt.step()
        if (k + 1) % steps_per_epoch == 0:
            t_sched.step()
    return np.array(rates), t_sched


@pytest.mark.parametrize("steps_per_epoch", [1, 3])
@pytest.mark.parametrize("spec", SCHEDULES, ids=_schedule_id)
def test_schedule(spec, steps_per_epoch):
    name, what = ("adam" if _cycles_beta1(spec) else "sgd"), _schedule_id(spec)
    rates, t_sched = torch_rates(spec, name, steps_per_epoch)
    counts = jnp.arange(SCHEDULE_STEPS)
    fn = optim.schedule_fn(spec, 0.1, steps_per_epoch=steps_per_epoch)
    _, scanned = jax.jit(lambda: jax.lax.scan(lambda c, k: (c, fn(k)), 0, counts))()  # the training path
    assert_close(f"{what} lr, scanned", scanned, rates[:, 0], rtol=LR_RTOL)
    assert_close(f"{what} lr, vmapped", jax.jit(jax.vmap(fn))(counts), rates[:, 0], rtol=LR_RTOL)  # the sweep's
    read = optim.schedule_from_torch(t_sched, epochs=SCHEDULE_STEPS + 1)  # OneCycleLR's factors: quotients
    assert type(read) is type(spec), f"{what} read back from torch as {_schedule_id(read)}"
    read_fn = optim.schedule_fn(t_sched, steps_per_epoch=steps_per_epoch, epochs=SCHEDULE_STEPS + 1)
    assert_close(f"{what} lr, read from torch", jax.jit(jax.vmap(read_fn))(counts), rates[:, 0], rtol=LR_RTOL)
    momentum = optim.momentum_fn(spec, steps_per_epoch=steps_per_epoch)
    if momentum is not None:
        assert_close(f"{what} {name} momentum", jax.vmap(momentum)(counts), rates[:, 1], rtol=LR_RTOL)


@pytest.mark.parametrize(
    "text,spec",
    [
        ("cosine", S.CosineAnnealingLR(500)),
        ("cosine:1e-4", S.CosineAnnealingLR(500, 1e-4)),
        ("step:100", S.StepLR(100, 0.1)),
        ("step:100:0.5", S.StepLR(100, 0.5)),
        ("exponential:0.99", S.ExponentialLR(0.99)),
        ("multistep:100,200:0.3", S.MultiStepLR((100, 200), 0.3)),
        ("linear:0.1:1.0", S.LinearLR(0.1, 1.0, 500)),
        ("linear:0.1:1.0:50", S.LinearLR(0.1, 1.0, 50)),
        ("constant:0.5:20", S.ConstantLR(0.5, 20)),
        ("onecycle", S.OneCycleLR(500)),
        ("onecycle:0.25:linear:three_phase", S.OneCycleLR(500, 0.25, "linear", three_phase=True)),
        ("linear:0.1:1:50+cosine@50", S.SequentialLR((S.LinearLR(0.1, 1.0, 50), S.CosineAnnealingLR(450)), (50,))),
    ],
)
def test_parse_schedule(text, spec):
    parsed = optim.parse_schedule(text, steps=500)
    assert parsed == spec, f"{text!r} parsed as {parsed}, not {spec}"


@pytest.mark.parametrize(
    "text",
    ["", "cosin", "step", "step:x", "step:0", "exponential", "linear:2:1", "cosine:1:2", "a+cosine"]
    + ["onecycle+cosine@9"],
)
def test_parse_schedule_rejects(text):
    with pytest.raises(OptionError, match=re.escape(f"schedule {text!r}")):
        optim.parse_schedule(text, steps=500)


# ---------------------------------------------------------------------------------------------
# The state across frameworks: 100 steps in one, the state converted, 100 in the other == 200 in torch.

CROSSINGS = [
    ("sgd", 1e-2, dict(momentum=0.9, dampening=0.2), S.StepLR(30, 0.5)),
    ("adam", 1e-2, dict(amsgrad=True), S.CosineAnnealingLR(STEPS)),
    ("adamw", 1e-2, {}, S.OneCycleLR(STEPS)),
    ("rmsprop", 1e-3, dict(momentum=0.5, centered=True), None),
    ("adagrad", 1e-2, dict(lr_decay=1e-2, initial_accumulator_value=0.1), None),
    ("nadam", 2e-3, dict(weight_decay=1e-2), S.CosineAnnealingWarmRestarts(30, 2)),
    ("radam", 1e-2, dict(weight_decay=1e-2, decoupled_weight_decay=True), S.CyclicLR(2e-2, 30)),
    ("adamax", 1e-2, {}, S.ChainedScheduler((S.ConstantLR(0.5, 20), S.ExponentialLR(0.995)))),
    ("adadelta", 0.1, dict(weight_decay=1e-2), S.LambdaLR.tabulate(lambda e: 1 / (1 + e / 50), STEPS + 1)),
    ("rprop", 1e-2, dict(etas=(0.4, 1.3)), S.MultiplicativeLR.tabulate(lambda e: 0.99, STEPS + 1)),
    ("asgd", 1e-2, dict(t0=30, lambd=1e-3), S.PolynomialLR(150)),
    ("adamw", 1e-2, {}, S.ReduceLROnPlateau(factor=0.5, patience=3, threshold=0.05, cooldown=2, min_lr=1e-3)),
]


@pytest.mark.parametrize("case", CROSSINGS, ids=lambda c: f"{c[0]}-{type(c[3]).__name__ if c[3] else 'constant'}")
def test_state_across_frameworks(case):
    name, lr, options, schedule = case

    def fresh():
        t_model = torch_model(4)
        t_opt = optim.torch_optimizer(name, t_model.parameters(), lr, **options)
        return t_model, t_opt, None if schedule is None else optim.torch_scheduler(schedule, t_opt)

    t_model, t_opt, t_sched = fresh()
    graphdef, params = jax_twin(t_model)
    tx = optim.from_torch(t_opt, t_sched, model=t_model, epochs=STEPS + 1)
    unstepped = optim.state_from_torch(t_opt, t_sched, params=params, model=t_model, epochs=STEPS + 1)
    for a, b in zip(jax.tree.leaves(unstepped), jax.tree.leaves(tx.init(params)), strict=True):
        # exact (atol 0), infinities included (ReduceLROnPlateau's best starts at inf)
        assert np.array_equal(a, b), f"the state of a torch optimizer that has not stepped: {a} != init's {b}, atol=0"
    whole_losses, whole_weights = run_torch(t_model, t_opt, t_sched)

    t_model, t_opt, t_sched = fresh()
    first_losses, _ = run_torch(t_model, t_opt, t_sched, steps=STEPS // 2)
    _, params = jax_twin(t_model)
    opt_state = optim.state_from_torch(t_opt, t_sched, params=params, model=t_model, epochs=STEPS + 1)
    losses, weights, _ = run_jax(graphdef, params, tx, opt_state, steps=STEPS // 2)
    losses = np.concatenate([first_losses, losses])
    assert_same_run(f"{name}: torch then JAX", losses, weights, whole_losses, whole_weights)

    t_model, t_opt, t_sched = fresh()
    first_losses, weights, opt_state = run_jax(graphdef, jax_twin(t_model)[1], tx, steps=STEPS // 2)
    with torch.no_grad():
        for key, p in t_model.named_parameters():
            p.copy_(torch.tensor(weights[key]))
    optim.state_to_torch(opt_state, t_opt, t_sched, model=t_model, epochs=STEPS + 1)
    losses, weights = run_torch(t_model, t_opt, t_sched, steps=STEPS // 2, first=STEPS // 2)
    losses = np.concatenate([first_losses, losses])
    assert_same_run(f"{name}: JAX then torch", losses, weights, whole_losses, whole_weights)


def test_param_groups_state_across_frameworks():
    """Two groups (partitioned state), a scheduler stepped per epoch of 4 steps: torch to JAX to torch."""
    spe = 4

    def fresh():
        t_model = torch_model(5)
        t_opt = torch.optim.RMSprop(
            [
                {"params": t_model.lstm.parameters()},
                {"params": t_model.linear.parameters(), "lr": 3e-3, "momentum": 0.5},
            ],
            lr=1e-3,
        )
        return t_model, t_opt, torch.optim.lr_scheduler.StepLR(t_opt, 10, 0.5)

    t_model, t_opt, t_sched = fresh()
    graphdef, params = jax_twin(t_model)
    tx = optim.from_torch(t_opt, t_sched, model=t_model, steps_per_epoch=spe)
    whole_losses, whole_weights = run_torch(t_model, t_opt, t_sched, steps_per_epoch=spe)

    t_model, t_opt, t_sched = fresh()
    first_losses, _ = run_torch(t_model, t_opt, t_sched, steps=STEPS // 4, steps_per_epoch=spe)
    _, params = jax_twin(t_model)
    opt_state = optim.state_from_torch(t_opt, t_sched, params=params, model=t_model, steps_per_epoch=spe)
    middle_losses, weights, opt_state = run_jax(graphdef, params, tx, opt_state, steps=STEPS // 2)
    with torch.no_grad():
        for key, p in t_model.named_parameters():
            p.copy_(torch.tensor(weights[key]))
    optim.state_to_torch(opt_state, t_opt, t_sched, model=t_model, steps_per_epoch=spe)
    last_losses, weights = run_torch(
        t_model, t_opt, t_sched, steps=STEPS // 4, first=3 * STEPS // 4, steps_per_epoch=spe
    )
    losses = np.concatenate([first_losses, middle_losses, last_losses])
    assert_same_run("RMSprop, two groups: torch, JAX, torch", losses, weights, whole_losses, whole_weights)


# ---------------------------------------------------------------------------------------------
# What does not convert, and the pieces' own contracts.


def test_param_names():
    graphdef, params = jax_twin(torch_model())
    assert sorted(optim.param_names(params)) == sorted(k for k, _ in torch_model().named_parameters())
    assert optim.param_names({"b": 1.0, "a": {"w": [2.0, 3.0]}}) == ["a.w.0", "a.w.1", "b"]


class MyAdam(torch.optim.Adam):
    pass


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda ps: torch.optim.Adafactor(ps), "optimizer Adafactor is not supported"),
        (lambda ps: torch.optim.SparseAdam(ps), "optimizer SparseAdam is not supported"),
        (lambda ps: MyAdam(ps), "optimizer MyAdam is not supported"),
        (lambda ps: torch.optim.Adam(ps, lr=torch.tensor(1e-3)), "lr is a tensor"),
        (lambda ps: torch.optim.Adam(ps, betas=(torch.tensor(0.9), torch.tensor(0.999))), "betas is a tensor"),
        (lambda ps: torch.optim.Adam(ps, differentiable=True), "differentiable=True"),
        (lambda ps: torch.optim.AdamW(ps, fused=True), "fused=True"),
        (lambda ps: torch.optim.SGD([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.1), "pass model="),
    ],
    ids=[
        "Adafactor",
        "SparseAdam",
        "subclass",
        "tensor-lr",
        "tensor-beta",
        "differentiable",
        "fused",
        "unnamed-groups",
    ],
)
def test_unsupported_optimizer(make, message):
    with pytest.raises(ConversionError, match=message):
        optim.from_torch(make(list(torch_model().parameters())))


def test_unnamed_parameter():
    t_model = torch_model()
    t_opt = torch.optim.Adam([{"params": t_model.lstm.parameters()}, {"params": torch_model().linear.parameters()}])
    with pytest.raises(ConversionError, match=re.escape("param group 1: parameter 0 is not among model.named_param")):
        optim.from_torch(t_opt, model=t_model)


def test_sgd_step_count():
    """SGD records no step: a scheduler's epoch tells it at an epoch's end, `step=` otherwise."""
    t_model = torch_model()
    _, params = jax_twin(t_model)
    t_opt = optim.torch_optimizer("sgd", t_model.parameters(), 1e-2, momentum=0.9, dampening=0.5)
    t_sched = optim.torch_scheduler(S.StepLR(2), t_opt)
    run_torch(t_model, t_opt, t_sched, steps=13, steps_per_epoch=4)

    def counts(state):
        return {int(s.count) for s in _pieces(state) if "count" in getattr(s, "_fields", ())}

    assert counts(optim.state_from_torch(t_opt, t_sched, params=params, model=t_model, steps_per_epoch=4, step=13)) == {
        13
    }, "step= sets every count"
    assert counts(optim.state_from_torch(t_opt, t_sched, params=params, model=t_model, steps_per_epoch=4)) == {12}
    with pytest.raises(ConversionError, match="scheduler at epoch 3 but param group 0 at step 17"):
        optim.state_from_torch(t_opt, t_sched, params=params, model=t_model, steps_per_epoch=4, step=17)


class MyStepLR(torch.optim.lr_scheduler.StepLR):
    pass


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda o: MyStepLR(o, 5), "scheduler MyStepLR is not supported"),
        (
            lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9**e),
            "LambdaLR calls a Python function: pass epochs=",
        ),
        (
            lambda o: torch.optim.lr_scheduler.ChainedScheduler([torch.optim.lr_scheduler.CosineAnnealingLR(o, 10)]),
            "only StepLR, MultiStepLR, ExponentialLR, ConstantLR, LinearLR, PolynomialLR, MultiplicativeLR chain",
        ),
    ],
    ids=["subclass", "LambdaLR-without-epochs", "ChainedScheduler-of-cosine"],
)
def test_unsupported_scheduler(make, message):
    t_opt = torch.optim.SGD(torch_model().parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ConversionError, match=re.escape(message)):
        optim.from_torch(t_opt, make(t_opt))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: optim.build("lamb", 1e-3), "optimizer must be one of"),
        (lambda: optim.build("adam", 1e-3, momentum=0.9), "optimizer 'adam' has no option momentum"),
        (lambda: optim.build("sgd", 1e-3, nesterov=True), "nesterov needs momentum"),
        (lambda: optim.build("adagrad", 1e-3, schedule=S.OneCycleLR(10)), "not adagrad"),
        (lambda: optim.build("sgd", 1e-3, schedule=S.LinearLR(0.0, 1.0, 5)), "start_factor"),
        (lambda: optim.build("sgd", 1e-3, steps_per_epoch=0), "steps_per_epoch"),
        (lambda: optim.build("sgd", 1e-3, clip_grad_norm=-1.0), "clip_grad_norm"),
        (lambda: optim.build("rprop", 1e-3, etas=(1.5, 1.2)), "etas must be 0 < etaminus < 1 < etaplus"),
        (lambda: optim.build("adadelta", 1.0, rho=1.5), "rho must be in"),
        (lambda: optim.build("nadam", 1e-3, momentum_decay=-1.0), "momentum_decay must be >= 0"),
        (lambda: optim.build("radam", 1e-3, momentum=0.9), "optimizer 'radam' has no option momentum"),
        (lambda: optim.build("rprop", 1e-3, schedule=S.CyclicLR(1e-2, 5)), "needs an optimizer with momentum or betas"),
        (lambda: optim.build("sgd", 1e-3, schedule=S.ChainedScheduler((S.CosineAnnealingLR(5),))), "chain"),
        (lambda: optim.build("sgd", 1e-3, schedule=S.SequentialLR((S.StepLR(2), S.CyclicLR(1.0)), (3,))), "restart"),
        (lambda: optim.build("sgd", 1e-3, schedule=S.ReduceLROnPlateau(factor=1.5)), "factor must be < 1"),
        (lambda: optim.build("sgd", 1e-3, schedule=S.CosineAnnealingWarmRestarts(10, 0)), "T_mult must be"),
    ],
)
def test_bad_options(call, message):
    with pytest.raises(OptionError, match=message):
        call()


def test_plateau_needs_the_loss():
    params = {"w": jnp.ones(3)}
    tx = optim.build("sgd", 0.1, schedule=S.ReduceLROnPlateau())
    with pytest.raises(OptionError, match=re.escape("call tx.update(grads, opt_state, params, value=loss)")):
        tx.update(params, tx.init(params), params)


def test_tabulated_schedule_past_its_table():
    """Past the epochs a LambdaLR was tabulated over the rate is NaN: the run fails at once."""
    fn = optim.schedule_fn(S.LambdaLR.tabulate(lambda e: 0.5**e, 3), 1.0)
    rates = np.asarray(jax.vmap(fn)(jnp.arange(5)))
    assert_close("LambdaLR's rate within its table", rates[:3], [1.0, 0.5, 0.25])
    assert np.isnan(rates[3:]).all(), f"LambdaLR's rate past its 3 epochs: {rates[3:]}, not NaN"


def test_scalars_follow_torchs_default_dtype():
    """NAdam's and ASGD's per-parameter scalars follow torch's default dtype, float32 here."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(ConversionError, match="NAdam under torch's default dtype torch.float64"):
            optim.from_torch(torch.optim.NAdam(torch_model().parameters()))
    finally:
        torch.set_default_dtype(default)
