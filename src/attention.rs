//! Scaled dot-product attention over cached keys and values, stored as f32 or as int8 with one
//! scale per row and head (the `kv_cache` setting of the config).
//!
//! A cache *chunk* holds the keys (or values) of one attention site for one sequence: `rows` rows of
//! `d_model` values. It is a run of f32 words in the workspace: `rows x d` floats, or, for int8,
//! `rows x heads` scales followed by `rows x d` int8 values (padded to a whole word). Being plain
//! words, a chunk is copied (beam search) or split off the workspace the same way in both cases.

use crate::config::Quant;
use crate::kernels::softmax;
use crate::profile::{self, Phase};

/// f32 words one chunk of `rows` rows takes.
pub fn chunk_words(precision: Quant, rows: usize, d: usize, heads: usize) -> usize {
    match precision {
        Quant::F32 => rows * d,
        Quant::Int8 => rows * heads + (rows * d).div_ceil(4),
    }
}

/// A read-only view of a chunk.
#[derive(Clone, Copy)]
pub enum KvView<'a> {
    /// `rows x d` floats.
    F32(&'a [f32]),
    /// `rows x heads` scales and `rows x d` int8 values.
    I8 {
        /// One scale per row and head.
        scales: &'a [f32],
        /// The quantized values.
        q: &'a [i8],
    },
}

/// Views `words` (one chunk) for reading.
pub fn view(words: &[f32], precision: Quant, rows: usize, heads: usize) -> KvView<'_> {
    match precision {
        Quant::F32 => KvView::F32(words),
        Quant::Int8 => {
            let (scales, values) = words.split_at(words.len().min(rows * heads));
            KvView::I8 {
                scales,
                q: bytemuck::cast_slice(values),
            }
        }
    }
}

/// Stores `src` (d values) as row `row` of the chunk `words`.
pub fn write_row(words: &mut [f32], precision: Quant, rows: usize, heads: usize, row: usize, src: &[f32]) {
    let _p = profile::scope(Phase::CacheWrite);
    let d = src.len().max(1);
    match precision {
        Quant::F32 => {
            if let Some(dst) = words.chunks_exact_mut(d).nth(row) {
                dst.copy_from_slice(src);
            }
        }
        Quant::Int8 => {
            let split = words.len().min(rows * heads);
            let (scales, values) = words.split_at_mut(split);
            let q: &mut [i8] = bytemuck::cast_slice_mut(values);
            let dk = (d / heads.max(1)).max(1);
            let (Some(q_row), Some(s_row)) = (q.chunks_exact_mut(d).nth(row), scales.chunks_exact_mut(heads).nth(row))
            else {
                return;
            };
            for ((qh, sh), xh) in q_row
                .chunks_exact_mut(dk)
                .zip(s_row.iter_mut())
                .zip(src.chunks_exact(dk))
            {
                *sh = crate::quant::quantize_row(xh, qh);
            }
        }
    }
}

/// Dot product of f32 and int8 vectors with eight fixed partial sums, as `kernels::dot_f32`.
#[inline]
fn dot_f32_i8(a: &[f32], b: &[i8]) -> f32 {
    crate::kernels::dot_lanes(a, b, |&y: &i8| f32::from(y))
}

/// Scaled dot-product attention of one query over the first `n` cached keys and values, all heads:
/// `ctx_h = softmax(q_h K_h^T / sqrt(d_k)) V_h`. `scores` receives the weights, `heads x n`.
#[inline(never)]
pub fn attend(
    q: &[f32],
    keys: KvView<'_>,
    values: KvView<'_>,
    n: usize,
    heads: usize,
    scores: &mut [f32],
    ctx: &mut [f32],
) {
    let _p = profile::scope(Phase::Attention);
    let d = q.len().max(1);
    let heads = heads.max(1);
    let dk = (d / heads).max(1);
    let scale = 1.0 / crate::math::sqrt(dk as f32);
    let n = n.max(1);
    let scores = scores.get_mut(..heads * n).unwrap_or(&mut []);
    match keys {
        KvView::F32(k) => {
            for (j, k_row) in k.chunks_exact(d).take(n).enumerate() {
                let per_head = q.chunks_exact(dk).zip(k_row.chunks_exact(dk));
                for ((qh, kh), s) in per_head.zip(scores.iter_mut().skip(j).step_by(n)) {
                    *s = crate::kernels::dot_f32(qh, kh) * scale;
                }
            }
        }
        KvView::I8 { scales: ks, q: k } => {
            for (j, (k_row, k_scales)) in k.chunks_exact(d).zip(ks.chunks_exact(heads)).take(n).enumerate() {
                let per_head = q.chunks_exact(dk).zip(k_row.chunks_exact(dk)).zip(k_scales);
                for (((qh, kh), &kscale), s) in per_head.zip(scores.iter_mut().skip(j).step_by(n)) {
                    *s = dot_f32_i8(qh, kh) * (kscale * scale);
                }
            }
        }
    }
    {
        let _p = profile::scope(Phase::Softmax);
        scores.chunks_exact_mut(n).for_each(softmax);
    }
    ctx.fill(0.0);
    match values {
        KvView::F32(v) => {
            for (j, v_row) in v.chunks_exact(d).take(n).enumerate() {
                let per_head = ctx.chunks_exact_mut(dk).zip(v_row.chunks_exact(dk));
                for ((ch, vh), &p) in per_head.zip(scores.iter().skip(j).step_by(n)) {
                    ch.iter_mut().zip(vh).for_each(|(c, v)| *c += p * v);
                }
            }
        }
        KvView::I8 { scales: vs, q: v } => {
            for (j, (v_row, v_scales)) in v.chunks_exact(d).zip(vs.chunks_exact(heads)).take(n).enumerate() {
                let per_head = ctx.chunks_exact_mut(dk).zip(v_row.chunks_exact(dk)).zip(v_scales);
                for (((ch, vh), &vscale), &p) in per_head.zip(scores.iter().skip(j).step_by(n)) {
                    let w = p * vscale;
                    ch.iter_mut().zip(vh).for_each(|(c, &v)| *c += w * f32::from(v));
                }
            }
        }
    }
}
