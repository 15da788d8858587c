//! Quantization-aware training: the forward pass sees every weight matrix fake-quantized to int8
//! per output row (symmetric, scale = max|w| / 127, round half away from zero: the engine's own
//! [`picoformer::quant::fake_quantize_row`], so training and export round identically). The backward
//! pass is the straight-through estimator: gradients computed with the quantized weights are applied
//! to the float master weights unchanged.

use super::params::Layout;

/// Writes into `out` a copy of `params` whose matrices are fake-quantized row by row.
pub fn fake_quantize(layout: &Layout, params: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend_from_slice(params);
    for t in layout.tensors.iter().filter(|t| t.matrix) {
        let cols = t.shape[1];
        for row in out[t.offset..t.offset + t.len].chunks_exact_mut(cols) {
            picoformer::quant::fake_quantize_row(row);
        }
    }
}
