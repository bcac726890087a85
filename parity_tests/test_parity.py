"""jaxseq.parity.check and `jaxseq check`: a zoo of models trained in torch and in JAX, each with its
own optimizer, must agree (forward, first gradients, 100 steps of losses and parameters); a wrong
hand-written port must be caught at the right step and parameter; bad model files are refused.

Every zoo model is checked once (module-scoped fixture), float64 on the CPU: the examples/ files and
small models covering dict and tuple outputs, proj_size, time-major input, shared weights,
BatchNorm in training mode, Conv1d with GELU, a plain RNN and a correct hand-written port.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn as tnn

import jaxseq
from jaxseq import parity
from jaxseq.app import cli
from jaxseq.errors import ConversionError, OptionError
from parity_tests.helpers import (
    FORWARD_ATOL,
    GRAD_ATOL,
    TRAJECTORY_LOSS_RTOL,
    TRAJECTORY_PARAM_ATOL,
    assert_close,
    exit_code,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS = 100
DTYPE = "float64"
V = 9  # vocabulary of the token models


# the zoo, beyond examples/ -------------------------------------------------------------------------


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ints(high, *shape, seed=0):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


class DictOutputs(tnn.Module):
    """Returns {"logits", "loss"}, as Hugging Face models do: checked with loss=None."""

    def __init__(self):
        super().__init__()
        self.embed = tnn.Embedding(V, 5)
        self.gru = tnn.GRU(5, 6, batch_first=True)
        self.head = tnn.Linear(6, V)

    def forward(self, ids_BxT, targets_BxT):
        h_BxTxH, _ = self.gru(self.embed(ids_BxT))
        logits_BxTxV = self.head(h_BxTxH)
        return {"logits": logits_BxTxV, "loss": F.cross_entropy(logits_BxTxV.transpose(1, 2), targets_BxT)}


def dict_outputs():
    model = DictOutputs().double()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=5e-3, momentum=0.5, centered=True)
    batches = [(_ints(V, 3, 6, seed=s), _ints(V, 3, 6, seed=100 + s)) for s in range(10)]
    return dict(model=model, optimizer=optimizer, batches=batches, steps=STEPS)


class ProjectedTimeMajor(tnn.Module):
    """Time-major (batch_first=False) 2-layer LSTM with proj_size; returns (prediction, (h_n, c_n))."""

    def __init__(self):
        super().__init__()
        self.lstm = tnn.LSTM(4, 6, num_layers=2, proj_size=3)
        self.head = tnn.Linear(3, 2)

    def forward(self, x_TxBxI):
        out_TxBxP, (h, c) = self.lstm(x_TxBxI)
        return self.head(out_TxBxP), (h, c)


def projected_time_major():
    model = ProjectedTimeMajor().double()
    optimizer = torch.optim.Adagrad(
        model.parameters(), lr=0.05, lr_decay=1e-3, weight_decay=1e-4, initial_accumulator_value=0.1
    )
    x = _randn(7, 3, 4)
    return dict(model=model, optimizer=optimizer, loss="mse", batches=(x, torch.tanh(x[..., :2].cumsum(0))))


class TiedLM(tnn.Module):
    """Embedding and output layer share one weight; a ReLU RNN between them."""

    def __init__(self):
        super().__init__()
        self.embed = tnn.Embedding(V, 6)
        self.rnn = tnn.RNN(6, 6, nonlinearity="relu", batch_first=True)
        self.head = tnn.Linear(6, V)
        self.head.weight = self.embed.weight

    def forward(self, ids_BxT):
        h_BxTxH, _ = self.rnn(self.embed(ids_BxT))
        return self.head(h_BxTxH).flatten(0, 1)


def tied_lm():
    model = TiedLM().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.98)
    ids = _ints(V, 4, 8, seed=1)
    batches = (ids[:, :-1], ids[:, 1:].reshape(-1))
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, loss="cross_entropy", batches=batches)


class BatchNormMLP(tnn.Module):
    def __init__(self):
        super().__init__()
        self.net = tnn.Sequential(tnn.Linear(5, 8), tnn.BatchNorm1d(8, momentum=0.2), tnn.GELU(), tnn.Linear(8, 2))

    def forward(self, x_BxI):
        return self.net(x_BxI)


def batch_norm_train_mode():
    """Training mode: batch statistics, running ones updated (and compared); two param groups."""
    model = BatchNormMLP().double().train()
    first, last = list(model.net[:2].parameters()), list(model.net[3].parameters())
    optimizer = torch.optim.Adam(
        [{"params": first, "lr": 1e-2}, {"params": last, "lr": 3e-3, "weight_decay": 1e-2, "amsgrad": True}]
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 60], gamma=0.5)
    batches = [(_randn(16, 5, seed=s), _randn(16, 2, seed=50 + s)) for s in range(10)]
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, loss="smooth_l1", batches=batches, steps=STEPS)


class ConvGELU(tnn.Module):
    """Dilated Conv1d -> GELU (tanh) -> GRU -> mean over time -> Linear: two logits per sequence."""

    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv1d(3, 4, kernel_size=3, dilation=2, padding=2)
        self.act = tnn.GELU(approximate="tanh")
        self.gru = tnn.GRU(4, 5, batch_first=True)
        self.head = tnn.Linear(5, 2)

    def forward(self, x_BxCxL):
        h_BxLxH, _ = self.gru(self.act(self.conv(x_BxCxL)).transpose(1, 2))
        return self.head(h_BxLxH.mean(dim=1))


def conv_gelu():
    model = ConvGELU().double()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=STEPS)
    x = _randn(6, 3, 9)
    targets = (x.mean(dim=2)[:, :2] > 0).double()
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, clip_grad_norm=0.5, loss="bce_with_logits",
                batches=(x, targets))  # fmt: skip


class StackedRNN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = tnn.RNN(2, 5, num_layers=2, batch_first=True)
        self.head = tnn.Linear(5, 1)

    def forward(self, x_BxTxI):
        return self.head(self.rnn(x_BxTxI)[0])


def stacked_rnn():
    model = StackedRNN().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.5, total_iters=50)
    x = _randn(3, 8, 2)
    return dict(model=model, optimizer=optimizer, scheduler=scheduler, clip_grad_norm=1.0, loss="l1",
                batches=(x, x.sum(dim=2, keepdim=True).cumsum(dim=1) / 8))  # fmt: skip


class LSTMRegressor(tnn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = tnn.LSTM(3, 6, batch_first=True)
        self.head = tnn.Linear(6, 1)

    def forward(self, x_BxTxI):
        return self.head(self.lstm(x_BxTxI)[0])


class HandWrittenPort(nnx.Module):
    """A correct port of LSTMRegressor from jaxseq's layers, its variables at torch's paths."""

    def __init__(self):
        rngs = nnx.Rngs(0)
        self.lstm = jaxseq.LSTM(3, 6, batch_first=True, param_dtype=jnp.float64, rngs=rngs)
        self.head = jaxseq.nn.Linear(6, 1, param_dtype=jnp.float64, rngs=rngs)

    def __call__(self, x_BxTxI):
        return self.head(self.lstm(x_BxTxI)[0])


def hand_written_port():
    model = LSTMRegressor().double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    x = _randn(4, 6, 3)
    return dict(model=model, optimizer=optimizer, loss="mse", batches=(x, x[..., :1].cumsum(dim=1) / 6),
                jax_model=HandWrittenPort())  # fmt: skip


def example(name: str) -> Callable[[], dict]:
    return lambda: parity.load_setup(str(EXAMPLES / f"{name}.py"))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], dict]

    def __str__(self):
        return self.name


ZOO = [
    Case("char-lm", example("char_lm")),
    Case("speech", example("speech")),
    Case("padded-classifier", example("padded_classifier")),
    Case("dict-outputs", dict_outputs),
    Case("projected-time-major", projected_time_major),
    Case("tied-lm", tied_lm),
    Case("batch-norm-train-mode", batch_norm_train_mode),
    Case("conv-gelu", conv_gelu),
    Case("stacked-rnn", stacked_rnn),
    Case("hand-written-port", hand_written_port),
]


@dataclasses.dataclass
class Checked:
    case: Case
    model: tnn.Module  # the torch model, trained by check
    report: parity.ParityReport


@pytest.fixture(scope="module", params=ZOO, ids=str)
def checked(request) -> Checked:
    torch.manual_seed(0)
    setup = request.param.make()
    setup["steps"] = STEPS
    return Checked(request.param, setup["model"], parity.check(**setup))


# parity of the zoo -----------------------------------------------------------------------------------


def test_forward_before_training(checked):
    atol = FORWARD_ATOL[DTYPE]
    assert checked.report.output_diffs, f"{checked.case}: no outputs compared"
    for name, d in checked.report.output_diffs.items():
        assert d <= atol, f"{checked.case} forward {name}: max abs difference {d:.3g} > atol {atol:g}"


def test_gradients_at_first_step(checked):
    atol = GRAD_ATOL[DTYPE]
    report = checked.report
    assert list(report.grad_diffs) == [n for n, _ in checked.model.named_parameters()], f"{checked.case}: parameters"
    for name, d in report.grad_diffs.items():
        assert d <= atol, f"{checked.case} d/d{name} at step 1: max abs difference {d:.3g} > atol {atol:g}"


def test_loss_at_every_step(checked):
    rtol = TRAJECTORY_LOSS_RTOL[DTYPE]
    report = checked.report
    assert report.steps == STEPS and report.jax_losses.shape == (STEPS,), f"{checked.case}: {report.steps} steps"
    assert_close(
        f"{checked.case} loss at every step (rtol {rtol:g})", report.jax_losses, report.torch_losses, rtol=rtol
    )
    assert report.max_rel_loss_diff <= rtol, f"{checked.case}: max_rel_loss_diff {report.max_rel_loss_diff:.3g}"
    assert np.ptp(report.torch_losses) > 0, f"{checked.case}: the loss never changed; the check would prove little"


def test_parameters_after_every_step(checked):
    atol = TRAJECTORY_PARAM_ATOL[DTYPE]
    report = checked.report
    assert report.names[: report.parameters] == tuple(n for n, _ in checked.model.named_parameters())
    for step, row in enumerate(report.diffs_SxN, start=1):
        for name, d in zip(report.names, row, strict=True):
            assert d <= atol, f"{checked.case} {name} after step {step}: max abs difference {d:.3g} > atol {atol:g}"
    assert report.first_divergence is None, f"{checked.case}: {report.first_divergence}"
    assert report.ok, f"{checked.case}: {report.problem}"


def test_report_numbers_are_the_models(checked):
    """The report's final differences are those of the two trained models, recomputed here."""
    state = jaxseq.to_torch_state_dict(checked.report.jax_model)
    torch_state = checked.model.state_dict()
    for name, d in checked.report.param_diffs.items():
        expected = float(np.max(np.abs(state[name] - torch_state[name].numpy()), initial=0.0))
        assert d == expected, f"{checked.case} {name}: report says {d:.3g}, the models differ by {expected:.3g}"
    if checked.case.name == "batch-norm-train-mode":
        assert {"net.1.running_mean", "net.1.running_var"} <= set(checked.report.names), "buffers not compared"
        for framework, tracked in (
            ("torch", torch_state["net.1.num_batches_tracked"]),
            ("JAX", state["net.1.num_batches_tracked"]),
        ):
            assert int(tracked) == STEPS, f"{framework}'s BatchNorm counted {int(tracked)} batches, not {STEPS}"


