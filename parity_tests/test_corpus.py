"""jaxseq.parity.check on every setup of parity_tests/corpus (models written for this project
after public recurrent models, see corpus/README.md): torch and JAX trained side by side, step by
step. KNOWN_FAILURES states exactly which setups do not pass today, with the error they give;
those are strict xfails, so a fix shows up as an XPASS failure to remove from the list."""

import importlib

import pytest

from jaxseq import parity
from parity_tests.corpus import PLAIN, UPSTREAM

KNOWN_FAILURES = {
    "algoperf_deepspeech.make": "ConversionError: CTCObjective: torch.export cannot capture forward at "
    "algoperf_deepspeech.py: lengths = torch.sum(1 - paddings, dim=1).detach().cpu().numpy(): RuntimeError: "
    ".numpy() is not supported for tensor subclasses.",
}


def _params(pairs):
    out = []
    for module, function in pairs:
        case = f"{module}.{function}"
        marks = []
        if case in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case]))
        out.append(pytest.param(module, function, id=case, marks=marks))
    return out


def _check(module, function):
    setup = getattr(importlib.import_module(f"parity_tests.corpus.{module}"), function)()
    report = parity.check(**setup)
    assert report.ok, f"{report.problem}\n{report.table()}"


@pytest.mark.parametrize("module,function", _params(PLAIN))
def test_plain(module, function):
    _check(module, function)


@pytest.mark.parametrize("module,function", _params(UPSTREAM))
def test_upstream(module, function):
    _check(module, function)
