"""The whole op table, once every module of ops has registered its functions (`jaxseq.port.registry`).

Kept apart from the registry so that op modules import the registry and nothing imports back.
"""

from __future__ import annotations

import importlib

from jaxseq.port.registry import OPS, Op

OP_MODULES = ("jaxseq.port.aten", "jaxseq.port.recurrent", "jaxseq.port.losses")  # each registers its ops on import


def table() -> dict[str, Op]:
    """{operator name: Op} for every supported operator."""
    for module in OP_MODULES:
        importlib.import_module(module)
    return OPS


def supported() -> list[str]:
    """Every supported operator name, sorted (ATen overloads first)."""
    return sorted(table(), key=lambda name: (not name.startswith("aten."), name))
