"""jaxseq.optim.LBFGS against torch.optim.LBFGS, float64 on the CPU: 200 steps of a least-squares
fit with every option (fixed step and strong Wolfe line search, history that wraps, max_eval,
tolerances, a schedule), the same number of objective evaluations and iterations at every step,
the state across frameworks both ways, and step for step on the seed's LSTM task.

Why two problems: L-BFGS on the LSTM task amplifies rounding about 40-fold per step, in torch alone
(a relative 1e-13 change of one weight moves the loss by 1e-2 within 10 steps), so 200 free-running
steps can agree to no tolerance there. There every step starts from torch's state instead (its
parameters and LBFGS state through `state_from_torch`). The least-squares fit contracts: free-
running, the two agree to rounding for 200 steps."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseq import optim
from jaxseq.errors import ConversionError, OptionError
from parity_tests.helpers import assert_close
from parity_tests.test_optim import LOSS_RTOL, PARAM_ATOL, STEPS, _loss, jax_twin, named, torch_loss, torch_model

# One step from torch's state, on the LSTM task: its loss (computed before it, from the same
# parameters, small and so relatively less exact: measured up to 4.5e-13) relative; the parameters
# after it (up to 4 iterations and their line searches; measured up to 7.2e-13) absolute.
ONE_STEP_LOSS_RTOL = 1e-11
ONE_STEP_PARAM_ATOL = PARAM_ATOL
# The same step compiled and run op by op: other programs, which may round differently.
EAGER_RTOL = 1e-12

RNG = np.random.default_rng(0)
X_16x3 = RNG.normal(size=(16, 3))
Y_16x1 = np.sin(X_16x3 @ np.array([[1.0], [-0.5], [0.3]])) + 0.1 * RNG.normal(size=(16, 1))


def torch_linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(3, 1).double()


def linear_params(t_model) -> dict:
    """The JAX parameters of `t_model`: leaves in the order bias, weight (torch's: weight, bias)."""
    return {k: jnp.asarray(v.detach().numpy().copy()) for k, v in t_model.state_dict().items()}


def linear_loss(params):
    pred_16x1 = jnp.asarray(X_16x3) @ params["weight"].T + params["bias"]
    return jnp.mean(jnp.square(pred_16x1 - jnp.asarray(Y_16x1)))


def torch_linear_loss(t_model):
    return torch.square(t_model(torch.from_numpy(X_16x3)) - torch.from_numpy(Y_16x1)).mean()


def run_torch(t_model, optimizer, scheduler=None, *, steps=STEPS, loss_fn=torch_linear_loss):
    """torch's loop with a closure: (each step's loss, func_evals and n_iter after it, the final weights)."""

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(t_model)
        loss.backward()
        return loss

    losses, counters = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's scheduler-order warning after a state transfer
        for _ in range(steps):
            loss = optimizer.step(closure).item()
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(loss)
            elif scheduler is not None:
                scheduler.step()
            state = optimizer.state[optimizer.param_groups[0]["params"][0]]
            losses.append(loss)
            counters.append((state["func_evals"], state["n_iter"]))
    weights = {k: v.detach().numpy().copy() for k, v in t_model.state_dict().items()}
    return np.array(losses), np.array(counters), weights


@functools.cache
def compiled_step(opt, value_and_grad):
    return jax.jit(functools.partial(opt.step, value_and_grad))


LINEAR_VALUE_AND_GRAD = jax.value_and_grad(linear_loss)


def run_jax(opt, params, state=None, *, steps=STEPS, value_and_grad=LINEAR_VALUE_AND_GRAD):
    """The same loop in JAX, each step one compiled `opt.step`."""
    step = compiled_step(opt, value_and_grad)
    state = opt.init(params) if state is None else state
    losses, counters = [], []
    for _ in range(steps):
        params, state, loss, _ = step(params, state)
        losses.append(float(loss))
        counters.append((int(state.func_evals), int(state.n_iter)))
    return np.array(losses), np.array(counters), params, state


def assert_same_run(what, jax_run, torch_run):
    (j_losses, j_counters, j_weights), (t_losses, t_counters, t_weights) = jax_run, torch_run
    assert_close(f"{what}: loss at every step", j_losses, t_losses, rtol=LOSS_RTOL)
    assert_close(f"{what}: (func_evals, n_iter) after every step", j_counters, t_counters, atol=0)
    for key in t_weights:
        assert_close(f"{what}: final {key}", j_weights[key], t_weights[key], atol=PARAM_ATOL)


StepLR = torch.optim.lr_scheduler.StepLR
Plateau = torch.optim.lr_scheduler.ReduceLROnPlateau
CASES = [
    # (torch.optim.LBFGS options, scheduler)
    (dict(lr=0.5, max_iter=3, history_size=4), None),
    (dict(lr=1, max_iter=5, history_size=3, line_search_fn="strong_wolfe"), None),  # the history wraps
    (dict(lr=1, line_search_fn="strong_wolfe", tolerance_change=1e-12, tolerance_grad=1e-12), None),  # defaults
    (dict(lr=0.8, max_iter=4, max_eval=6, history_size=2, line_search_fn="strong_wolfe"), None),  # max_eval
    (dict(lr=1, max_iter=2, history_size=4), lambda o: StepLR(o, 3, 0.7)),
    (
        dict(lr=1, max_iter=3, line_search_fn="strong_wolfe"),
        lambda o: Plateau(o, factor=0.5, patience=2, threshold=0.1),
    ),
]


def _case_id(case) -> str:
    options, make_scheduler = case
    schedule = "" if make_scheduler is None else "-" + type(make_scheduler(torch.optim.SGD([torch.zeros(1)]))).__name__
    return "-".join(f"{k}={v}" for k, v in options.items()) + schedule


@pytest.mark.parametrize("case", CASES, ids=map(_case_id, CASES))
def test_trajectory(case):
    """200 steps from the same weights: the same losses, evaluations, iterations and final weights."""
    options, make_scheduler = case
    t_model = torch_linear()
    params = linear_params(t_model)
    t_opt = torch.optim.LBFGS(t_model.parameters(), **options)
    t_sched = None if make_scheduler is None else make_scheduler(t_opt)
    opt = optim.from_torch(t_opt, t_sched)
    assert isinstance(opt, optim.ClosureOptimizer) and isinstance(opt, optim.LBFGS), f"from_torch gave {opt!r}"
    torch_run = run_torch(t_model, t_opt, t_sched)
    j_losses, j_counters, j_params, _ = run_jax(opt, params)
    assert_same_run(f"LBFGS({options}), {type(t_sched).__name__}", (j_losses, j_counters, j_params), torch_run)


def test_state_across_frameworks():
    """4 steps in one framework, the state converted, 196 in the other == 200 in torch; the JAX
    flat vectors hold (bias, weight), torch's (weight, bias)."""
    options = dict(lr=1, max_iter=3, history_size=4, line_search_fn="strong_wolfe")
    first = 4

    def fresh():
        t_model = torch_linear()
        return t_model, torch.optim.LBFGS(t_model.parameters(), **options)

    t_model, t_opt = fresh()
    opt = optim.from_torch(t_opt)
    unstepped = optim.state_from_torch(t_opt, params=linear_params(t_model), model=t_model)
    for a, b in zip(jax.tree.leaves(unstepped), jax.tree.leaves(opt.init(linear_params(t_model))), strict=True):
        assert_close("the state of a torch LBFGS that has not stepped (init's)", a, b, atol=0)
    whole = run_torch(t_model, t_opt)

    t_model, t_opt = fresh()
    t_losses, t_counters, _ = run_torch(t_model, t_opt, steps=first)
    state = optim.state_from_torch(t_opt, params=linear_params(t_model), model=t_model)
    j_losses, j_counters, j_params, _ = run_jax(opt, linear_params(t_model), state, steps=STEPS - first)
    run = (np.concatenate([t_losses, j_losses]), np.concatenate([t_counters, j_counters]), j_params)
    assert_same_run("LBFGS: torch then JAX", run, whole)

    t_model, t_opt = fresh()
    j_losses, j_counters, j_params, state = run_jax(opt, linear_params(t_model), steps=first)
    with torch.no_grad():
        for key, p in t_model.named_parameters():
            p.copy_(torch.tensor(np.asarray(j_params[key])))
    optim.state_to_torch(state, t_opt, model=t_model, params=j_params)
    t_losses, t_counters, t_weights = run_torch(t_model, t_opt, steps=STEPS - first)
    run = (np.concatenate([j_losses, t_losses]), np.concatenate([j_counters, t_counters]), t_weights)
    assert_same_run("LBFGS: JAX then torch", run, whole)


def test_step_for_step_on_the_lstm():
    """The seed's task, where L-BFGS amplifies rounding (module docstring): each of 100 steps starts
    from torch's parameters and LBFGS state, and ends where torch's does (the line search's
    bracketing and zoom on a non-convex loss; the fixed step is the least-squares cases')."""
    options = dict(lr=1, max_iter=4, history_size=3, line_search_fn="strong_wolfe")
    t_model = torch_model(6)
    graphdef, params = jax_twin(t_model)
    t_opt = torch.optim.LBFGS(t_model.parameters(), **options)
    opt = optim.from_torch(t_opt)
    value_and_grad = functools.partial(jax.value_and_grad(_loss), sign=1.0, graphdef=graphdef)
    step = compiled_step(opt, value_and_grad)
    for k in range(STEPS // 2):
        _, params = jax_twin(t_model)
        state = optim.state_from_torch(t_opt, params=params, model=t_model)
        (t_loss,), (t_counters,), t_weights = run_torch(t_model, t_opt, steps=1, loss_fn=lambda m: torch_loss(m, 1.0))
        params, state, loss, _ = step(params, state)
        what = f"LBFGS({options}) step {k + 1} from torch's state"
        assert_close(f"{what}: loss", loss, t_loss, rtol=ONE_STEP_LOSS_RTOL)
        assert_close(f"{what}: (func_evals, n_iter)", (int(state.func_evals), int(state.n_iter)), t_counters, atol=0)
        for key, value in named(params).items():
            assert_close(f"{what}: {key}", value, t_weights[key], atol=ONE_STEP_PARAM_ATOL)


def test_step_returns_the_first_evaluation():
    """`step` returns the loss and gradients at the parameters it starts from (what torch's
    step(closure) returns), compiled or not."""
    opt = optim.LBFGS(lr=1, max_iter=3, line_search_fn="strong_wolfe")
    params = linear_params(torch_linear())
    value_and_grad = LINEAR_VALUE_AND_GRAD
    state = opt.init(params)
    for k in range(2):
        want_loss, want_grads = value_and_grad(params)
        new, new_state, loss, grads = compiled_step(opt, value_and_grad)(params, state)
        assert_close(f"step {k + 1}: the loss returned (first evaluation)", loss, want_loss, rtol=EAGER_RTOL)
        for key in params:
            assert_close(f"step {k + 1}: the {key} gradient returned", grads[key], want_grads[key], rtol=EAGER_RTOL)
        if k == 1:  # the second step has a history to use
            eager, eager_state, _, _ = opt.step(value_and_grad, params, state)
            for key in params:
                assert_close(f"{key} after step 2, not compiled", eager[key], new[key], rtol=EAGER_RTOL)
            assert int(eager_state.func_evals) == int(new_state.func_evals), "evaluations, compiled and not, differ"
        params, state = new, new_state


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: optim.LBFGS(line_search_fn="backtracking"), OptionError, "line_search_fn must be None or"),
        (lambda: optim.LBFGS(history_size=0), OptionError, "history_size must be >= 1"),
        (
            lambda: optim.from_torch(torch.optim.LBFGS(torch_linear().parameters()), clip_grad_norm=1.0),
            ConversionError,
            "LBFGS: clip the gradients inside value_and_grad",
        ),
        (
            lambda: optim.state_to_torch(
                optim.LBFGS().init(linear_params(torch_linear())), torch.optim.LBFGS(torch_linear().parameters())
            ),
            ConversionError,
            "pass params=",
        ),
    ],
    ids=["line_search_fn", "history_size", "clipping", "state_to_torch-without-params"],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
