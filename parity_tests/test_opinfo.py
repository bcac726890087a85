"""The op table (jaxseq.port.aten, recurrent, losses) against torch, float64 on CPU.

test_opinfo_sample: for every OpInfo of COVERED (torch's `op_db`; an OpInfo is named `name` or
`(name, variant)`) and each chosen sample input (float64; an op without float64 takes the first of
int64, bool), the call `opinfo.op(sample.input, *sample.args, **sample.kwargs)`, with every tensor
of the sample an argument, is traced with make_fx (fake tensors, as export traces) and jaxseq's
decompositions (torch.export's, `decomposition_table()`), made functional as export's graph is,
turned into a Program (`graph_program`) and run with JAX under jax.jit. Compared with torch:

- forward: every output, float to FORWARD (absolute + relative), integer and bool exactly, with
  NaN / inf at the same places;
- gradient: of sum(output * a fixed random cotangent) with respect to each float input that the
  sample marks requires_grad, jax.grad against torch.autograd.grad, to GRADIENT (absolute + relative).

Which samples: the first SAMPLES_PER_OP samples of each OpInfo; for the OpInfos of MORE_SAMPLES,
N samples spread evenly over all of them (the i-th of N is sample i * n // N of n), which covers
every option the sample generator varies (convolution padding modes, loss reductions, ...).
Torch's sample generators are seeded (torch.manual_seed(0) per OpInfo), so the choice and the
values are the same on every run. `extra_samples` adds what the generators lack (cross_entropy's
label_smoothing), as "-extraN" tests. SKIPS names what is not run, and why; SHAPE_ONLY the ops whose
values are not defined (uninitialised memory), compared by shape and dtype only. The samples of
one OpInfo are compiled together (one XLA compilation per OpInfo), each test checks its own.

make_fx reaches fewer ops than export: composite ops (`upsample_nearest2d.vec`, ...) are split by
torch's dispatcher before any decomposition. test_direct_op calls such ops of the table directly,
test_nn_modules_export converts small torch.nn modules with from_torch, and
test_every_registered_op_is_exercised checks that every op of the table runs in one of these tests.
docs/porting-ops.md is generated from the table here (test_ops_page_is_current).
"""
from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch.fx.experimental.proxy_tensor import make_fx
from torch.testing._internal.common_methods_invocations import op_db
from torch.utils import _pytree as pytree

from jaxseq.port import program as programs
from jaxseq.port.export import decomposition_table, graph_program, torch_name
from jaxseq.port.module import from_torch, variable_at
from jaxseq.port.table import supported, table

# Importing torch's test utilities (for op_db) freezes torch.backends' flags for the whole process
# (`disable_global_flags`), after which setting e.g. `torch.backends.cudnn.allow_tf32` raises: undone,
# for the other test modules that share this process.
torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True

FORWARD = 1e-12  # float64, absolute + relative: rounding only
GRADIENT = 1e-10  # float64, absolute + relative
SAMPLES_PER_OP = 2

# (name, variant) or name: how many samples, spread evenly over all of the OpInfo's samples.
MORE_SAMPLES = {
    "nn.functional.conv1d": 10, "nn.functional.conv2d": 15, "nn.functional.conv_transpose1d": 8,
    "nn.functional.conv_transpose2d": 8,
    "nn.functional.max_pool1d": 12, "nn.functional.max_pool2d": 16, "nn.functional.avg_pool1d": 9,
    "nn.functional.avg_pool2d": 7, "nn.functional.adaptive_avg_pool1d": 6, "nn.functional.adaptive_avg_pool2d": 10,
    "nn.functional.batch_norm": 12, "nn.functional.layer_norm": 6, "nn.functional.group_norm": 8,
    "nn.functional.scaled_dot_product_attention": 12, "nn.functional.multi_head_attention_forward": 1,
    "nn.functional.cross_entropy": 21, "nn.functional.nll_loss": 24, "nn.functional.mse_loss": 6,
    "nn.functional.l1_loss": 6, "nn.functional.smooth_l1_loss": 8, "nn.functional.huber_loss": 9,
    "nn.functional.binary_cross_entropy_with_logits": 13, "nn.functional.normalize": 8,
    "nn.functional.one_hot": 6, "nn.functional.embedding": 3, "nn.functional.gelu": 8, "einsum": 11,
    "var": 14, "mean": 10, "softmax": 7, "log_softmax": 7, "masked_fill": 8, "clamp": 7, "where": 6,
    "cumsum": 4, ("max", "binary"): 9, ("min", "binary"): 9, "nn.functional.dropout": 18,
    "nn.functional.dropout2d": 12,
}

# What is not compared, and why: {OpInfo: {what: why}}, what being "all" (no sample runs),
# "gradient" (the forward is compared, the gradient not) or a sample's index.
SKIPS = {
    "nextafter": {"gradient": "torch has no derivative for nextafter"},
    "nn.functional.hardsigmoid": {
        "gradient": "torch's hardsigmoid backward multiplies by 1/6 rounded to float32 (3e-8 relative); "
        "jaxseq's gradient (of torch's decomposition, clamp(x + 3, 0, 6) / 6) is exact"
    },
    "nn.functional.one_hot": {
        i: "num_classes=-1 reads the number of classes from the data: torch.export cannot capture it either"
        for i in (0, 2, 4)
    },
    "nn.functional.dropout": {i: "training with p=0.5 draws random numbers" for i in (2, 8, 14)},
    "nn.functional.dropout2d": {i: "training with p=0.5 draws random numbers" for i in (2, 8)},
    "nn.functional.scaled_dot_product_attention": {
        i: "dropout_p > 0: torch and JAX draw different random numbers" for i in (2, 6, 10, 14, 18, 22)
    },
    "nn.functional.multi_head_attention_forward": {
        "all": "its one sample trains with dropout 0.5 (random); nn.MultiheadAttention is compared in "
        "test_nn_modules_export"
    },
}

