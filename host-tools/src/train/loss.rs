//! Cross-entropy with label smoothing, forward and backward fused, as PyTorch's
//! `CrossEntropyLoss(ignore_index=PAD, label_smoothing=eps)`: the target distribution is
//! `(1 - eps) * onehot(y) + eps / V` over all `V` classes; the caller passes only non-PAD rows
//! and divides by their number through `scale`.

/// Replaces each row of `logits` (`[targets.len(), v]`) by `scale * d(loss)/d(logits)` and returns the
/// unscaled sum of the per-row losses.
pub fn smoothed_cross_entropy(logits: &mut [f32], v: usize, targets: &[u32], eps: f32, scale: f32) -> f64 {
    let mut total = 0.0f64;
    let uniform = eps / v as f32;
    for (row, &y) in logits.chunks_exact_mut(v).zip(targets) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z));
        let y = y as usize;
        let zy = row[y];
        let mut sum = 0.0f32;
        let mut sum_z = 0.0f32;
        for z in row.iter_mut() {
            sum_z += *z;
            *z = (*z - max).exp();
            sum += *z;
        }
        let lse = max + sum.ln();
        let nll = lse - zy;
        let smooth = lse - sum_z / v as f32;
        total += f64::from((1.0 - eps) * nll + eps * smooth);
        let inv = 1.0 / sum;
        for z in row.iter_mut() {
            *z = (*z * inv - uniform) * scale;
        }
        row[y] -= (1.0 - eps) * scale;
    }
    total
}
