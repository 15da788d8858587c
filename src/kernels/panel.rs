//! The 4-row panel layout of int8 matrices (blob flag `FLAG_I8_PANELS`) and its portable kernel.
//!
//! A matrix of `rows x cols` int8 values is stored as `rows / 4` full panels followed by the last
//! `rows % 4` rows in row-major order. A panel holds rows `4p .. 4p + 4` in `4 * cols` bytes:
//! first, for every group `g` of four columns (`cols / 4` groups), the four bytes of each of the
//! four rows (`row 4p` columns `4g..4g+4`, then row `4p+1`, `4p+2`, `4p+3`); then the last
//! `cols % 4` columns of each of the four rows, row after row. The size is still `rows * cols`.
//!
//! One 16-byte group feeds four rows with one load of four words (`LDM`), and the activation
//! words loaded for the group are reused by the four rows: that is what the DSP kernel
//! (`kernels::dsp`) wants. The portable kernel here reads the same layout, and every kernel's
//! integer results are identical to the row-major [`super::dot_i8`] of each row.

use super::dot_i8;

/// Rows per panel.
pub const PANEL_ROWS: usize = 4;
/// Columns per group inside a panel.
pub const GROUP_COLS: usize = 4;

/// Position of element `(r, c)` of a `rows x cols` matrix in the panel layout.
pub fn panel_index(rows: usize, cols: usize, r: usize, c: usize) -> usize {
    let full = rows / PANEL_ROWS * PANEL_ROWS;
    if r >= full {
        return r * cols + c;
    }
    let (p, i) = (r / PANEL_ROWS, r % PANEL_ROWS);
    let groups = cols / GROUP_COLS;
    let base = p * PANEL_ROWS * cols;
    if c < groups * GROUP_COLS {
        base + (c / GROUP_COLS) * PANEL_ROWS * GROUP_COLS + i * GROUP_COLS + c % GROUP_COLS
    } else {
        let tail = cols - groups * GROUP_COLS;
        base + groups * PANEL_ROWS * GROUP_COLS + i * tail + (c - groups * GROUP_COLS)
    }
}

/// Rearranges a row-major `rows x cols` matrix (`src`, `rows = src.len() / cols`) into the panel
/// layout in `dst` (same length). Extra elements of either slice are ignored.
pub fn to_panels<T: Copy>(src: &[T], cols: usize, dst: &mut [T]) {
    let cols = cols.max(1);
    let rows = src.len() / cols;
    for (r, row) in src.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if let Some(d) = dst.get_mut(panel_index(rows, cols, r, c)) {
                *d = v;
            }
        }
    }
}

/// Copies row `r` of a panel-layout `rows x cols` matrix into `out` (`cols` long), converting
/// each value with `f`.
pub fn panel_row_into<T: Copy>(w: &[T], rows: usize, r: usize, out: &mut [f32], f: impl Fn(T) -> f32) {
    let cols = out.len();
    for (c, o) in out.iter_mut().enumerate() {
        *o = w.get(panel_index(rows, cols, r, c)).copied().map_or(0.0, &f);
    }
}

