"""The training data: the original question's shifted sequence, built-in generators of many
sequences, or the user's file (`jaxseq.app.data`), as `Sequences` of NumPy arrays shaped like a
`batch_first` PyTorch batch: (sequences N, time T, features).

The seed's task: x_t = t * spacing for t = 0..T-1 and y_t = x_t + shift; with the defaults,
x = (0, 0.05, ..., 1.0) and y = (0.1, 0.15, ..., 1.1), one sequence.

The generated tasks (`--task`, `--sequences N`, drawn from `--data-seed`):

- windows: windows of the seed's line of several lengths, L uniform in [max(2, T // 4), T],
  starting at s uniform in [0, T): x_t = (s + t) * spacing, y_t = x_t + shift for t < L. Padded
  to T with zeros; `lengths` holds each L and the loss ignores the padding.
- sine: next-step prediction of sine waves of random frequency and phase: x_t = sin(w t + p),
  y_t = x_{t+1}, with w uniform in [0.1, 0.6] radians per step and p uniform in [0, 2 pi).
- running-sum: x_t uniform in [-1, 1], y_t = x_0 + ... + x_t: the answer needs the whole past.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxseq.app.config import TASKS
from jaxseq.app.data import Sequences, load_data
from jaxseq.errors import OptionError


def shifted_sequence(length: int = 21, spacing: float = 0.05, shift: float = 0.1, dtype="float64"):
    """Returns (x_1xTx1, y_1xTx1) as NumPy arrays of `dtype`.

    >>> x, y = shifted_sequence()
    >>> x.shape, float(y[0, -1, 0])
    ((1, 21, 1), 1.1)
    """
    x_T = np.arange(length, dtype=np.float64) * spacing
    y_T = x_T + shift
    return x_T.astype(dtype)[None, :, None], y_T.astype(dtype)[None, :, None]


def shifted_windows(n: int, length: int, spacing: float, shift: float, rng: np.random.Generator) -> Sequences:
    """n windows of the seed's line, of lengths in [max(2, length // 4), length], zero-padded to `length`."""
    lengths_N = rng.integers(min(length, max(2, length // 4)), length + 1, n)
    start_N = rng.integers(0, length, n)
    t_T = np.arange(length)
    valid_NxT = t_T < lengths_N[:, None]
    x_NxT = np.where(valid_NxT, (start_N[:, None] + t_T) * spacing, 0.0)
    y_NxT = np.where(valid_NxT, x_NxT + shift, 0.0)
    return Sequences(x_NxT[..., None], y_NxT[..., None], lengths_N.astype(np.int32))


def sine_waves(n: int, length: int, rng: np.random.Generator) -> Sequences:
    """n sine waves of random frequency and phase; the target is the next step's value."""
    w_N = rng.uniform(0.1, 0.6, n)
    p_N = rng.uniform(0.0, 2 * np.pi, n)
    wave_NxT1 = np.sin(w_N[:, None] * np.arange(length + 1) + p_N[:, None])
    return Sequences(wave_NxT1[:, :-1, None], wave_NxT1[:, 1:, None])


def running_sum(n: int, length: int, rng: np.random.Generator) -> Sequences:
    """n sequences of uniform noise in [-1, 1]; the target at t is the sum of the inputs up to t."""
    x_NxT = rng.uniform(-1.0, 1.0, (n, length))
    return Sequences(x_NxT[..., None], np.cumsum(x_NxT, axis=1)[..., None])


def generate(task: str, n: int, length: int, spacing: float, shift: float, seed: int) -> Sequences:
    """The built-in task `task` with n sequences (the "shifted" task is one sequence), float64."""
    rng = np.random.default_rng(seed)
    if task == "shifted":
        return Sequences(*shifted_sequence(length, spacing, shift))
    if task == "windows":
        return shifted_windows(n, length, spacing, shift, rng)
    if task == "sine":
        return sine_waves(n, length, rng)
    if task == "running-sum":
        return running_sum(n, length, rng)
    raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")


def load_sequences(config) -> Sequences:
    """The run's data: the user's --data file if given, else the built-in --task, in config.dtype.

    Raises ValueError if --batch-size asks for more sequences than there are.
    """
    if config.data is not None:
        data = load_data(config.data, config.dtype)
    else:
        data = generate(config.task, config.sequences, config.length, config.spacing, config.shift, config.data_seed)
        data = data._replace(x=data.x.astype(config.dtype), y=data.y.astype(config.dtype))
    check_batch_size(config.batch_size, len(data.x))
    return data


def check_batch_size(batch_size: int | None, sequences: int) -> None:
    if batch_size is not None and batch_size > sequences:
        raise OptionError(f"--batch-size {batch_size} is more than the {sequences} sequence(s) of the data")


# Minibatches. The draw of step k depends on (data_seed, k) only, so a resumed run draws what the
# uninterrupted one did, and torchseq is handed jaxseq's very draws. JAX computes them (jax is
# imported here only when they are needed, so the PyTorch side does not pay for it otherwise).


def data_key(data_seed: int):
    """The raw (uint32) PRNG key of the minibatch draws, from --data-seed."""
    import jax

    return jax.random.key_data(jax.random.key(data_seed))


def minibatch_indices(key, step, *, sequences: int, batch_size: int):
    """The sequences of step `step`'s minibatch: `batch_size` indices in [0, sequences), uniform and
    independent (with replacement), from `fold_in(key, step)`. int32 whatever JAX's x64 mode, so
    the draws are the same in every process."""
    import jax
    import jax.numpy as jnp

    return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, sequences, dtype=jnp.int32)


@functools.cache
def _minibatch_block(sequences: int, batch_size: int, block: int):
    import jax
    import jax.numpy as jnp

    def draw(key, start):
        steps = start + jnp.arange(block, dtype=jnp.int32)
        return jax.vmap(lambda k: minibatch_indices(key, k, sequences=sequences, batch_size=batch_size))(steps)

    return jax.jit(draw)


def minibatches(data_seed: int, sequences: int, batch_size: int, start: int, block: int = 1000) -> np.ndarray:
    """(block, batch_size): the indices `minibatch_indices` draws at steps start .. start + block - 1,
    for the host (torchseq). One compiled program per (sequences, batch_size, block)."""
    draw = _minibatch_block(sequences, batch_size, block)
    return np.array(draw(data_key(data_seed), start))  # a writable copy, for torch.from_numpy
