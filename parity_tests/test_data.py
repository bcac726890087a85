"""The user's own data: the formats load, and every malformed file is one clean DataError."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxseq.app.data import DataError, load_data
from jaxseq.app.task import shifted_sequence


def test_example_csv_is_the_task():
    x, y, _ = load_data("examples/shifted.csv")
    tx, ty = shifted_sequence()
    assert np.array_equal(x, tx) and np.array_equal(y, ty), "examples/shifted.csv differs from the built-in task"


def test_formats_agree(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    rows = ["sequence,input,target"] + [
        f"s{n},{float(x[n, t])!r},{float(y[n, t])!r}" for n in range(3) for t in range(5)
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    np.savez(tmp_path / "d.npz", input=x, target=y)
    np.save(tmp_path / "d.npy", np.stack([x, y]))
    for name in ("d.csv", "d.npz", "d.npy"):
        lx, ly, _ = load_data(tmp_path / name)
        assert lx.shape == ly.shape == (3, 5, 1), name
        assert np.array_equal(lx[..., 0], x) and np.array_equal(ly[..., 0], y), name


def test_multifeature_npz(tmp_path):
    np.savez(tmp_path / "d.npz", input=np.zeros((2, 4, 3)), target=np.ones((2, 4, 1)))
    x, y, _ = load_data(tmp_path / "d.npz", "float32")
    assert x.shape == (2, 4, 3) and y.shape == (2, 4, 1) and x.dtype == np.float32


def test_sequences_of_several_lengths(tmp_path):
    """A CSV's shorter sequences are zero-padded, their lengths kept; an .npz gives `lengths` itself."""
    (tmp_path / "r.csv").write_text("sequence,input,target\na,1,2\na,2,3\na,3,4\nb,5,6\n")
    x, y, lengths = load_data(tmp_path / "r.csv")
    assert lengths.tolist() == [3, 1] and x[:, :, 0].tolist() == [[1, 2, 3], [5, 0, 0]]
    assert y[:, :, 0].tolist() == [[2, 3, 4], [6, 0, 0]]
    np.savez(tmp_path / "r.npz", input=x[..., 0], target=y[..., 0], lengths=lengths)
    _, _, npz_lengths = load_data(tmp_path / "r.npz")
    assert npz_lengths.tolist() == [3, 1]
    _, _, none = load_data("examples/shifted.csv")
    assert none is None, "sequences of one length need no lengths"


BAD_FILES = [
    ("missing.csv", None, "no such data file"),
    ("empty.csv", b"", "empty file"),
    ("header_only.csv", b"input,target\n", "no data rows"),
    ("no_target.csv", b"input,output\n1,2\n", "missing column 'target'"),
    ("text.csv", b"input,target\n1,abc\n", "row 2: input '1' and target 'abc' must be numbers"),
    ("short_row.csv", b"input,target\n1\n", "row 2"),
    ("nan.csv", b"input,target\n1,2\nnan,3\n", "row 3: non-finite value"),
    ("inf.csv", b"input,target\n1,inf\n", "row 2: non-finite value"),
    ("two_inputs.csv", b"input,input2,target\n1,2,3\n", "column 'input2': a CSV holds one input"),
    ("features.csv", b"input_0,input_1,target\n1,2,3\n", "for several features use a .npz file"),
    ("binary.csv", b"\xff\xfe\x00\x01garbage", "cannot read it"),
    ("data.txt", b"input,target\n1,2\n", "unknown data format '.txt'"),
    ("bad.npy", b"not numpy", "cannot read it"),
    ("bad.npz", b"PK\x03\x04 truncated", "cannot read it"),
]