def test_report_json_and_table(checked):
    """to_dict is JSON without NaN (report.json; parity.png is drawn in the command-line tests)."""
    report = checked.report
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["ok"] is True and data["steps"] == STEPS and data["first_divergence"] is None
    assert data["max_rel_loss_diff"] == report.max_rel_loss_diff
    assert data["max_abs_param_diff"] == report.max_abs_param_diff
    assert list(data["param_diffs"]) == list(report.names)
    table = report.table()
    assert all(name in table for name in report.names) and "ok: within the float64 tolerances" in table


def test_jax_training_is_checks_jax_side():
    """`parity.jax_training` hands out the step `check` trains (to time it, as benchmarks/zoo.py does,
    or to go on in JAX): 5 steps on it give check's JAX losses bit for bit (AdamW, a cosine
    schedule and clipping, on 5 different batches)."""
    steps, rng = 5, np.random.default_rng(0)
    batches = [(rng.normal(size=(8, 3)), rng.normal(size=(8, 1))) for _ in range(steps)]

    def setup():
        torch.manual_seed(0)
        model = tnn.Sequential(tnn.Linear(3, 16), tnn.Tanh(), tnn.Linear(16, 1)).double()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return dict(model=model, optimizer=optimizer, scheduler=scheduler, loss="mse", clip_grad_norm=0.5)

    report = parity.check(**setup(), batches=batches, steps=steps)
    training = parity.jax_training(**setup(), batch=batches[0], steps=steps)
    step, state, losses = jax.jit(training.step, static_argnums=0), training.state, []
    with jax.default_matmul_precision("highest"):  # as check runs it
        for batch in batches:
            arrays, static = training.arrays_of(batch)
            state, metrics = step(static, state, arrays)
            losses.append(float(metrics["loss"]))
    assert report.ok and np.ptp(losses) > 0
    assert losses == report.jax_losses.tolist()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_check_tolerances_are_the_tests(dtype):
    """`report.ok` means within the parity tests' own tolerances."""
    expected = parity.Tolerances(
        forward=FORWARD_ATOL[dtype],
        gradient=GRAD_ATOL[dtype],
        loss=TRAJECTORY_LOSS_RTOL[dtype],
        param=TRAJECTORY_PARAM_ATOL[dtype],
    )
    assert parity.TOLERANCES[dtype] == expected, f"{dtype}: {parity.TOLERANCES[dtype]} != {expected}"