/// Calls `sink(row, dot)` with the exact i32 dot product of every row of the panel-layout int8
/// matrix `w` (`rows = w.len() / xq.len()`) with `xq`, rows in order. Portable reference.
#[inline(always)]
pub fn panel_dots_portable(w: &[i8], xq: &[i8], mut sink: impl FnMut(usize, i32)) {
    let cols = xq.len().max(1);
    let rows = w.len() / cols;
    let full = rows / PANEL_ROWS;
    let (panels, rest) = w.split_at((full * PANEL_ROWS * cols).min(w.len()));
    let groups = xq.len() / GROUP_COLS;
    let (xg, xt) = xq.split_at(groups * GROUP_COLS);
    for (p, panel) in panels.chunks_exact(PANEL_ROWS * cols).enumerate() {
        let (body, tail) = panel.split_at(groups * PANEL_ROWS * GROUP_COLS);
        let mut acc = [0i32; PANEL_ROWS];
        // Fixed-size groups, written out so the loop stays tight at every opt-level (the firmware
        // is built for size): each group is four activations against four rows of four weights.
        let (groups_w, _) = body.as_chunks::<{ PANEL_ROWS * GROUP_COLS }>();
        let (groups_x, _) = xg.as_chunks::<GROUP_COLS>();
        let dot4 = |w: &[i8], x: [i32; 4]| -> i32 {
            let (w4, _) = w.as_chunks::<GROUP_COLS>();
            let [w0, w1, w2, w3] = w4.first().copied().unwrap_or([0; 4]);
            i32::from(w0) * x[0] + i32::from(w1) * x[1] + i32::from(w2) * x[2] + i32::from(w3) * x[3]
        };
        let [mut a0, mut a1, mut a2, mut a3] = acc;
        for (g, x) in groups_w.iter().zip(groups_x) {
            let &[x0, x1, x2, x3] = x;
            let x = [i32::from(x0), i32::from(x1), i32::from(x2), i32::from(x3)];
            let (r01, r23) = g.split_at(2 * GROUP_COLS);
            let (r0, r1) = r01.split_at(GROUP_COLS);
            let (r2, r3) = r23.split_at(GROUP_COLS);
            a0 += dot4(r0, x);
            a1 += dot4(r1, x);
            a2 += dot4(r2, x);
            a3 += dot4(r3, x);
        }
        acc = [a0, a1, a2, a3];
        let t = xt.len().max(1);
        for (a, wr) in acc.iter_mut().zip(tail.chunks_exact(t)) {
            *a += dot_i8(wr, xt);
        }
        for (i, a) in acc.into_iter().enumerate() {
            sink(p * PANEL_ROWS + i, a);
        }
    }
    for (i, row) in rest.chunks_exact(cols).enumerate() {
        sink(full * PANEL_ROWS + i, dot_i8(row, xq));
    }
}

/// Expands an int8 activation vector for the optimized kernel: for every group `g` of four values,
/// two words `(x[4g] | x[4g+2] << 16)` and `(x[4g+1] | x[4g+3] << 16)` of sign-extended 16-bit
/// halves, the pairs `SXTB16` produces from a word of weights (without and with `ROR #8`).
/// Writes `2 * (xq.len() / 4)` words (fewer if `out` is shorter) and returns how many.
/// Uses the DSP routine where there is one (identical words). On Armv6-M the two words of a group
/// are instead the Cortex-M0 kernel's coefficients (see `kernels::m0`), and 0 is returned for the
/// (never quantized) vectors they cannot represent; kernels given fewer words than they need run
/// the portable code.
#[inline]
pub fn expand_activation(xq: &[i8], out: &mut [u32]) -> usize {
    #[cfg(picoformer_dsp)]
    return super::dsp::expand_activation(xq, out);
    #[cfg(picoformer_v6m)]
    return super::m0::expand_activation(xq, out);
    #[cfg(not(any(picoformer_dsp, picoformer_v6m)))]
    expand_activation_portable(xq, out)
}

/// The portable [`expand_activation`] (the same words).
pub fn expand_activation_portable(xq: &[i8], out: &mut [u32]) -> usize {
    #[cfg(picoformer_v6m)]
    return super::m0::expand_activation_portable(xq, out);
    #[cfg(not(picoformer_v6m))]
    expand_pairs(xq, out)
}

/// The halfword pairs of [`expand_activation`] (the DSP kernel's format).
#[cfg_attr(picoformer_v6m, allow(dead_code))]
fn expand_pairs(xq: &[i8], out: &mut [u32]) -> usize {
    let half = |v: i8| u32::from(i16::from(v) as u16);
    let mut n = 0;
    for (x, o) in xq.chunks_exact(GROUP_COLS).zip(out.chunks_exact_mut(2)) {
        if let ([x0, x1, x2, x3], [o0, o1]) = (x, o) {
            *o0 = half(*x0) | half(*x2) << 16;
            *o1 = half(*x1) | half(*x3) << 16;
            n += 2;
        }
    }
    n
}

