"""The front end: a torch module's forward, captured with torch.export, as a `Program` of core ATen.

    program = export_program(module, args, kwargs)

1. `torch.export.export(module, args, kwargs, strict=False)`, in the module's mode, with every
   dimension of every tensor argument `Dim.AUTO` (export keeps dynamic what it can: usually the
   batch; a recurrent layer specialises the sequence length), and the calls of `OPAQUE` replaced
   by jaxseq's own torch ops (`OPAQUE`), so export keeps them whole: a recurrent layer fed
   `pack_padded_sequence` (whose batch sizes are data-dependent), and `F.ctc_loss` (whose
   alignment table has a data-dependent shape); nn.Transformer's look at whether a mask is
   causal (a value-dependent `.all()`) takes the `is_causal` hint only (`opaque_calls`).
2. Each result of a `torch.no_grad()` block gets an `aten.detach` (export records the block as a
   `wrap_with_set_grad_enabled` call, which decomposing inlines without a trace of it).
3. `run_decompositions` down to core ATen, except what jaxseq runs whole (`KEEP`): recurrent
   layers and cells, and `detach` (decomposed, it becomes `alias`, and its gradient would flow).
4. Every node is checked against the op table: one ConversionError lists every op that is not
   there, each with its line in the user's forward.

torch is imported by these functions only; the Program they return holds no torch object.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import traceback

import numpy as np

from jaxseq.errors import ConversionError, one_line
from jaxseq.port.program import Const, DType, Node, Program, Ref
from jaxseq.port.table import table

# Ops that stay whole when decomposing to core ATen: jaxseq runs them as they are.
KEEP = (
    "lstm.input", "gru.input", "rnn_tanh.input", "rnn_relu.input",
    "lstm_cell.default", "gru_cell.default", "rnn_tanh_cell.default", "rnn_relu_cell.default",
    "detach.default",
)

# What a forward may do that torch.export cannot capture, as (pattern in torch's message, what to write instead).
CAPTURE_FIXES = (
    (r"\.numpy\(\)|numpy", "keep the values a tensor: no `.numpy()` / `.tolist()` in forward (pass lengths as a tensor)"),
    (r"\.item\(\)|_local_scalar_dense|item", "keep the value a tensor: no `.item()` deciding what forward does"),
    (r"data-dependent|GuardOnDataDependentSymNode|Could not guard on data-dependent",
     "forward branches on a tensor's values (an `if` or a loop bound read from data): compute both sides and "
     "pick with torch.where, or move the decision out of forward"),
)


def torch_name(target) -> str:
    """The op table's name for a graph node's target: "aten.add.Tensor", "operator.getitem", ..."""
    if hasattr(target, "_schema") or type(target).__name__ in ("OpOverload", "HigherOrderOperator"):
        return str(target)
    module = getattr(target, "__module__", None) or "builtins"
    module = {"_operator": "operator"}.get(module, module)
    return f"{module}.{getattr(target, '__name__', repr(target))}"


@functools.cache
def decomposition_table() -> dict:
    """torch.export's default decompositions, without the ops of KEEP."""
    import torch

    aten = torch.ops.aten
    decompositions = torch.export.default_decompositions()
    for name in KEEP:
        packet, overload = name.split(".")
        decompositions.pop(getattr(getattr(aten, packet), overload), None)
    return decompositions


def export_program(module, args: tuple, kwargs: dict) -> Program:
    """`module`'s forward on (args, kwargs), in its mode, as a Program; ConversionError when it
    cannot be captured (with the reason and the rewrite) or uses ops outside the table (all of them).

    Exported first with every dimension `Dim.AUTO`, then, where that export or its decomposition
    fails, with the example's shapes fixed (a new shape then exports again)."""
    import torch
    from torch.export import Dim

    def auto(x):
        return {i: Dim.AUTO for i in range(x.ndim)} if isinstance(x, torch.Tensor) and x.ndim else None

    _torch_ops()
    attempts = [None]
    if not kwargs:
        attempts.insert(0, tuple(torch.utils._pytree.tree_map(auto, list(args))))
    errors = []
    for shapes in attempts:
        try:
            with opaque_calls(module), _quiet():
                exported = torch.export.export(module, tuple(args), dict(kwargs), dynamic_shapes=shapes, strict=False)
        except Exception as e:  # the user's forward: classified below
            errors.append(("capture", e))
            continue
        _detach_no_grad_results(exported.graph_module)
        try:
            with _quiet():
                exported = exported.run_decompositions(decomposition_table())
        except Exception as e:  # a decomposition that needs what export could not give
            errors.append(("decompose", e))
            continue
        _check_ops(exported.graph, type(module).__name__)
        return _program(exported, module, args, kwargs)
    kind, error = errors[-1]
    if kind == "decompose":
        raise ConversionError(
            f"{type(module).__name__}: torch could not decompose the exported graph: {one_line(error)[:300]}"
        ) from error
    raise ConversionError(_capture_message(module, error)) from error