def test_float32_model_gets_float32_tolerances():
    """A float32 model: the report picks float32's tolerances, and the run holds to them."""
    torch.manual_seed(0)
    model = StackedRNN().float()
    x = _randn(3, 8, 2).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    report = parity.check(model, (x, x.cumsum(dim=1)[..., :1] / 8), optimizer=optimizer, loss="mse", steps=STEPS)
    assert report.dtype == "float32" and report.tolerances == parity.TOLERANCES["float32"]
    checks = [
        ("forward", max(report.output_diffs.values()), FORWARD_ATOL["float32"]),
        ("gradients", max(report.grad_diffs.values()), GRAD_ATOL["float32"]),
        ("loss, relative", report.max_rel_loss_diff, TRAJECTORY_LOSS_RTOL["float32"]),
        ("parameters", report.diffs_SxN.max(), TRAJECTORY_PARAM_ATOL["float32"]),
    ]
    for what, d, bound in checks:
        assert d <= bound, f"float32 stacked-rnn {what}: max difference {d:.3g} > {bound:g}"
    assert report.ok, report.problem


# the wrong port ----------------------------------------------------------------------------------------


def test_wrong_port_is_caught():
    """The port holds bias_hh_l0 as a constant: forward and first loss agree, the first Adam step
    moves torch's bias_hh_l0 and not the port's; every other parameter gets the same update."""
    report = parity.check(**parity.load_setup(str(EXAMPLES / "wrong_port.py")) | {"steps": 10})
    divergence = report.first_divergence
    assert divergence is not None and (divergence.step, divergence.name) == (1, "lstm.bias_hh_l0"), divergence
    assert str(divergence).startswith("diverges at step 1, first in `lstm.bias_hh_l0`"), str(divergence)
    assert not report.ok and report.problem == str(divergence)
    assert report.untrained == ("lstm.bias_hh_l0",)
    atol = FORWARD_ATOL[DTYPE]
    assert report.output_diffs["output"] <= atol, f"wrong port forward: {report.output_diffs} (atol {atol:g})"
    assert report.loss_rel_diffs[0] <= TRAJECTORY_LOSS_RTOL[DTYPE], "the first loss precedes any update"
    step1 = dict(zip(report.names, report.diffs_SxN[0], strict=True))
    for name, d in step1.items():
        if name != "lstm.bias_hh_l0":
            assert d <= TRAJECTORY_PARAM_ATOL[DTYPE], f"wrong port {name} after step 1: {d:.3g}"


