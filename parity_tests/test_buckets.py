"""Bucketing (jaxseq.nn.buckets): a batch padded to its bucket, with its lengths, gives a model that
reads h_n (or packs its input) what the unpadded batch gives, and a loop over many lengths compiles
once per bucket instead of once per length."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxseq
from jaxseq.nn.buckets import bucket_length, pad_to_bucket
from parity_tests.helpers import FORWARD_ATOL, PADDING_ATOL, assert_close

BUCKETS = (3, 6, 9)


def test_bucket_length():
    assert [bucket_length(n, BUCKETS) for n in (1, 3, 4, 6, 7, 9)] == [3, 3, 6, 6, 9, 9]
    with pytest.raises(ValueError, match="length 10 is longer than every bucket"):
        bucket_length(10, BUCKETS)


def test_pad_to_bucket_pads_the_time_axis_only():
    x = np.arange(2 * 5 * 3.0).reshape(2, 5, 3)
    padded, lengths = pad_to_bucket(x, BUCKETS, axis=1)
    assert padded.shape == (2, 6, 3) and lengths.tolist() == [5, 5]
    assert np.array_equal(padded[:, :5], x) and not padded[:, 5:].any()
    padded, lengths = pad_to_bucket(x, BUCKETS, axis=0, lengths=[1, 2, 2, 1, 2])
    assert padded.shape == (3, 5, 3) and lengths.tolist() == [1, 2, 2, 1, 2]
    for wrong in ([1, 3, 2, 1, 2], [1, 2], [1.0, 2.0, 2.0, 1.0, 2.0], [0, 2, 2, 1, 2]):
        with pytest.raises(ValueError, match=r"lengths must be 5 integers in \[1, 2\]"):
            pad_to_bucket(x, BUCKETS, axis=0, lengths=wrong)


def test_bucketed_loop_matches_and_compiles_once_per_bucket():
    """A 2-layer bidirectional LSTM whose loss reads h_n, under jit: for batches of lengths 1 to 9
    (each with shorter sequences in it), the loss and gradients on the batch padded to its bucket
    equal those on the batch as it is (float64, PADDING_ATOL), and the padded loop compiles 3
    programs where the unpadded one compiles 9."""
    torch.manual_seed(0)
    lstm = jaxseq.from_torch(torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True).double())
    graphdef, params, rest = nnx.split(lstm, nnx.Param, ...)

    def loss(params, x, lengths, y):
        _, (h_n, _) = nnx.merge(graphdef, params, rest)(x, lengths=lengths)
        return jnp.mean((h_n[-2:].sum(axis=(0, 2)) - y) ** 2)  # the last layer's two directions

    unpadded = jax.jit(jax.value_and_grad(loss))
    bucketed = jax.jit(jax.value_and_grad(lambda *args: loss(*args)))  # its own cache
    rng = np.random.default_rng(0)
    for T in range(1, 10):
        x, y = rng.normal(size=(5, T, 3)), rng.normal(size=5)
        lengths = rng.integers(1, T + 1, size=5)
        lengths[0] = T
        want_loss, want_grads = unpadded(params, x, lengths, y)
        x_padded, _ = pad_to_bucket(x, BUCKETS, axis=1)
        got_loss, got_grads = bucketed(params, x_padded, lengths, y)
        assert_close(f"loss at T={T}", got_loss, want_loss, atol=PADDING_ATOL)
        want_by_path = dict(nnx.to_flat_state(want_grads))
        for path, got in nnx.to_flat_state(got_grads):
            name = f"d/d{'.'.join(map(str, path))} at T={T}"
            assert_close(name, got[...], want_by_path[path][...], atol=PADDING_ATOL)
    assert (unpadded._cache_size(), bucketed._cache_size()) == (9, 3)


class PackedClassifier(torch.nn.Module):
    """Packs its batch by lengths and classifies each sequence from the GRU's last state."""

    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(3, 6, batch_first=True)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)
        return self.head(h_n[-1])


def test_converted_packing_model_on_a_padded_batch_is_torchs_on_the_batch():
    """A converted model that packs by lengths, given the batch padded to its bucket, outputs what
    torch outputs on the batch as it is."""
    torch.manual_seed(0)
    model = PackedClassifier().double().eval()
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4, 1])
    converted = jaxseq.from_torch(model, x, lengths)
    x_padded, lengths_np = pad_to_bucket(x.numpy(), BUCKETS, axis=1, lengths=lengths.numpy())
    assert x_padded.shape == (4, 6, 3)
    with torch.no_grad():
        want = model(x, lengths).numpy()
    got = np.asarray(converted(x_padded, lengths_np))
    assert_close("logits, padded batch", got, want, atol=FORWARD_ATOL["float64"])