@contextlib.contextmanager
def _quiet():
    """No warnings, logs or prints from torch while exporting: what fails is reported in one line."""
    import io
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("torch")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _capture_message(module, error: Exception) -> str:
    """One line: what in forward torch.export could not capture, where, and what to write instead."""
    text = str(error)
    where = _user_frame(traceback.extract_tb(error.__traceback__)) or _user_line_in(text)
    match = next(((pattern, fix) for pattern, fix in CAPTURE_FIXES if re.search(pattern, text)), None)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if match is not None:  # torch's own message may start with a dump of the graph: take the line that says why
        first = next((line for line in lines if re.search(match[0], line)), lines[0] if lines else "")
    else:
        first = lines[0] if lines else ""
    message = f"{type(module).__name__}: torch.export cannot capture forward"
    message += f" at {where}" if where else ""
    message += f": {type(error).__name__}: {first[:240]}"
    return message + (f"; {match[1]}" if match else "")


def _user_frame(frames) -> str:
    """The innermost frame outside torch, jaxseq and the standard library, as "file:line: code"."""
    for frame in reversed(frames):
        if _is_user_file(frame.filename):
            return f"{_short(frame.filename)}:{frame.lineno}: {(frame.line or '').strip()}"
    return ""


def _user_line_in(text: str) -> str:
    for file, line in reversed(re.findall(r'File "([^"]+)", line (\d+)', text)):
        if _is_user_file(file):
            return f"{_short(file)}:{line}"
    return ""


def _is_user_file(filename: str) -> bool:
    parts = filename.replace("\\", "/")
    skip = ("/torch/", "/jaxseq/port/", "/jaxseq/parity/", "/site-packages/", "<frozen", "/lib/python3")
    return not any(s in parts for s in skip) and not parts.startswith("<")


def _short(filename: str) -> str:
    import os

    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return rel if not rel.startswith("..") else filename


def _where(node) -> str:
    """The user's line a graph node came from, from export's recorded stack trace."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', trace)
    for file, line, code in reversed(frames):
        if _is_user_file(file):
            return f"{_short(file)}:{line}: {code.strip()}"
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else "(no source line recorded)"


def _check_ops(graph, name: str) -> None:
    ops = table()
    missing: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.op == "call_function" and torch_name(node.target) not in ops:
            missing.setdefault(torch_name(node.target), []).append(_where(node))
        elif node.op in ("call_module", "call_method"):
            missing.setdefault(f"{node.op} {node.target}", []).append(_where(node))
    if missing:
        listed = "; ".join(f"{op} (at {', '.join(sorted(set(lines))[:3])})" for op, lines in missing.items())
        raise ConversionError(
            f"{name}: {len(missing)} op{'s' if len(missing) > 1 else ''} not in jaxseq's op table: {listed}. "
            "See docs/porting-ops.md for what is supported and docs/porting.md for what to write instead"
        )


def _detach_no_grad_results(graph_module) -> None:
    """After each `with torch.no_grad():` block of the exported graph, detach what it returns; drop
    export's guard call (shapes are checked by `Program.accepts`)."""
    import torch

    wrap = getattr(torch.ops.higher_order, "wrap_with_set_grad_enabled", None)
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            graph.erase_node(node)  # export's check of the input shapes: the Program checks them itself
            continue
        if node.op != "call_function" or node.target is not wrap or node.args[0] is not False:
            continue
        for user in list(node.users):
            if user.op == "call_function" and user.target.__name__ == "getitem":
                with graph.inserting_after(user):
                    detached = graph.call_function(torch.ops.aten.detach.default, (user,))
                detached.meta = dict(user.meta)
                user.replace_all_uses_with(detached, delete_user_cb=lambda n, d=detached: n is not d)
    graph.lint()
    graph_module.recompile()


# ---------------------------------------------------------------------------------------------
# The graph as plain data