# Ops whose values torch leaves undefined (uninitialised memory): shape and dtype are compared.
SHAPE_ONLY = {
    "empty": "torch.empty's values are uninitialised memory",
    "new_empty": "new_empty's values are uninitialised memory",
    "empty_strided": "empty_strided's values are uninitialised memory",
    "empty_like": "empty_like's values are uninitialised memory",
    "empty_permuted": "empty_permuted's values are uninitialised memory",
}

# XLA's compiler options for the programs of this module: small programs, compiled once each, so
# LLVM's optimisation passes cost more than they save (the rounding is the same).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

# The OpInfos tested, grouped as the table is.
COVERED = (
    # creation
    "zeros", "ones", "full", "empty", "new_zeros", "new_ones", "new_full", "new_empty", "zeros_like", "ones_like",
    "full_like", "empty_like", "empty_strided", "empty_permuted", "fill", "zero_", "scalar_tensor", "arange",
    "linspace", "logspace", "eye",
    # elementwise
    "abs", "acos", "acosh", "add", "sub", "mul", "rsub", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "clamp",
    "clamp_max", "clamp_min", "copysign", "cos", "cosh", "deg2rad", "rad2deg", ("div", "no_rounding_mode"),
    ("div", "trunc_rounding"), ("div", "floor_rounding"), "true_divide", "floor_divide", "exp", "exp2", "expm1",
    "fmax", "fmin", "fmod", "remainder", "frac", "floor", "log", "log1p", "log10", "log2", "logaddexp",
    "logaddexp2", "maximum", "minimum", ("max", "binary"), ("min", "binary"), "heaviside", "hypot", "lerp", "neg",
    "positive", "nextafter", "pow", "float_power", "reciprocal", "round", "rsqrt", "sigmoid", "sign", "sgn",
    "signbit", "sin", "sinc", "sinh", "sqrt", "square", "tan", "tanh", "trunc", "erf", "erfc", "erfinv", "lgamma",
    "digamma", "logit", ("round", "decimals_0"), ("round", "decimals_3"), ("round", "decimals_neg_3"),
    ("mvlgamma", "mvlgamma_p_1"), ("mvlgamma", "mvlgamma_p_3"), "isclose", "xlogy", "nan_to_num", "addcmul",
    "addcdiv", "isfinite", "isinf", "isnan", "isposinf", "isneginf", "isreal", "special.ndtr", "special.xlog1py",
    "special.entr", "__rmod__", "__rpow__", "__rsub__",
    # comparisons and logic
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not", "where",
    "masked_fill", "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    # reductions
    "sum", "nansum", "prod", "mean", "var", ("var", "unbiased"), "std", ("std", "unbiased"), "var_mean",
    ("var_mean", "unbiased"), "std_mean", ("std_mean", "unbiased"), "amax", "amin", "aminmax",
    ("max", "reduction_with_dim"), ("max", "reduction_no_dim"), ("min", "reduction_with_dim"),
    ("min", "reduction_no_dim"), "argmax", "argmin", "all", "any", "count_nonzero", "cumsum", "cumprod",
    "logsumexp", "nanmean", "diff", "trace", "norm", ("norm", "fro"), ("norm", "inf"), "linalg.vector_norm",
    "linalg.norm", "linalg.matrix_norm", "renorm", "quantile", "nanquantile", "softmax", ("softmax", "with_dtype"),
    "log_softmax", ("log_softmax", "with_dtype"), "nn.functional.softmin", "torch.ops.aten._safe_softmax.default",
    # shapes and indexing
    "view", "view_as", "reshape", "reshape_as", "ravel", "flatten", "unflatten", "permute", "movedim", "t", "T",
    "mT", "transpose", "expand", "expand_as", "broadcast_to", "broadcast_tensors", "squeeze",
    ("squeeze", "multiple"), "unsqueeze", "cat", "stack", "hstack", "vstack", "dstack", "column_stack", "split",
    ("split", "list_args"), "split_with_sizes", "chunk", "unbind", "hsplit", "vsplit", "dsplit", "slice", "select",
    "select_scatter", "__getitem__", "index_select", "index_put", "index_fill", "index_copy", "index_add", "take",
    "take_along_dim", "gather", "scatter", "scatter_add", ("scatter_reduce", "sum"), ("scatter_reduce", "prod"),
    ("scatter_reduce", "mean"), ("scatter_reduce", "amax"), ("scatter_reduce", "amin"), "slice_scatter", "diagonal",
    "diagonal_scatter", "diag", "sort", "argsort", "msort", "topk", "flip", "fliplr", "flipud", "roll", "rot90",
    "repeat", "tile", "repeat_interleave", "constant_pad_nd", ("nn.functional.pad", "constant"),
    ("nn.functional.pad", "reflect"), ("nn.functional.pad", "replicate"),
    ("nn.functional.pad", "replicate_negative"), ("nn.functional.pad", "circular"), "triu", "tril", "diag_embed",
    "diagflat", "block_diag", ("meshgrid", "variadic_tensors"), ("meshgrid", "list_of_tensors"), "atleast_1d",
    "atleast_2d", "atleast_3d", "clone", "contiguous", "to", "half", "bfloat16", "long", "int", "bool",
    "nn.functional.embedding", "nn.functional.one_hot", "nn.functional.pixel_shuffle",
    "nn.functional.pixel_unshuffle", "nn.functional.unfold", "nn.functional.channel_shuffle", "unsafe_split",
    "cartesian_prod",
    # linear algebra
    "matmul", "__rmatmul__", "mm", "bmm", "mv", "addmv", "dot", "vdot", "addmm", "baddbmm", "addr", "outer",
    "inner", "einsum", "tensordot", "kron", "linalg.vecdot", "linalg.multi_dot", "nn.functional.linear", "cross",
    "linalg.cross",
    # activations
    "nn.functional.relu", "nn.functional.relu6", "nn.functional.leaky_relu", "nn.functional.elu",
    "nn.functional.celu", "nn.functional.selu", "nn.functional.gelu", "nn.functional.silu", "nn.functional.mish",
    "nn.functional.softplus", "nn.functional.hardtanh", "nn.functional.hardswish", "nn.functional.hardsigmoid",
    "nn.functional.logsigmoid", "nn.functional.softsign", "nn.functional.tanhshrink", "nn.functional.threshold",
    "nn.functional.softshrink", "nn.functional.hardshrink", "nn.functional.glu", "nn.functional.prelu",
    "nn.functional.normalize", "nn.functional.cosine_similarity", "nn.functional.pairwise_distance",
    # normalisation, convolution, pooling, dropout
    "nn.functional.batch_norm", "native_batch_norm", "nn.functional.layer_norm", "native_layer_norm",
    "nn.functional.group_norm", "native_group_norm", "nn.functional.rms_norm", "nn.functional.local_response_norm",
    "nn.functional.conv1d", "nn.functional.conv2d", "nn.functional.conv3d", "nn.functional.conv_transpose1d",
    "nn.functional.conv_transpose2d", "nn.functional.conv_transpose3d", "nn.functional.max_pool1d",
    "nn.functional.max_pool2d", "nn.functional.max_pool3d", "nn.functional.avg_pool1d", "nn.functional.avg_pool2d",
    "nn.functional.avg_pool3d", "nn.functional.adaptive_avg_pool1d", "nn.functional.adaptive_avg_pool2d",
    "nn.functional.adaptive_avg_pool3d", "nn.functional.adaptive_max_pool1d", "nn.functional.adaptive_max_pool2d",
    "nn.functional.adaptive_max_pool3d", ("nn.functional.interpolate", "nearest"),
    ("nn.functional.interpolate", "nearest-exact"), ("nn.functional.interpolate", "linear"),
    ("nn.functional.interpolate", "area"), "nn.functional.upsample_nearest", "nn.functional.dropout",
    "nn.functional.dropout2d", ("nn.functional.feature_alpha_dropout", "without_train"),
    # attention
    "nn.functional.scaled_dot_product_attention", "nn.functional.multi_head_attention_forward",
    # losses
    "nn.functional.cross_entropy", "nn.functional.nll_loss", "nn.functional.mse_loss", "nn.functional.l1_loss",
    "nn.functional.smooth_l1_loss", "nn.functional.huber_loss", "nn.functional.binary_cross_entropy",
    "nn.functional.binary_cross_entropy_with_logits", "nn.functional.kl_div", "nn.functional.soft_margin_loss",
    "nn.functional.multilabel_soft_margin_loss", "nn.functional.multi_margin_loss",
    "nn.functional.multilabel_margin_loss", "nn.functional.cosine_embedding_loss",
    "nn.functional.hinge_embedding_loss", "nn.functional.poisson_nll_loss", "nn.functional.margin_ranking_loss",
    "nn.functional.triplet_margin_loss", "nn.functional.triplet_margin_with_distance_loss",
)


