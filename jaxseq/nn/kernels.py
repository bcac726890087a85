"""Hand-written recurrences: LSTM and GRU directions with their backward passes written by hand.

`jaxseq.nn.recurrent` calls `lstm_direction` for every LSTM direction and layer without `proj_size`,
and `gru_direction` for every GRU direction (with or without lengths; `recurrent.KERNELS` is the
table); the rest (RNN, LSTM with a projection) is plain autodiff through `lax.scan` there.

Why a kernel at all: autodiff through `lax.scan` accumulates the parameter gradients as T outer
products inside the reverse scan. Here each comes from one matmul over all steps after it, and
the gate derivatives from one elementwise pass per step. `benchmarks/layers.py` measures each
against the same cell under plain autodiff (2026-12-01, batch 1, hidden 100, 16:23: LSTM
1.17x-1.50x, GRU 1.11x-1.32x faster, and even (0.99x) for the 2-layer GRU in float32 and the
2-layer bidirectional GRU in float64; hidden 256, 16:24: LSTM 1.08x-1.32x, and 0.93x for one
float32 layer, 1.04x in the run before). Both stay, those cells the ones to watch; a kernel
that stops being faster than autodiff there should go.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gate_activations(gates_Bx4H):
    """[sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)] for gates = [i, f, g, o], in one elementwise pass.

    Uses sigmoid(x) = (1 + tanh(x / 2)) / 2, so a single tanh serves all four blocks.
    """
    H = gates_Bx4H.shape[-1] // 4
    is_g_4H = jnp.arange(4 * H) // H == 2
    tanh_Bx4H = jnp.tanh(jnp.where(is_g_4H, gates_Bx4H, 0.5 * gates_Bx4H))
    return jnp.where(is_g_4H, tanh_Bx4H, 0.5 + 0.5 * tanh_Bx4H)


def recurrent_products(w_hh_4HxH):
    """(h_BxH -> h W_hh^T, dgates_Bx4H -> dgates W_hh): the two products with W_hh that every step
    of the forward and of the backward recurrence makes, with W_hh laid out as measured fastest.

    Both are dot_generals on W_hh (4H, H) as stored, which XLA runs as a plain matvec/GEMM (a
    transpose of W_hh fused into the loop instead was about 1.4x slower at B=1), except in float32
    when H is not a multiple of 8 (the float32 lanes of an AVX register): there both run against
    W_hh^T (H, 4H), transposed once outside the scans, so that the per-step products stream over
    the 4H axis. Measured on a 2-core AMD EPYC (AVX2), jaxseq's whole training step, variants
    interleaved, paired ratios (2026-12-01): float32, B=1, T=21, H=100: 5-9% faster (T=100: 18%);
    H=64, 128, 256: 0-9% slower; B=64, H=100: even. float64, B=1, T=21, H=100: 3-6% slower, so
    float64 keeps the stored layout.
    """
    if w_hh_4HxH.dtype == jnp.float32 and w_hh_4HxH.shape[1] % 8:
        w_hh_Hx4H = w_hh_4HxH.T
        return (
            lambda h_BxH: jnp.einsum("bh,hg->bg", h_BxH, w_hh_Hx4H),
            lambda dgates_Bx4H: jnp.einsum("bg,hg->bh", dgates_Bx4H, w_hh_Hx4H),
        )
    return (
        lambda h_BxH: jnp.einsum("bh,gh->bg", h_BxH, w_hh_4HxH),
        lambda dgates_Bx4H: jnp.einsum("bg,gh->bh", dgates_Bx4H, w_hh_4HxH),
    )


def _lstm_scan(xw_TxBx4H, w_hh_4HxH, h0_BxH, c0_BxH):
    """The recurrence, saving what the backward pass needs: (h_TxBxH, c_TxBxH, act_TxBx4H)."""
    times_w_hh_T, _ = recurrent_products(w_hh_4HxH)

    def step(carry, xw_Bx4H):
        h_BxH, c_BxH = carry
        act_Bx4H = gate_activations(xw_Bx4H + times_w_hh_T(h_BxH))
        i, f, g, o = jnp.split(act_Bx4H, 4, axis=-1)
        c_BxH = f * c_BxH + i * g
        h_BxH = o * jnp.tanh(c_BxH)
        return (h_BxH, c_BxH), (h_BxH, c_BxH, act_Bx4H)

    _, (h_TxBxH, c_TxBxH, act_TxBx4H) = jax.lax.scan(step, (h0_BxH, c0_BxH), xw_TxBx4H)
    return h_TxBxH, c_TxBxH, act_TxBx4H


def _input_projection(x_TxBxI, w_ih_4HxI, b_4H):
    return jnp.einsum("tbi,gi->tbg", x_TxBxI, w_ih_4HxI) + b_4H


def _weight_gradients(dgates_TxBxG, *z_TxBxK):
    """(dW (G, K) for each z, db (G,)) of gates = sum_i z_i W_i^T + b, summed over (t, b): one
    matmul per z over the flattened (t, b) axis, and db the sum of dgates.

    Each dW leaves its matmul as (G, K), the layout torch stores and Adam reads next. A (K, G)
    product transposed afterwards made XLA fuse a strided transpose of the whole gradient into
    each of Adam's moment updates (`benchmarks/peers.py`, batch 1, hidden 256, length 21, 2026-12-01:
    jaxseq went from 0.88x to 1.08x stock Flax's speed in float32, from 0.93x to 1.28x in float64).
    """
    dgates_NxG = dgates_TxBxG.reshape(-1, dgates_TxBxG.shape[-1])
    dws = [jnp.einsum("ng,nk->gk", dgates_NxG, z.reshape(dgates_NxG.shape[0], -1)) for z in z_TxBxK]
    return *dws, jnp.sum(dgates_NxG, axis=0)


def last_state(state_TxBxH, last_B):
    """Each sequence's state at its step last_B[b]; the last step's when last_B is None."""
    return state_TxBxH[-1] if last_B is None else state_TxBxH[last_B, jnp.arange(last_B.shape[0])]


@jax.custom_vjp
def lstm_direction(x_TxBxI, w_ih_4HxI, w_hh_4HxH, b_ih_4H, b_hh_4H, h0_BxH, c0_BxH, last_B=None):
    """One LSTM direction over a time-major sequence. Returns (h_TxBxH, c_n_BxH): every step's h,
    and each sequence's c at its step last_B[b] (at the last step when last_B is None).

    The input projection xw_t = x_t W_ih^T + b_ih + b_hh does not depend on the state, so it is
    one matmul over all steps; then for t = 1..T: i, f, g, o = split(xw_t + h_{t-1} W_hh^T, 4);
    c_t = s(f) c_{t-1} + s(i) tanh(g); h_t = s(o) tanh(c_t), with s = sigmoid.

    Only the final c leaves the kernel (h is every step's output anyway): with every step's c as
    an output, each backward pass whose loss does not read them would build and read a (T, B, H)
    zero cotangent.
    """
    xw_TxBx4H = _input_projection(x_TxBxI, w_ih_4HxI, b_ih_4H + b_hh_4H)
    h_TxBxH, c_TxBxH, _ = _lstm_scan(xw_TxBx4H, w_hh_4HxH, h0_BxH, c0_BxH)
    return h_TxBxH, last_state(c_TxBxH, last_B)


def _lstm_direction_fwd(x_TxBxI, w_ih_4HxI, w_hh_4HxH, b_ih_4H, b_hh_4H, h0_BxH, c0_BxH, last_B):
    xw_TxBx4H = _input_projection(x_TxBxI, w_ih_4HxI, b_ih_4H + b_hh_4H)
    h_TxBxH, c_TxBxH, act_TxBx4H = _lstm_scan(xw_TxBx4H, w_hh_4HxH, h0_BxH, c0_BxH)
    residuals = (x_TxBxI, w_ih_4HxI, w_hh_4HxH, h_TxBxH, c_TxBxH, act_TxBx4H, h0_BxH, c0_BxH, last_B)
    return (h_TxBxH, last_state(c_TxBxH, last_B)), residuals


def _lstm_direction_bwd(residuals, cotangents):
    """Backpropagation through time. With dh_t the gradient reaching h_t (from the outputs and
    from step t+1) and dc_t the one reaching c_t (from step t+1, and from c_n at t = last_B, or at
    the last step when last_B is None):

        dc_t += dh_t s(o) (1 - tanh(c_t)^2)
        dgates_t = [dc_t tanh(g) s(i)(1 - s(i)),  dc_t c_{t-1} s(f)(1 - s(f)),
                    dc_t s(i) (1 - tanh(g)^2),    dh_t tanh(c_t) s(o)(1 - s(o))]
        dh_{t-1} += dgates_t W_hh,   dc_{t-1} += dc_t s(f)

    Then, summing over (t, b) after the scan (`_weight_gradients`, one matmul per weight):

        dW_hh = sum_t dgates_t^T h_{t-1},   dW_ih = sum_t dgates_t^T x_t,   db = sum_t dgates_t

    and db_ih = db_hh = db; dx_t = dgates_t W_ih.
    """
    x_TxBxI, w_ih_4HxI, w_hh_4HxH, h_TxBxH, c_TxBxH, act_TxBx4H, h0_BxH, c0_BxH, last_B = residuals
    dh_TxBxH, dc_n_BxH = cotangents
    T, H = h_TxBxH.shape[0], w_hh_4HxH.shape[1]
    is_g_4H = jnp.arange(4 * H) // H == 2
    _, times_w_hh = recurrent_products(w_hh_4HxH)
    c_prev_TxBxH = jnp.concatenate([c0_BxH[None], c_TxBxH[:-1]])
    zeros_BxH = jnp.zeros_like(h0_BxH)
    if last_B is None:  # c_n is c at the last step: its gradient enters the scan's carry
        dc_last_BxH, is_last_TxB = dc_n_BxH, None
    else:  # c_n is each sequence's c at its own last step: its gradient enters there
        dc_last_BxH, is_last_TxB = zeros_BxH, jnp.arange(T)[:, None] == last_B[None, :]

    def step(carry, xs):
        dh_next_BxH, dc_next_BxH = carry  # the parts of dh_t and dc_t coming from step t+1
        dh_out_BxH, act_Bx4H, c_BxH, c_prev_BxH, is_last_B = xs
        i, f, g, o = jnp.split(act_Bx4H, 4, axis=-1)
        dh_BxH = dh_out_BxH + dh_next_BxH
        if is_last_B is not None:
            dc_next_BxH = dc_next_BxH + jnp.where(is_last_B[:, None], dc_n_BxH, 0)
        tanh_c_BxH = jnp.tanh(c_BxH)
        dc_BxH = dc_next_BxH + dh_BxH * o * (1 - tanh_c_BxH * tanh_c_BxH)
        # All four blocks in one elementwise pass: dgates = upstream * other * slope(act)
        upstream_Bx4H = jnp.concatenate([dc_BxH, dc_BxH, dc_BxH, dh_BxH], axis=-1)
        other_Bx4H = jnp.concatenate([g, c_prev_BxH, i, tanh_c_BxH], axis=-1)
        slope_Bx4H = jnp.where(is_g_4H, 1 - act_Bx4H * act_Bx4H, act_Bx4H * (1 - act_Bx4H))
        dgates_Bx4H = upstream_Bx4H * other_Bx4H * slope_Bx4H
        dh_prev_BxH = times_w_hh(dgates_Bx4H)
        return (dh_prev_BxH, dc_BxH * f), dgates_Bx4H

    (dh0_BxH, dc0_BxH), dgates_TxBx4H = jax.lax.scan(
        step,
        (zeros_BxH, dc_last_BxH),
        (dh_TxBxH, act_TxBx4H, c_TxBxH, c_prev_TxBxH, is_last_TxB),
        reverse=True,
    )
    h_prev_TxBxH = jnp.concatenate([h0_BxH[None], h_TxBxH[:-1]])
    dw_hh_4HxH, dw_ih_4HxI, db_4H = _weight_gradients(dgates_TxBx4H, h_prev_TxBxH, x_TxBxI)
    dx_TxBxI = jnp.einsum("tbg,gi->tbi", dgates_TxBx4H, w_ih_4HxI).astype(x_TxBxI.dtype)
    return dx_TxBxI, dw_ih_4HxI, dw_hh_4HxH, db_4H, db_4H, dh0_BxH, dc0_BxH, None


lstm_direction.defvjp(_lstm_direction_fwd, _lstm_direction_bwd)


# ----------------------------------------------------------------------------- GRU


def _gru_scan(xw_TxBx3H, w_hh_3HxH, b_hh_3H, h0_BxH):
    """The recurrence, saving what the backward pass needs: (h_TxBxH, saved_TxBx4H) with saved =
    [s(r), s(z), n, h W_hn^T + b_hn] per step."""
    times_w_hh_T, _ = recurrent_products(w_hh_3HxH)
    H = h0_BxH.shape[-1]

    def step(h_BxH, xw_Bx3H):
        hw_Bx3H = times_w_hh_T(h_BxH) + b_hh_3H
        rz_Bx2H = 0.5 + 0.5 * jnp.tanh(0.5 * (xw_Bx3H[:, : 2 * H] + hw_Bx3H[:, : 2 * H]))  # sigmoid
        r_BxH, z_BxH = rz_Bx2H[:, :H], rz_Bx2H[:, H:]
        hw_n_BxH = hw_Bx3H[:, 2 * H :]
        n_BxH = jnp.tanh(xw_Bx3H[:, 2 * H :] + r_BxH * hw_n_BxH)
        h_BxH = n_BxH + z_BxH * (h_BxH - n_BxH)
        return h_BxH, (h_BxH, jnp.concatenate([rz_Bx2H, n_BxH, hw_n_BxH], axis=-1))

    _, (h_TxBxH, saved_TxBx4H) = jax.lax.scan(step, h0_BxH, xw_TxBx3H)
    return h_TxBxH, saved_TxBx4H


@jax.custom_vjp
def gru_direction(x_TxBxI, w_ih_3HxI, w_hh_3HxH, b_ih_3H, b_hh_3H, h0_BxH):
    """One GRU direction over a time-major sequence. Returns h_TxBxH: every step's state.

    xw_t = x_t W_ih^T + b_ih is one matmul over all steps; then for t = 1..T, with
    hw = h_{t-1} W_hh^T + b_hh (torch's formulas, see `recurrent.GRU`):
    r, z = s(xw_r + hw_r), s(xw_z + hw_z); n = tanh(xw_n + r hw_n); h_t = n + z (h_{t-1} - n).
    """
    h_TxBxH, _ = _gru_scan(_input_projection(x_TxBxI, w_ih_3HxI, b_ih_3H), w_hh_3HxH, b_hh_3H, h0_BxH)
    return h_TxBxH


def _gru_direction_fwd(x_TxBxI, w_ih_3HxI, w_hh_3HxH, b_ih_3H, b_hh_3H, h0_BxH):
    xw_TxBx3H = _input_projection(x_TxBxI, w_ih_3HxI, b_ih_3H)
    h_TxBxH, saved_TxBx4H = _gru_scan(xw_TxBx3H, w_hh_3HxH, b_hh_3H, h0_BxH)
    return h_TxBxH, (x_TxBxI, w_ih_3HxI, w_hh_3HxH, h_TxBxH, saved_TxBx4H, h0_BxH)


def _gru_direction_bwd(residuals, dh_out_TxBxH):
    """Backpropagation through time. With dh the gradient reaching h_t (from the output and from
    step t+1), a_n = xw_n + r hw_n, and the gates' pre-activations split into their input part
    (xw) and recurrent part (hw):

        dn = dh (1 - z),   da_n = dn (1 - n^2),   da_z = dh (h_{t-1} - n) z (1 - z)
        da_r = da_n hw_n r (1 - r)
        dxw_t = [da_r, da_z, da_n],   dhw_t = [da_r, da_z, da_n r]
        dh_{t-1} = dh z + dhw_t W_hh

    Then, summing over (t, b) after the scan (`_weight_gradients`): dW_hh = sum dhw_t^T h_{t-1},
    db_hh = sum dhw_t, dW_ih = sum dxw_t^T x_t, db_ih = sum dxw_t; dx_t = dxw_t W_ih.
    """
    x_TxBxI, w_ih_3HxI, w_hh_3HxH, h_TxBxH, saved_TxBx4H, h0_BxH = residuals
    H = w_hh_3HxH.shape[1]
    _, times_w_hh = recurrent_products(w_hh_3HxH)
    h_prev_TxBxH = jnp.concatenate([h0_BxH[None], h_TxBxH[:-1]])

    def step(dh_next_BxH, xs):
        dh_out_BxH, saved_Bx4H, h_prev_BxH = xs
        r, z, n, hw_n = (saved_Bx4H[:, k * H : (k + 1) * H] for k in range(4))
        dh_BxH = dh_out_BxH + dh_next_BxH
        da_n = dh_BxH * (1 - z) * (1 - n * n)
        da_r = da_n * hw_n * r * (1 - r)
        da_z = dh_BxH * (h_prev_BxH - n) * z * (1 - z)
        dhw_Bx3H = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)
        return dh_BxH * z + times_w_hh(dhw_Bx3H), (dhw_Bx3H, da_n)

    dh0_BxH, (dhw_TxBx3H, da_n_TxBxH) = jax.lax.scan(
        step, jnp.zeros_like(h0_BxH), (dh_out_TxBxH, saved_TxBx4H, h_prev_TxBxH), reverse=True
    )
    dxw_TxBx3H = jnp.concatenate([dhw_TxBx3H[..., : 2 * H], da_n_TxBxH], axis=-1)
    dw_hh_3HxH, db_hh_3H = _weight_gradients(dhw_TxBx3H, h_prev_TxBxH)
    dw_ih_3HxI, db_ih_3H = _weight_gradients(dxw_TxBx3H, x_TxBxI)
    dx_TxBxI = jnp.einsum("tbg,gi->tbi", dxw_TxBx3H, w_ih_3HxI).astype(x_TxBxI.dtype)
    return dx_TxBxI, dw_ih_3HxI, dw_hh_3HxH, db_ih_3H, db_hh_3H, dh0_BxH


gru_direction.defvjp(_gru_direction_fwd, _gru_direction_bwd)