def _np_dtype(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtypes(value):
    import torch

    if isinstance(value, torch.Tensor):
        return _np_dtype(value.dtype)
    if isinstance(value, tuple | list):
        return tuple(_dtypes(v) for v in value)
    return None


def _encode(arg):
    import torch

    if isinstance(arg, torch.fx.Node):
        return Ref(arg.name)
    if isinstance(arg, torch.dtype):
        return DType(_np_dtype(arg))
    if isinstance(arg, torch.device | torch.layout | torch.memory_format):
        return None
    if isinstance(arg, tuple | list):  # fx's immutable lists too
        return (list if isinstance(arg, list) else tuple)(_encode(a) for a in arg)
    if isinstance(arg, bool | int | float | str) or arg is None:
        return arg
    raise ConversionError(f"an argument of type {type(arg).__name__} in the exported graph cannot be converted")


def _const(tensor) -> Const:
    values = tensor.detach().cpu().numpy()
    return Const(str(values.dtype), tuple(values.shape), tuple(values.reshape(-1).tolist()))


def _program(exported, module, args, kwargs) -> Program:
    import torch
    from torch.export.graph_signature import InputKind, OutputKind
    from torch.utils import _pytree as pytree

    signature = exported.graph_signature
    state, constants, user = [], [], []
    for spec in signature.input_specs:
        name = spec.arg.name
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            state.append((name, spec.target))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            constants.append((name, _const(exported.constants[spec.target])))
        elif spec.kind == InputKind.USER_INPUT:
            user.append(name if isinstance(spec.arg, torch.export.graph_signature.TensorArgument) else None)
        else:
            raise ConversionError(f"{type(module).__name__}: exported input of kind {spec.kind.name} is not supported")

    leaves = pytree.tree_leaves((tuple(args), dict(kwargs)))
    shapes = []
    placeholders = {n.name: n for n in exported.graph.nodes if n.op == "placeholder"}
    for leaf, name in zip(leaves, user, strict=True):
        if name is None or not isinstance(leaf, torch.Tensor):
            shapes.append(None)
            continue
        dims = placeholders[name].meta["val"].shape
        shapes.append(tuple(_dim(d) for d in dims))

    nodes, output = _nodes(exported.graph)

    mutations, user_outputs = [], []
    for spec, value in zip(signature.output_specs, output, strict=True):
        if spec.kind == OutputKind.BUFFER_MUTATION:
            mutations.append((_encode(value), spec.target))
        elif spec.kind == OutputKind.USER_OUTPUT:
            user_outputs.append(_encode(value))
        else:
            raise ConversionError(f"{type(module).__name__}: exported output of kind {spec.kind.name} is not supported")
    structure = pytree.tree_unflatten(user_outputs, exported.call_spec.out_spec)
    return Program(
        state=tuple(state),
        constants=tuple(constants),
        inputs=tuple(user),
        in_tree=_tree_of(args, kwargs),
        shapes=tuple(shapes),
        nodes=tuple(nodes),
        output=_plain(structure),
        mutations=tuple(mutations),
        training=bool(module.training),
    )


def _nodes(graph) -> tuple[tuple[Node, ...], object]:
    """(the graph's calls as Nodes, the output node's argument)."""
    nodes, output = [], None
    for node in graph.nodes:
        if node.op == "call_function":
            kwargs = tuple((k, _encode(v)) for k, v in node.kwargs.items())
            dtypes = _dtypes(node.meta.get("val"))
            nodes.append(Node(node.name, torch_name(node.target), _encode(node.args), kwargs, dtypes, _where(node)))
        elif node.op == "output":
            output = node.args[0]
    return tuple(nodes), output


def graph_program(graph_module, args) -> Program:
    """A Program of a plain fx graph whose placeholders are the flat tensors `args` (e.g. from
    make_fx with `decomposition_table()`): how the op tests run torch's OpInfo samples."""
    import torch

    placeholders = [n.name for n in graph_module.graph.nodes if n.op == "placeholder"]
    nodes, output = _nodes(graph_module.graph)
    _check_ops(graph_module.graph, "graph")
    out = output[0] if isinstance(output, list | tuple) and len(output) == 1 else output
    constants = tuple(
        (n.name, _const(getattr(graph_module, n.target))) for n in graph_module.graph.nodes if n.op == "get_attr"
    )
    return Program(
        state=(), constants=constants, inputs=tuple(placeholders), in_tree=_tree_of(tuple(args), {}),
        shapes=tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else None for a in args), nodes=nodes,
        output=_plain(_encode(out)), mutations=(), training=False,
    )


def _dim(size):
    """A placeholder's dimension: an int where export fixed it, else its symbol's name ("s23")."""
    text = str(size)
    return int(text) if text.lstrip("-").isdigit() else text