# errors of check ------------------------------------------------------------------------------------------


def _small():
    model = LSTMRegressor().double()
    x = _randn(2, 3, 3)
    return model, (x, x[..., :1]), torch.optim.SGD(model.parameters(), lr=0.1)


class MissingHead(nnx.Module):
    def __init__(self):
        self.lstm = HandWrittenPort().lstm


class ExtraParam(HandWrittenPort):
    def __init__(self):
        super().__init__()
        self.scale = nnx.Param(jnp.ones(1))


class WrongShape(HandWrittenPort):
    def __init__(self):
        super().__init__()
        self.head = jaxseq.nn.Linear(5, 1, param_dtype=jnp.float64, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "port,message",
    [
        (MissingHead, "the JAX model has no variable at `head.weight`"),
        (ExtraParam, "the JAX model's parameter `scale` is not in the torch state_dict"),
        (WrongShape, "`head.weight`: torch's shape is (1, 6), the JAX model's (1, 5)"),
    ],
)
def test_hand_written_port_loaded_by_name(port, message):
    model, batch, optimizer = _small()
    with pytest.raises(ConversionError) as e:
        parity.check(model, batch, optimizer=optimizer, loss="mse", jax_model=port())
    assert message in str(e.value), str(e.value)


class DropoutLM(tnn.Module):
    def __init__(self, functional: bool):
        super().__init__()
        self.functional = functional
        self.lstm = tnn.LSTM(3, 4, num_layers=2, dropout=0.0 if functional else 0.3, batch_first=True)

    def forward(self, x):
        out = self.lstm(x)[0]
        return F.dropout(out, 0.2, training=self.training) if self.functional else out