/// `y = dequant(Wq xq) + bias` for a panel-layout matrix: the portable kernel.
#[inline(never)]
pub fn matvec_i8_panels_portable(w: &[i8], scales: &[f32], xq: &[i8], x_scale: f32, bias: &[f32], y: &mut [f32]) {
    panel_dots_portable(w, xq, |r, dot| {
        if let (Some(yi), Some(s), Some(b)) = (y.get_mut(r), scales.get(r), bias.get(r)) {
            *yi = dot as f32 * (s * x_scale) + b;
        }
    });
}

/// Exact i32 dot products of every row of a panel-layout matrix with `xq`, into `out`, using the
/// fastest kernel for this target (`xe` is `xq` expanded by [`expand_activation`]; empty is fine
/// where no optimized kernel exists). Used by the on-target self-test.
pub fn panel_dots(w: &[i8], xq: &[i8], xe: &[u32], out: &mut [i32]) {
    #[cfg(picoformer_v6m)]
    super::m0::panel_dots(w, xq, xe, out);
    #[cfg(not(picoformer_v6m))]
    {
        let sink = |r: usize, dot: i32| {
            if let Some(o) = out.get_mut(r) {
                *o = dot;
            }
        };
        #[cfg(picoformer_dsp)]
        super::dsp::panel_dots(w, xq, xe, sink);
        #[cfg(not(picoformer_dsp))]
        {
            let _ = xe;
            panel_dots_portable(w, xq, sink);
        }
    }
}

/// `y = dequant(Wq xq) + bias` for a panel-layout matrix with the fastest kernel for this target;
/// results are bit-identical to [`matvec_i8_panels_portable`] and to the row-major
/// [`super::matvec_i8`].
#[inline(never)]
pub fn matvec_i8_panels(w: &[i8], scales: &[f32], xq: &[i8], xe: &[u32], x_scale: f32, bias: &[f32], y: &mut [f32]) {
    #[cfg(picoformer_dsp)]
    super::dsp::matvec_panels(w, scales, xq, xe, x_scale, bias, y);
    #[cfg(picoformer_v6m)]
    super::m0::matvec_panels(w, scales, xq, xe, x_scale, bias, y);
    #[cfg(all(not(picoformer_dsp), feature = "std", target_arch = "x86_64"))]
    {
        let _ = xe;
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of calling a
            // function compiled with `target_feature(enable = "avx2")`.
            unsafe { x86::matvec_avx2(w, scales, xq, x_scale, bias, y) };
        } else {
            matvec_i8_panels_portable(w, scales, xq, x_scale, bias, y);
        }
    }
    #[cfg(all(
        not(picoformer_dsp),
        not(picoformer_v6m),
        not(all(feature = "std", target_arch = "x86_64"))
    ))]
    {
        let _ = xe;
        matvec_i8_panels_portable(w, scales, xq, x_scale, bias, y);
    }
}

/// The host's int8 kernel: the portable code compiled for AVX2, which the compiler vectorizes (the
/// default x86-64 target only has SSE2). Integer sums, so results are identical to the portable
/// kernel's; `tests/kernels_panel.rs` checks it on hosts with AVX2.
#[cfg(all(not(picoformer_dsp), feature = "std", target_arch = "x86_64"))]
mod x86 {
    /// [`super::matvec_i8_panels_portable`] with AVX2 enabled.
    #[target_feature(enable = "avx2")]
    pub(super) fn matvec_avx2(w: &[i8], scales: &[f32], xq: &[i8], x_scale: f32, bias: &[f32], y: &mut [f32]) {
        super::panel_dots_portable(w, xq, |r, dot| {
            if let (Some(yi), Some(s), Some(b)) = (y.get_mut(r), scales.get(r), bias.get(r)) {
                *yi = dot as f32 * (s * x_scale) + b;
            }
        });
    }
}