def _plain(structure):
    """torch's output structure with only tuples, lists and dicts (a namedtuple or a PackedSequence
    stand-in becomes a tuple)."""
    if isinstance(structure, Ref) or structure is None or isinstance(structure, bool | int | float | str):
        return structure
    if isinstance(structure, dict):
        return {k: _plain(v) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_plain(v) for v in structure]
    if isinstance(structure, tuple):
        return tuple(_plain(v) for v in structure)
    return structure


def _tree_of(args, kwargs):
    from jaxseq.port.program import flatten_call

    import torch

    marked = torch.utils._pytree.tree_map(lambda x: 0 if isinstance(x, torch.Tensor) else x, (tuple(args), dict(kwargs)))
    return flatten_call(*marked)[1]


# ---------------------------------------------------------------------------------------------
# Calls kept whole during export (OPAQUE): jaxseq's torch ops, defined on first use


class PackedStandIn:
    """What `pack_padded_sequence` returns during export: the padded input and its lengths."""

    def __init__(self, padded, lengths, batch_first):
        self.padded, self.lengths, self.batch_first = padded, lengths, batch_first


@functools.cache
def _torch_ops():
    """Defines jaxseq's torch ops (their shapes only: they exist to be exported, never run)."""
    import torch

    @torch.library.custom_op(
        "jaxseq::packed_rnn", mutates_args=(),
        schema="(Tensor input, Tensor lengths, Tensor[] hx, Tensor[] params, str mode, bool has_biases, "
        "int num_layers, float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor, Tensor)",
    )
    def packed_rnn(input, lengths, hx, params, mode, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        raise NotImplementedError("jaxseq::packed_rnn stands for a packed recurrent layer during export only")

    @packed_rnn.register_fake
    def _(input, lengths, hx, params, mode, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        T, B = (input.shape[1], input.shape[0]) if batch_first else (input.shape[0], input.shape[1])
        h_out = hx[0].shape[-1]
        out_shape = (B, T, (2 if bidirectional else 1) * h_out) if batch_first else (T, B, (2 if bidirectional else 1) * h_out)
        c = hx[1].new_empty(hx[1].shape) if mode == "lstm" else input.new_empty((0,))
        return input.new_empty(out_shape), hx[0].new_empty(hx[0].shape), c

    @torch.library.custom_op(
        "jaxseq::ctc_loss", mutates_args=(),
        schema="(Tensor log_probs, Tensor targets, Tensor input_lengths, Tensor target_lengths, int blank, "
        "str reduction, bool zero_infinity) -> Tensor",
    )
    def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity):
        raise NotImplementedError("jaxseq::ctc_loss stands for F.ctc_loss during export only")

    @ctc_loss.register_fake
    def _(log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity):
        B = log_probs.shape[1] if log_probs.ndim == 3 else 1
        return log_probs.new_empty((B,) if reduction == "none" and log_probs.ndim == 3 else ())

    return packed_rnn, ctc_loss


def _pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    import torch

    return PackedStandIn(input, torch.as_tensor(lengths), batch_first)


def _pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    import torch

    if not isinstance(sequence, PackedStandIn):
        return _ORIGINALS["pad_packed_sequence"](sequence, batch_first, padding_value, total_length)
    out = sequence.padded
    if sequence.batch_first != batch_first:
        out = out.transpose(0, 1)
    if padding_value != 0.0:
        T = out.shape[1] if batch_first else out.shape[0]
        valid = torch.arange(T)[None, :] < sequence.lengths[:, None]  # (B, T)
        valid = valid if batch_first else valid.T
        out = torch.where(valid[..., None], out, padding_value)
    if total_length is not None and total_length > (out.shape[1] if batch_first else out.shape[0]):
        extra = total_length - (out.shape[1] if batch_first else out.shape[0])
        pad = (0, 0, 0, extra) if batch_first else (0, 0, 0, 0, 0, extra)
        out = torch.nn.functional.pad(out, pad, value=padding_value)
    return out, sequence.lengths


def _recurrent_forward(self, input, hx=None):
    import torch

    if not isinstance(input, PackedStandIn):
        return _ORIGINALS[_base(self)](self, input, hx)
    packed_rnn, _ = _torch_ops()
    mode = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}[self.mode]
    x = input.padded
    if input.batch_first != self.batch_first:
        x = x.transpose(0, 1)
    B = x.shape[0] if self.batch_first else x.shape[1]
    K = self.num_layers * (2 if self.bidirectional else 1)
    h_out = self.proj_size if getattr(self, "proj_size", 0) else self.hidden_size
    if hx is None:
        h0 = torch.zeros(K, B, h_out, dtype=x.dtype)
        hx = [h0, torch.zeros(K, B, self.hidden_size, dtype=x.dtype)] if mode == "lstm" else [h0]
    else:
        hx = list(hx) if mode == "lstm" else [hx]
    weights = [getattr(self, name) for name in self._flat_weights_names]  # the parameters, not copies
    out, h_n, c_n = packed_rnn(x, input.lengths, hx, weights, mode, self.bias, self.num_layers,
                               float(self.dropout), self.training, self.bidirectional, self.batch_first)
    return PackedStandIn(out, input.lengths, self.batch_first), ((h_n, c_n) if mode == "lstm" else h_n)