@pytest.mark.parametrize("name,content,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_is_one_clean_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_data(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


BAD_ARRAYS = [
    ("npz", dict(input=np.zeros((2, 3))), "missing array 'target'"),
    ("npz", dict(input=np.zeros((2, 3)), target=np.zeros((2, 4))), "input and target lengths differ"),
    ("npz", dict(input=np.zeros((2, 3)), target=np.zeros((2, 3)), lengths=np.array([3, 4])), r"lengths\[1\] is 4"),
    ("npz", dict(input=np.zeros((2, 3)), target=np.zeros((2, 3)), lengths=np.array([3.0, 1])), "must be 2 integers"),
    ("npz", dict(input=np.zeros((2, 3)), target=np.zeros((2, 3)), lengths=np.array([3])), "must be 2 integers"),
    ("npz", dict(input=np.zeros(3), target=np.zeros(3)), "must have shape"),
    ("npz", dict(input=np.zeros((2, 3, 1, 1)), target=np.zeros((2, 3, 1, 1))), "must have shape"),
    ("npz", dict(input=np.zeros((0, 3)), target=np.zeros((0, 3))), "is empty"),
    (
        "npz",
        dict(input=np.array([[1.0, np.nan]]), target=np.zeros((1, 2))),
        "non-finite value nan at sequence 0, step 1",
    ),
    ("npz", dict(input=np.array([["a", "b"]]), target=np.zeros((1, 2))), "must be numeric"),
    ("npy", np.zeros((3, 2, 4)), "expected an array of shape"),
    ("npy", np.zeros((2, 4)), "expected an array of shape"),
]


@pytest.mark.parametrize("kind,arrays,message", BAD_ARRAYS, ids=[m for _, _, m in BAD_ARRAYS])
def test_bad_arrays_are_one_clean_error(tmp_path, kind, arrays, message):
    path = tmp_path / f"d.{kind}"
    np.savez(path, **arrays) if kind == "npz" else np.save(path, arrays)
    with pytest.raises(DataError, match=message):
        load_data(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".npy", ".npz"]))
def test_random_bytes_never_escape(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        x, y, _ = load_data(path)
    except DataError:
        return
    assert x.ndim == 3 and np.isfinite(x).all() and np.isfinite(y).all()


CELL = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=4), st.just(""))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(st.sampled_from(["input", "target", "sequence", "x", ""]), max_size=4),
    rows=st.lists(st.lists(CELL, max_size=4), max_size=6),
)
def test_random_csv_never_escapes(tmp_path, header, rows):
    path = tmp_path / "fuzz.csv"
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    try:
        x, y, _ = load_data(path)
    except DataError:
        return
    assert x.shape[:2] == y.shape[:2] and np.isfinite(x).all() and np.isfinite(y).all()


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_bad_data_on_the_command_line(prog, tmp_path, capsys):
    from jaxseq.app import cli as jaxseq_cli
    from torchseq import cli as torchseq_cli

    main = {"jaxseq": jaxseq_cli.main, "torchseq": torchseq_cli.main}[prog]
    bad = tmp_path / "bad.csv"
    bad.write_text("input,target\n0.1,0.2\n0.2,nan\n")
    code = main(["train", "--data", str(bad), "--out", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "row 3: non-finite value" in err and str(bad) in err, err
    assert not (tmp_path / "never").exists(), "a rejected data file left an output directory behind"


@pytest.mark.parametrize("prog", ["jaxseq", "torchseq"])
def test_train_and_predict_on_user_data(prog, tmp_path):
    from jaxseq.app import cli as jaxseq_cli
    from torchseq import cli as torchseq_cli

    main = {"jaxseq": jaxseq_cli.main, "torchseq": torchseq_cli.main}[prog]
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 7))
    np.save(tmp_path / "d.npy", np.stack([x, x + 0.1]))
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "d.npy"), "--steps", "20", "--hidden", "6", "--no-progress"]
    assert main(["train", *args, "--out", str(out)]) == 0
    pred = tmp_path / "p.csv"
    assert main(["predict", "--weights", str(out), "--data", str(tmp_path / "d.npy"), "--out", str(pred)]) == 0
    lines = pred.read_text().splitlines()
    assert lines[0] == "sequence,step,input,target,prediction" and len(lines) == 1 + 4 * 7


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=5),
    dtype=st.sampled_from(["float64", "float32", "int64", "bool", "complex64", "U3"]),
    fill=st.sampled_from([0.0, np.nan, np.inf, 1.5]),
)
def test_random_npy_arrays_never_escape(tmp_path, shape, dtype, fill):
    """Well-formed .npy files of any shape, dtype and content: loaded as (N, T, F), or one DataError."""
    path = tmp_path / "fuzz.npy"
    a = np.full(shape, fill if dtype.startswith("float") else 1).astype(dtype) if dtype != "U3" else np.full(shape, "x")
    np.save(path, a)
    try:
        x, y, _ = load_data(path)
    except DataError:
        return
    assert x.ndim == 3 and x.shape == y.shape and np.isfinite(x).all() and np.isfinite(y).all()