@pytest.mark.parametrize("functional,message", [(False, "LSTM(dropout=0.3) at `lstm`"), (True, "aten.native_dropout.default at")])
def test_dropout_in_training_mode_refused(functional, message):
    """Masks are drawn differently in torch and JAX: refused, with the way out."""
    model = DropoutLM(functional).double()
    x = _randn(2, 3, 3)
    with pytest.raises(OptionError, match="call model.eval\\(\\) or set the dropout to 0") as e:
        parity.check(model, (x, x[..., :1].expand(2, 3, 4)), optimizer=torch.optim.SGD(model.parameters()), loss="mse")
    assert message in str(e.value), str(e.value)  # in eval mode, as char-lm's LSTM(dropout=0.2), it checks


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(loss="hinge"), "loss must be one of mse, cross_entropy"),
        (dict(batches=[torch.ones(2)]), "batches holds Tensor"),
        (dict(batches=torch.ones(2)), "batches must be one tuple"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(loss=None, batches=(_randn(2, 3, 3),)), "with loss=None the model must return its loss"),
        (dict(model="lstm"), "model must be a torch.nn.Module"),
    ],
)
def test_bad_arguments(change, message):
    model, batch, optimizer = _small()
    arguments = dict(model=model, batches=batch, optimizer=optimizer, loss="mse", steps=1) | change
    with pytest.raises(OptionError, match=message):
        parity.check(**arguments)


# the command line ---------------------------------------------------------------------------------------