def _base(module) -> str:
    return next(c.__name__ for c in type(module).__mro__ if c.__name__ in ("LSTM", "GRU", "RNN"))


def _ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    import torch

    _, ctc = _torch_ops()
    return ctc(log_probs, targets, torch.as_tensor(input_lengths), torch.as_tensor(target_lengths), blank, reduction,
               zero_infinity)


def _causal_hint_only(mask=None, is_causal=None, size=None) -> bool:
    """nn.Transformer*'s `_detect_is_causal_mask` without its look at the mask's values (`.all()`
    of a comparison, which export cannot capture): the hint as given, else False, so the mask is
    applied as it is. Either way the attention computed is the same."""
    return is_causal is True


def _data_as_detach():
    """`tensor.data` read as `tensor.detach()` (export cannot capture `.data`, and identity would let
    its gradient flow); assigning `.data` stays torch's."""
    import torch

    base = torch._C.TensorBase.__dict__["data"]
    return property(lambda self: self.detach(), lambda self, value: base.__set__(self, value))


_ORIGINALS: dict = {}


# What export would fail on, replaced while exporting: (torch module, attribute, replacement).
# Module-level functions are also replaced where a user's module imported them by name.
OPAQUE = (
    ("torch.nn.utils.rnn", "pack_padded_sequence", _pack_padded_sequence),  # -> PackedStandIn
    ("torch.nn.utils.rnn", "pad_packed_sequence", _pad_packed_sequence),  # PackedStandIn -> padded to T
    ("torch.nn.LSTM", "forward", _recurrent_forward),  # a PackedStandIn -> jaxseq::packed_rnn
    ("torch.nn.GRU", "forward", _recurrent_forward),
    ("torch.nn.RNN", "forward", _recurrent_forward),
    ("torch.nn.functional", "ctc_loss", _ctc_loss),  # -> jaxseq::ctc_loss
    ("torch.nn.modules.transformer", "_detect_is_causal_mask", _causal_hint_only),
    ("torch.Tensor", "data", _data_as_detach),  # a property: made when applied
)


_MISSING = object()  # an attribute the owner inherits (Tensor.data): deleted again, not set back


def _owner(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def opaque_calls(module):
    """Applies OPAQUE while exporting `module`: in torch's modules and classes, and in the
    globals of every module that defines one of `module`'s classes (a forward that did
    `from torch.nn.utils.rnn import pack_padded_sequence`); with MHA's fused fast path off."""
    import inspect

    import torch

    _torch_ops()
    replacements = [(_owner(path), name, new() if new is _data_as_detach else new) for path, name, new in OPAQUE]
    saved = [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name, _ in replacements]
    functions = {id(old): new for (owner, name, old), (_, _, new) in zip(saved, replacements, strict=True)
                 if not inspect.isclass(owner) and old is not _MISSING}
    _ORIGINALS.update({owner.__name__: old for owner, name, old in saved if inspect.isclass(owner) and name == "forward"})
    _ORIGINALS.update({name: old for owner, name, old in saved if not inspect.isclass(owner)})
    user_globals = []
    for sub in module.modules():
        namespace = getattr(sys.modules.get(type(sub).__module__), "__dict__", None)
        if namespace is None or namespace.get("__name__", "").startswith("torch."):
            continue
        user_globals += [(namespace, key, value) for key, value in list(namespace.items()) if id(value) in functions]
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused inference kernel is not an ATen composite
    try:
        for owner, name, new in replacements:
            setattr(owner, name, new)
        for namespace, key, value in user_globals:
            namespace[key] = functions[id(value)]
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
        for owner, name, old in saved:
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        for namespace, key, value in user_globals:
            namespace[key] = value


def example_value(shape, dtype: str):
    """A torch tensor to export with, for an input seen as (shape, dtype) only."""
    import torch

    return torch.zeros(tuple(shape), dtype=getattr(torch, np.dtype(dtype).name if dtype != "bool" else "bool"))