def opinfo_key(opinfo):
    return (opinfo.name, opinfo.variant_test_name) if opinfo.variant_test_name else opinfo.name


def label(key) -> str:
    return key if isinstance(key, str) else f"{key[0]}.{key[1]}"


OPINFOS = {opinfo_key(o): o for o in op_db}


def sample_dtype(opinfo):
    dtypes = opinfo.supported_dtypes("cpu")
    return next(d for d in (torch.float64, torch.int64, torch.bool) if d in dtypes)


def chosen_samples(key) -> list:
    """[(index, sample)] of the OpInfo `key`, chosen as the module docstring says."""
    opinfo = OPINFOS[key]
    dtype = sample_dtype(opinfo)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # sample_inputs_func, not sample_inputs: the latter's tracking for unittest reads the whole stack per call
        samples = opinfo.sample_inputs_func(opinfo, "cpu", dtype, opinfo.supports_autograd and dtype.is_floating_point)
        if key in MORE_SAMPLES:
            everything = list(samples)
            n, want = len(everything), min(MORE_SAMPLES[key], len(everything))
            return [(i * n // want, everything[i * n // want]) for i in range(want)]
        out = []
        for i, sample in enumerate(samples):
            if i >= SAMPLES_PER_OP:
                break
            out.append((i, sample))
        return out


EXTRA = 1000  # the index of a sample of extra_samples(key): EXTRA, EXTRA + 1, ...


def extra_samples(key) -> list:
    """[(index, sample)] that torch's generators lack: cross_entropy with label_smoothing (every
    reduction, class weights, ignore_index, probability targets, a spatial dim), and nll_loss with
    ignore_index and class weights together."""
    from torch.testing._internal.opinfo.core import SampleInput

    generator = torch.Generator().manual_seed(0)

    def tensor(*shape, grad=True):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(grad)

    weight = torch.rand(3, generator=generator, dtype=torch.float64) + 0.5
    labels = torch.tensor([0, 1, 2, 1])
    if key == "nn.functional.cross_entropy":
        samples = [SampleInput(tensor(4, 3), labels, weight=weight, reduction=r, label_smoothing=0.1)
                   for r in ("mean", "sum", "none")]
        samples += [
            SampleInput(tensor(4, 3), labels, label_smoothing=0.2, ignore_index=1),
            SampleInput(tensor(4, 3), labels, weight=weight, label_smoothing=0.2, ignore_index=1, reduction="sum"),
            SampleInput(tensor(4, 3), tensor(4, 3, grad=False).softmax(-1), weight=weight, label_smoothing=0.3),
            SampleInput(tensor(2, 3, 5), torch.tensor([[0, 1, 2, 2, 1], [1, 1, 0, 2, 0]]), weight=weight,
                        label_smoothing=0.1, ignore_index=2),
        ]
    elif key == "nn.functional.nll_loss":
        samples = [SampleInput(tensor(4, 3).log_softmax(-1), labels, weight=weight, ignore_index=1, reduction=r)
                   for r in ("mean", "sum", "none")]
    else:
        return []
    return [(EXTRA + i, sample) for i, sample in enumerate(samples)]


SAMPLES = {key: [] if "all" in SKIPS.get(key, {}) else chosen_samples(key) + extra_samples(key) for key in COVERED}


def cases():
    params = []
    for key in COVERED:
        skips = SKIPS.get(key, {})
        if "all" in skips:
            params.append(pytest.param(key, -1, id=f"{label(key)}-all", marks=pytest.mark.skip(skips["all"])))
        for index, _ in SAMPLES[key]:
            marks = [pytest.mark.skip(skips[index])] if index in skips else []
            name = f"extra{index - EXTRA}" if index >= EXTRA else index
            params.append(pytest.param(key, index, id=f"{label(key)}-{name}", marks=marks))
    return params


def flat_call(opinfo, sample):
    """(the sample's tensors, a function of them that calls the op as the sample does)."""
    leaves, spec = pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
    where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]

    def call(*tensors):
        filled = list(leaves)
        for i, tensor in zip(where, tensors, strict=True):
            filled[i] = tensor
        input, args, kwargs = pytree.tree_unflatten(filled, spec)
        return opinfo.op(input, *args, **kwargs)

    tensors = [leaves[i].detach().clone().requires_grad_(leaves[i].requires_grad) for i in where]
    return tensors, call


def trace(call, tensors):
    """The decomposed graph of `call`, functional as torch.export's is (make_fx leaves the in-place
    ops some decompositions use; functionalize, as export does, replaces them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = make_fx(call, decomposition_table=decomposition_table(), tracing_mode="fake")(*tensors)
        if any(n.op == "call_function" and getattr(getattr(n.target, "_schema", None), "is_mutable", False)
               for n in graph.graph.nodes):
            graph = make_fx(torch.func.functionalize(graph))(*tensors)
    return graph


class Case(NamedTuple):
    """One sample, traced and run with torch."""

    program: programs.Program
    ops: frozenset  # the graph's op names
    arrays: list  # the sample's tensors as JAX arrays
    wrt: list  # which of them the gradient is taken with respect to
    cotangents: list  # per torch output: a fixed random array, None for integer and bool outputs
    expected: list  # torch's outputs (tensors)
    expected_grads: list  # torch's gradient for each of wrt


def prepare(key, index, sample) -> Case:
    opinfo = OPINFOS[key]
    tensors, call = flat_call(opinfo, sample)
    gradient = opinfo.supports_autograd and "gradient" not in SKIPS.get(key, {})
    return prepare_call(call, tensors, trace(call, tensors), index, gradient)


def prepare_call(call, tensors, graph, seed, gradient=True) -> Case:
    """The Case of `call(*tensors)`, traced as `graph`: torch's outputs, and its gradient of
    sum(output * cotangent) with respect to the float tensors that require it."""
    program = graph_program(graph, tensors)
    ops = frozenset(torch_name(n.target) for n in graph.graph.nodes if n.op == "call_function")
    with warnings.catch_warnings():  # deprecations of the ops under test
        warnings.simplefilter("ignore")
        expected = [leaf for leaf in pytree.tree_leaves(call(*tensors)) if isinstance(leaf, torch.Tensor)]
    rng = np.random.default_rng(seed)
    cotangents = [rng.standard_normal(tuple(y.shape)) if y.is_floating_point() else None for y in expected]
    wrt = [i for i, t in enumerate(tensors) if gradient and t.is_floating_point() and t.requires_grad]
    differentiable = [(y, c) for y, c in zip(expected, cotangents, strict=True) if c is not None and y.requires_grad]
    if wrt and differentiable:
        loss = sum((y * torch.from_numpy(c)).sum() for y, c in differentiable)
        grads = torch.autograd.grad(loss, [tensors[i] for i in wrt], allow_unused=True, materialize_grads=True)
        grads = [torch.zeros_like(g) if g._is_zerotensor() else g for g in grads]
    else:
        grads = [torch.zeros_like(tensors[i]) for i in wrt]
    arrays = [jnp.asarray(numpy(t)) for t in tensors]
    return Case(program, ops, arrays, wrt, cotangents, [numpy(y) for y in expected], [numpy(g) for g in grads])


def numpy(tensor):
    """A torch tensor as NumPy holds it (bfloat16 as JAX's NumPy bfloat16)."""
    if tensor.dtype == torch.bfloat16:
        return tensor.detach().float().numpy().astype(jnp.bfloat16)
    return tensor.detach().numpy()


def run_jax(case: Case, wrt_arrays):
    """(outputs, gradients) of the case's program at its arrays, with `wrt_arrays` for those of case.wrt."""

    def objective(values):
        inputs = list(case.arrays)
        for i, x in zip(case.wrt, values, strict=True):
            inputs[i] = x
        out, _ = programs.run(case.program, {}, inputs, {})
        leaves = jax.tree.leaves(out)
        loss = sum((jnp.sum(y * c) for y, c in zip(leaves, case.cotangents, strict=False) if c is not None), 0.0)
        return loss, leaves

    if not case.wrt:
        return objective(wrt_arrays)[1], []
    (_, outputs), grads = jax.value_and_grad(objective, has_aux=True)(wrt_arrays)
    return outputs, grads


def compiled(fn, inputs):
    return jax.jit(fn).lower(inputs).compile(COMPILER_OPTIONS)(inputs)


def wrt_inputs(case: Case) -> list:
    return [case.arrays[j] for j in case.wrt]


@functools.cache
def results(key) -> dict:
    """{index: (Case, (outputs, gradients))} for every chosen sample of the OpInfo `key` that is not
    skipped, or {index: the exception it raised}. The samples run in one jax.jit (one compilation
    per OpInfo); where that fails, each alone, so that each test reports its own error."""
    cases_, out = {}, {}
    for index, sample in SAMPLES[key]:
        if index in SKIPS.get(key, {}):
            continue
        try:
            cases_[index] = prepare(key, index, sample)
        except Exception as e:  # reported by the sample's test
            out[index] = e

    def run_all(inputs):
        return {i: run_jax(cases_[i], x) for i, x in inputs.items()}

    inputs = {i: wrt_inputs(case) for i, case in cases_.items()}
    try:
        ran = compiled(run_all, inputs)
    except Exception:  # one sample's error: find it
        ran = {}
        for i, case in cases_.items():
            try:
                ran[i] = compiled(functools.partial(run_jax, case), inputs[i])
            except Exception as e:  # reported by the sample's test
                out[i] = e
    out.update({i: (cases_[i], r) for i, r in ran.items()})
    return out


def assert_same(name: str, actual, expected, tol: float) -> None:
    """|actual - expected| <= tol * (1 + |expected|) (exact for integers and bools), same shape and
    dtype, NaN and inf at the same places; names `name` and the tolerance on failure."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != torch's {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != torch's {expected.dtype}"
    if not np.issubdtype(expected.dtype, np.inexact):
        bad = actual != expected
        assert not bad.any(), (
            f"{name}: {bad.sum()} of {bad.size} elements differ (exact): {actual[bad][:5]} vs torch's "
            f"{expected[bad][:5]}")
        return
    special = ~np.isfinite(expected) | ~np.isfinite(actual)
    same_special = (np.isnan(actual) & np.isnan(expected)) | (actual == expected)
    assert not (special & ~same_special).any(), f"{name}: NaN / inf at other places than torch's ({tol=:g})"
    err = np.abs(np.where(special, 0.0, actual) - np.where(special, 0.0, expected))
    bound = tol * (1 + np.abs(np.where(special, 0.0, expected)))
    if (err > bound).any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{name}: {(err > bound).sum()} of {err.size} elements differ by more than {tol:g} (absolute + relative); "
            f"worst at {tuple(int(k) for k in i)}: {actual[i]!r} vs torch's {expected[i]!r} "
            f"(max abs err {err.max():.3g})"
        )


@pytest.mark.parametrize("key,index", cases())
def test_opinfo_sample(key, index):
    result = results(key)[index]
    if isinstance(result, Exception):
        raise result
    case, (outputs, grads) = result
    assert_case(f"{label(key)} sample {index}", case, outputs, grads, SHAPE_ONLY.get(key))


def assert_case(name: str, case: Case, outputs, grads, shape_only=None) -> None:
    """JAX's outputs and gradients against torch's (only shapes and dtypes where shape_only says why)."""
    assert len(outputs) == len(case.expected), f"{name}: {len(outputs)} outputs, torch's {len(case.expected)}"
    for i, (actual, expected) in enumerate(zip(outputs, case.expected, strict=True)):
        if shape_only:
            assert (actual.shape, actual.dtype) == (expected.shape, expected.dtype), (
                f"{name} output {i}: {actual.shape} {actual.dtype} vs torch's {expected.shape} {expected.dtype} "
                f"({shape_only})")
        else:
            assert_same(f"{name} output {i}", actual, expected, FORWARD)
    for i, actual, expected in zip(case.wrt, grads, case.expected_grads, strict=True):
        assert_same(f"{name} gradient of input {i}", actual, expected, GRADIENT)


# ---------------------------------------------------------------------------------------------
# Ops of the table that no OpInfo sample reaches (torch's decompositions or dispatch replace them
# on the way), called directly: (name, function of the tensors, tensors, whether torch differentiates
# it), traced without decompositions.


def _direct_cases():
    generator = torch.Generator().manual_seed(0)

    def x(*shape, grad=True):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(grad)

    aten, prims = torch.ops.aten, torch.ops.prims
    ints = torch.tensor([[5, -3, 0], [7, 2, -8]])
    index = torch.tensor([[0, 2, 2], [1, 1, 0]])
    return [  # (name, call, tensors[, gradient])
        ("bitwise_and.Scalar", lambda a: aten.bitwise_and.Scalar(a, 6), [ints]),
        ("bitwise_or.Scalar", lambda a: aten.bitwise_or.Scalar(a, 6), [ints]),
        ("bitwise_xor.Scalar", lambda a: aten.bitwise_xor.Scalar(a, 6), [ints]),
        ("copysign.Scalar", lambda a: aten.copysign.Scalar(a, -1.5), [x(2, 3)]),
        ("div.Scalar_mode floor", lambda a: aten.div.Scalar_mode(a, -0.7, rounding_mode="floor"), [x(2, 3)]),
        ("div.Scalar_mode trunc", lambda a: aten.div.Scalar_mode(a, 0.3, rounding_mode="trunc"), [x(2, 3)]),
        ("remainder.Scalar_Tensor", lambda a: aten.remainder.Scalar_Tensor(2.5, a), [x(2, 3)], False),
        ("scatter.value", lambda a, i: aten.scatter.value(a, 1, i, 1.5), [x(2, 4), index]),
        ("scatter.reduce", lambda a, i, b: aten.scatter.reduce(a, 1, i, b, reduce="add"), [x(2, 4), index, x(2, 3)],
         False),
        ("scatter.value_reduce", lambda a, i: aten.scatter.value_reduce(a, 1, i, 2.0, reduce="multiply"),
         [x(2, 4), index], False),
        ("narrow", lambda a: aten.narrow.default(a, 1, -3, 2), [x(2, 4)]),
        ("sort.stable", lambda a: aten.sort.stable(a, stable=True, dim=0, descending=True), [x(5, 2)]),
        ("reshape", lambda a: aten.reshape.default(a, [4, -1]), [x(2, 3, 2)]),
        ("lift_fresh", lambda a: aten.lift_fresh.default(a) * 2, [x(3)]),
        ("_native_batch_norm_legit.no_stats",
         lambda a, w, b: aten._native_batch_norm_legit.no_stats(a, w, b, True, 0.1, 1e-5), [x(3, 2, 4), x(2), x(2)]),
        ("iota", lambda a: a * prims.iota.default(4, start=2, step=3, dtype=torch.int64, device=a.device,
                                                    requires_grad=False), [x(4)]),
        ("upsample_nearest2d", lambda a: aten.upsample_nearest2d.default(a, [5, 7]), [x(1, 2, 3, 4)]),
        ("upsample_nearest1d.vec", lambda a: aten.upsample_nearest1d.vec(a, None, [1.7]), [x(1, 2, 5)]),
        ("upsample_nearest3d", lambda a: aten.upsample_nearest3d.default(a, [3, 5, 2]), [x(1, 2, 2, 3, 4)]),
        ("upsample_bilinear2d", lambda a: aten.upsample_bilinear2d.default(a, [5, 7], False, 1.7, None),
         [x(1, 2, 3, 4)]),
        ("upsample_bilinear2d.vec", lambda a: aten.upsample_bilinear2d.vec(a, None, True, [1.7, 0.6]),
         [x(1, 2, 3, 5)]),
        ("adaptive_avg_pool1d", lambda a: aten.adaptive_avg_pool1d.default(a, [3]), [x(2, 3, 7)]),
        ("reflection_pad2d", lambda a: aten.reflection_pad2d.default(a, [1, 2, 2, 1]), [x(1, 2, 3, 4)]),
        ("replication_pad3d", lambda a: aten.replication_pad3d.default(a, [1, 0, 2, 1, 0, 1]), [x(1, 2, 2, 3, 2)]),
    ]


DIRECT = {name: (call, tensors, *gradient) for name, call, tensors, *gradient in _direct_cases()}


@functools.cache
def direct_result(name):
    call, tensors, *gradient = DIRECT[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = make_fx(call, tracing_mode="fake")(*tensors)
    case = prepare_call(call, tensors, graph, 0, *gradient)
    return case, compiled(functools.partial(run_jax, case), wrt_inputs(case))


@pytest.mark.parametrize("name", list(DIRECT))
def test_direct_op(name):
    case, (outputs, grads) = direct_result(name)
    assert_case(f"aten.{name}", case, outputs, grads)


def test_skips_name_chosen_samples():
    """Every entry of SKIPS and SHAPE_ONLY names a covered OpInfo, and a sample index that is chosen."""
    for key, skips in SKIPS.items():
        assert key in COVERED, f"SKIPS names {label(key)}, which COVERED does not have"
        chosen = {index for index, _ in (chosen_samples(key) + extra_samples(key))}
        stale = [what for what in skips if isinstance(what, int) and what not in chosen]
        assert not stale, f"SKIPS[{label(key)}] names samples {stale}, which are not chosen"
    assert set(SHAPE_ONLY) <= set(COVERED), f"SHAPE_ONLY names OpInfos not covered: {set(SHAPE_ONLY) - set(COVERED)}"


def test_registered_names_are_torch_ops():
    """Every "aten.*" / "prims.*" name of the table is an operator overload torch has."""
    unknown = []
    for name in supported():
        namespace, _, rest = name.partition(".")
        if namespace not in ("aten", "prims"):
            continue
        packet, overload = rest.rsplit(".", 1)
        if not hasattr(getattr(getattr(torch.ops, namespace), packet, None), overload):
            unknown.append(name)
    assert not unknown, f"registered under names torch does not have: {unknown}"


class ConvBatchNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding="same")
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


class Attention(torch.nn.Module):
    """nn.MultiheadAttention with a causal mask and a key padding mask: with need_weights=False
    (attention through scaled_dot_product_attention) the first key is masked, so the first query
    attends to nothing (torch's output there is 0, its gradient finite); with need_weights the last."""

    def __init__(self, need_weights, **kwargs):
        super().__init__()
        self.need_weights = need_weights
        self.attention = torch.nn.MultiheadAttention(8, 2, batch_first=True, **kwargs)

    def forward(self, x_BxTxE):
        B, T = x_BxTxE.shape[:2]
        masked_key = T - 1 if self.need_weights else 0
        padding_BxT = (torch.arange(T) == masked_key).expand(B, T)
        causal_TxT = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        return self.attention(x_BxTxE, x_BxTxE, x_BxTxE, key_padding_mask=padding_BxT, attn_mask=causal_TxT,
                              need_weights=self.need_weights)


def _modules():
    """(name, module in its mode, example input): small float64 modules, seeded."""
    torch.manual_seed(0)
    double = torch.float64
    encoder = functools.partial(torch.nn.TransformerEncoderLayer, 8, 2, dim_feedforward=16, batch_first=True)
    return [
        ("conv2d_batchnorm2d_train", ConvBatchNorm().double().train(), torch.randn(2, 3, 5, 6, dtype=double)),
        ("conv2d_batchnorm2d_eval", ConvBatchNorm().double().eval(), torch.randn(2, 3, 5, 6, dtype=double)),
        ("multihead_attention_weights_train", Attention(True, dropout=0.0).double().train(),
         torch.randn(2, 5, 8, dtype=double)),
        ("multihead_attention_no_weights_train", Attention(False, dropout=0.0).double().train(),
         torch.randn(2, 5, 8, dtype=double)),
        *((f"transformer_encoder_layer_{act}_{'norm_first' if first else 'norm_last'}",
           encoder(activation=act, norm_first=first, dropout=0.0).double().train(), torch.randn(2, 5, 8, dtype=double))
          for act, first in (("relu", False), ("gelu", True))),
        ("transformer_encoder_layer_eval", encoder(dropout=0.1).double().eval(), torch.randn(2, 5, 8, dtype=double)),
        ("group_norm", torch.nn.GroupNorm(2, 6).double(), torch.randn(3, 6, 4, 2, dtype=double)),
        ("adaptive_avg_pool2d",
         torch.nn.Sequential(torch.nn.Conv2d(2, 3, 2), torch.nn.AdaptiveAvgPool2d((3, 2))).double(),
         torch.randn(2, 2, 7, 6, dtype=double)),
        ("max_pool1d", torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.MaxPool1d(3, 2, padding=1, ceil_mode=True)
                                           ).double(), torch.randn(2, 2, 11, dtype=double)),
        ("upsample_nearest_scale", torch.nn.Upsample(scale_factor=(2, 1.5)), torch.randn(2, 3, 4, 5, dtype=double)),
        ("upsample_nearest_size", torch.nn.Upsample(size=(7, 3)), torch.randn(2, 3, 4, 5, dtype=double)),
        ("upsample_bilinear_scale", torch.nn.Upsample(scale_factor=2.5, mode="bilinear"),
         torch.randn(2, 3, 4, 5, dtype=double)),
        ("upsample_bilinear_size_align_corners", torch.nn.Upsample(size=(7, 3), mode="bilinear", align_corners=True),
         torch.randn(2, 3, 4, 5, dtype=double)),
        ("dropout_eval", torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Dropout(0.5), torch.nn.ELU(),
                                             torch.nn.Softplus(), torch.nn.SiLU()).double().eval(),
         torch.randn(3, 4, dtype=double)),
    ]


MODULES = {name: (module, x) for name, module, x in _modules()}


@pytest.mark.parametrize("name", list(MODULES))
def test_nn_modules_export(name):
    """A small torch.nn module through from_torch: outputs, the gradient of sum(output * cotangent)
    with respect to every parameter and the input, and the buffers forward updates, against torch."""
    module, x = MODULES[name]
    module = copy.deepcopy(module)
    converted = from_torch(copy.deepcopy(module), x)
    graphdef, params, rest = nnx.split(converted, nnx.Param, ...)

    x.requires_grad_(True)
    module.zero_grad()
    expected = [y for y in pytree.tree_leaves(module(x)) if isinstance(y, torch.Tensor)]
    rng = np.random.default_rng(0)
    cotangents = [rng.standard_normal(tuple(y.shape)) for y in expected]
    sum((y * torch.from_numpy(c)).sum() for y, c in zip(expected, cotangents, strict=True)).backward()

    def objective(params, x):
        outputs = jax.tree.leaves(nnx.merge(graphdef, params, rest, copy=True)(x))
        return sum(jnp.sum(y * c) for y, c in zip(outputs, cotangents, strict=True)), outputs

    (_, outputs), (grads, grad_x) = jax.jit(jax.value_and_grad(objective, argnums=(0, 1), has_aux=True))(
        params, x.detach().numpy())
    shapes = jax.eval_shape(objective, params, x.detach().numpy())[1]  # abstract values, as jaxseq.parity traces it
    assert [(y.shape, y.dtype) for y in shapes] == [(y.shape, y.dtype) for y in outputs], f"{name}: eval_shape"
    for i, (actual, y) in enumerate(zip(outputs, expected, strict=True)):
        assert_same(f"{name} output {i}", actual, y.detach().numpy(), FORWARD)
    assert_same(f"{name} gradient of the input", grad_x, x.grad.numpy(), GRADIENT)
    flat = {".".join(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(grads)}
    for key, p in module.named_parameters():
        assert_same(f"{name} gradient of {key}", flat[key], p.grad.numpy(), GRADIENT)

    buffers = {key: b.numpy() for key, b in module.named_buffers() if b.is_floating_point()}
    if buffers:
        converted(x.detach().numpy())  # eagerly, updating its buffers as torch's forward above did
    for key, buffer in buffers.items():
        assert_same(f"{name} buffer {key} after forward", variable_at(converted, key)[...], buffer, FORWARD)
    MODULE_OPS[name] = {node.target for program in converted.port.programs for node in program.nodes}


MODULE_OPS: dict[str, set] = {}  # {module: the ops of its exported programs}, as test_nn_modules_export found them


def module_ops(name) -> set:
    if name not in MODULE_OPS:
        from jaxseq.port.export import export_program

        module, x = MODULES[name]
        MODULE_OPS[name] = {node.target for node in export_program(copy.deepcopy(module), (x,), {}).nodes}
    return MODULE_OPS[name]


# Ops of the table that this module does not run, and why (where they are tested).
UNEXERCISED = {
    **dict.fromkeys(("aten.sym_numel.default", "aten.sym_stride.int", "aten.sym_constrain_range.default",
                     "aten.sym_constrain_range_for_size.default", "aten._assert_scalar.default",
                     "aten._assert_async.default", "aten._assert_async.msg", "aten._assert_tensor_metadata.default"),
                    "export's sizes and runtime checks: graphs with dynamic shapes (test_port.py)"),
    **dict.fromkeys(("aten.lstm.input", "aten.gru.input", "aten.rnn_tanh.input", "aten.rnn_relu.input",
                     "aten.lstm_cell.default", "aten.gru_cell.default", "aten.rnn_tanh_cell.default",
                     "aten.rnn_relu_cell.default", "jaxseq.packed_rnn.default"),
                    "recurrent layers, kept whole: test_port.py, test_cells.py"),
    "jaxseq.ctc_loss.default": "F.ctc_loss, kept whole: test_losses.py",
    **dict.fromkeys(("aten.narrow.default", "aten.reshape.default", "aten.lift_fresh.default"),
                    "composite: torch records them as aten.slice / aten.view / aten.lift_fresh_copy (test_direct_op)"),
    **dict.fromkeys(("aten.bernoulli.p", "aten.native_dropout.default", "aten.rand.default", "aten.randn.default",
                     "aten.randperm.default"), "random numbers, which no framework shares with torch"),
}


def test_every_registered_op_is_exercised():
    """Each op of the table runs in a test of this module (an OpInfo sample, a direct call, a module),
    or torch.export's decompositions replace it, or UNEXERCISED says where it is tested (Python's own
    functions on sizes, operator.* and math.*, need no test); and no entry of UNEXERCISED is stale.
    (Run alone, this test runs every other test's programs first.)"""
    seen = set().union(*(r[0].ops for key in COVERED for r in results(key).values() if not isinstance(r, Exception)))
    seen |= set().union(*(direct_result(name)[0].ops for name in DIRECT), *(module_ops(name) for name in MODULES))
    decomposed = {str(op) for op in decomposition_table()}
    python = {name for name in table() if name.split(".")[0] in ("operator", "math", "builtins", "torch")}
    missing = sorted(set(table()) - seen - decomposed - set(UNEXERCISED) - python)
    assert not missing, f"ops of the table that no test of test_opinfo.py runs: {missing}; add an OpInfo to COVERED"
    stale = sorted(set(UNEXERCISED) & seen)
    assert not stale, f"UNEXERCISED lists ops that a test here does run: {stale}"


# ---------------------------------------------------------------------------------------------
# docs/porting-ops.md, generated from the table

ROOT = Path(__file__).resolve().parent.parent
OPS_PAGE = ROOT / "docs" / "porting-ops.md"
REGENERATE = "python -m parity_tests.test_opinfo"

# Why a core ATen operator is not in the table: (pattern of its name, reason), the first that matches.
NOT_SUPPORTED = (
    (r"_backward\.", "backward operators: jaxseq differentiates the forward with jax.grad, so an exported "
     "forward never holds them"),
    (r"\.out$", "`out=` overloads: an exported graph is functional"),
    (r"_\.default$|^aten\._native_batch_norm_legit\.default$", "in-place forms: an exported graph holds their "
     "functional form"),
    (r"nonzero|masked_scatter|_local_scalar_dense|sym_storage_offset|sym_is_contiguous|as_strided",
     "a shape read from the data, a tensor's value read into Python, or memory layout: none has a meaning "
     "under jax.jit"),
    (r"fft", "FFTs: not yet"),
    (r".", "not yet"),
)


def _section_of(name: str) -> tuple:
    """(where, heading): the heading of the table's source under which `name` is registered (its
    function's section of aten.py, or the first clause of the op module's docstring), and the
    position of that heading, to order the sections as the source does."""
    import importlib
    import inspect
    import re

    from jaxseq.port.table import OP_MODULES

    if name.split(".")[0] in ("operator", "math", "builtins", "torch"):
        name = "aten.sym_size.int"  # registered in the same section as the other size functions
    fn = inspect.unwrap(table()[name].fn)
    packet = name.split(".")[1]
    for index, module_name in enumerate(OP_MODULES):
        module = importlib.import_module(module_name)
        source = inspect.getsource(module).splitlines()
        line = None
        if getattr(fn, "__module__", None) == module_name and hasattr(fn, "__code__"):
            line = fn.__code__.co_firstlineno
        else:
            line = next((i + 1 for needle in (f'"{name}"', f'"{packet}":') for i, text in enumerate(source)
                         if needle in text), None)
        if line is None:
            continue
        headings = [((index, i + 1), m.group(1)) for i, text in enumerate(source[:line])
                    if (m := re.match(r"# ([A-Z][^:.(]*[^:.( ])", text)) and source[i - 1].startswith("# ---")]
        return headings[-1] if headings else ((index, 0), module.__doc__.split(":")[0].split(",")[0].strip())
    raise AssertionError(f"{name}: registered, but found in none of {OP_MODULES}")


def _core_aten() -> set[str]:
    """torch's core ATen operator overloads (tagged `core`), from every operator torch registers."""
    core = set()
    for name in torch._C._dispatch_get_all_op_names():
        if not name.startswith("aten::"):
            continue
        packet, _, overload = name.removeprefix("aten::").partition(".")
        op = getattr(getattr(torch.ops.aten, packet, None), overload or "default", None)
        if op is not None and torch.Tag.core in op.tags:
            core.add(str(op))
    return core


def ops_page() -> str:
    """docs/porting-ops.md: the table's operators by section, and what of core ATen is not there."""
    import re

    names = supported()
    core = _core_aten()
    missing = sorted(core - set(names))
    reasons: dict[str, list[str]] = {why: [] for _, why in NOT_SUPPORTED}
    for name in missing:
        reasons[next(why for pattern, why in NOT_SUPPORTED if re.search(pattern, name))].append(name)
    sections: dict[tuple, list[str]] = {}
    for name in names:
        sections.setdefault(_section_of(name), []).append(name)
    in_core = sum(name in core for name in names)
    lines = [
        "# Supported operators",
        "",
        f"<!-- Generated from the op table by parity_tests/test_opinfo.py; regenerate with `{REGENERATE}`. -->",
        "",
        f"What an exported graph may hold that jaxseq runs: {len(names)} operators, each one small function "
        "in `jaxseq/port/` (`aten.py`, `recurrent.py`, `losses.py`) registered under the names below, and "
        "tested against torch's own OpInfo samples, forward and gradient in float64 "
        "(`parity_tests/test_opinfo.py`; CTC in `test_losses.py`, recurrent layers in `test_port.py`).",
        "",
        f"**Core ATen, except {len(missing)}.** Of torch's {len(core)} core ATen operators (the overloads "
        f"tagged `core`), the table has {len(core) - len(missing)}:",
        "",
    ]
    lines += [f"- {why}: {', '.join(f'`{n}`' for n in group)}." for why, group in reasons.items() if group]
    lines += [
        "",
        f"The other {len(names) - in_core} are what torch.export's decompositions leave in a graph besides "
        "core ATen (`native_batch_norm`, `_safe_softmax`, ...), the layers jaxseq keeps whole (recurrent "
        "layers and cells, a layer fed `pack_padded_sequence`, `F.ctc_loss`), and export's arithmetic on "
        "sizes (`operator.*`, `math.*`, `torch.sym_*`). An operator outside the table fails the conversion by "
        "name, with its line in your forward ([porting.md](porting.md)).",
        "",
    ]
    for (_, section), group in sorted(sections.items()):
        lines += [f"## {section}", "", ", ".join(f"`{n}`" for n in group), ""]
    return "\n".join(lines)


def test_ops_page_is_current():
    """docs/porting-ops.md lists the table as it is."""
    assert OPS_PAGE.exists() and OPS_PAGE.read_text() == ops_page(), (
        f"{OPS_PAGE.relative_to(ROOT)} is out of date with the op table: regenerate it with `{REGENERATE}`")


if __name__ == "__main__":
    OPS_PAGE.write_text(ops_page())
    print(f"wrote {OPS_PAGE.relative_to(ROOT)}")