def test_cli_check_char_lm(tmp_path, capsys):
    out = tmp_path / "tmp"
    assert cli.main(["check", str(EXAMPLES / "char_lm.py"), "--steps", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CharLM (float64, eval mode), 20 steps" in printed and "ok: within the float64 tolerances" in printed, printed
    data = json.loads((out / "report.json").read_text())
    keys = {"ok", "steps", "max_rel_loss_diff", "max_abs_param_diff", "first_divergence", "param_diffs", "grad_diffs"}
    assert keys <= set(data), sorted(data)
    assert data["ok"] is True and data["steps"] == 20 and data["first_divergence"] is None
    assert data["max_rel_loss_diff"] <= TRAJECTORY_LOSS_RTOL[DTYPE]
    assert data["max_abs_param_diff"] <= TRAJECTORY_PARAM_ATOL[DTYPE]
    assert (out / "parity.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["parity.png", "report.json"], "temporary files left behind"


def test_cli_wrong_port_exits_1(tmp_path, capsys):
    out = tmp_path / "wrong"
    code = cli.main(["check", str(EXAMPLES / "wrong_port.py"), "--steps", "2", "--out", str(out)])
    printed = capsys.readouterr()
    verdict = "diverges at step 1, first in `lstm.bias_hh_l0`"
    assert (printed.out + printed.err).count(verdict) == 1, "the verdict is printed once"
    assert printed.out.splitlines()[-2].startswith("DIFFERS: ") and verdict in printed.out.splitlines()[-2]
    assert code == 1 and printed.err.count("\n") == 1 and "torch and JAX differ" in printed.err, printed.err
    assert json.loads((out / "report.json").read_text())["first_divergence"]["name"] == "lstm.bias_hh_l0"


GOOD = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.linear(x)

def make():
    model = Net().double()
    x = torch.ones(3, 2, dtype=torch.float64)
    return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), loss="mse", batches=(x, x[:, :1]))
"""

BAD_FILES = [
    # (id, file text or None for no file, ":FUNCTION" or "", what the one line says)
    ("missing-file", None, "", "no such file"),
    ("syntax-error", "def make(:\n", "", "line 1: syntax error"),
    ("import-raises", "raise RuntimeError('no data here')\n", "", "raised RuntimeError: no data here (line 1)"),
    ("no-such-function", GOOD, ":build", "has no function 'build'"),
    ("function-raises", GOOD + "\ndef broken():\n    raise ValueError('bad sizes')\n", ":broken",
     f"broken() raised ValueError: bad sizes (line {len(GOOD.splitlines()) + 3})"),
    ("not-a-dict", GOOD + "\ndef three():\n    return 3\n", ":three", "returned int, not a dict"),
    ("missing-key", GOOD.replace("optimizer=torch.optim.SGD(model.parameters(), lr=0.1), ", ""), "",
     "returned no 'optimizer'"),
    ("unsupported-op", GOOD.replace("return self.linear(x)", "return torch.special.bessel_j0(self.linear(x))"), "",
     "1 op not in jaxseq's op table: aten.special_bessel_j0.default"),
    ("model-raises-on-batch", GOOD.replace("x = torch.ones(3, 2,", "x = torch.ones(3, 5,"), "",
     "RuntimeError: a and b must have same reduction dim"),
    ("untraceable-forward", GOOD.replace("return self.linear(x)", "return self.linear(x) if x.sum() > 0 else x"), "",
     "torch.export cannot capture forward"),
]  # fmt: skip


@pytest.mark.parametrize("text,function,message", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_cli_bad_input_exits_2(text, function, message, tmp_path, capsys):
    path = tmp_path / "model.py"
    if text is not None:
        path.write_text(text)
    out = tmp_path / "out"
    code = exit_code(cli.main, "check", f"{path}{function}", "--out", str(out))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, (code, err)
    assert not out.exists(), "--out made for a check that could not run"


def test_good_file_checks(tmp_path, capsys):
    """The file the bad ones are made from is fine: the errors above are the changes' doing."""
    (tmp_path / "model.py").write_text(GOOD)
    assert cli.main(["check", str(tmp_path / "model.py"), "--steps", "3", "--out", str(tmp_path / "out")]) == 0
    assert "ok: within the float64 tolerances" in capsys.readouterr().out
