//! Typed, zero-copy views of a validated blob's tensors, grouped as the architecture groups them.

use crate::blob::DirEntry;
use crate::config::{Config, Quant};
use crate::kernels;
use crate::tensors::Layout;

/// How the values of an int8 matrix are ordered (blob flag `FLAG_I8_PANELS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8Layout {
    /// Row-major `[out, in]`.
    RowMajor,
    /// 4-row panels for the DSP kernel (see [`kernels::panel`]).
    Panels,
}

/// A weight matrix in flash: f32, or int8 with one scale per row.
#[derive(Debug, Clone, Copy)]
pub enum Matrix<'b> {
    /// Row-major f32.
    F32(&'b [f32]),
    /// Int8 with per-row scales.
    I8 {
        /// The quantized values, ordered as `layout` says.
        w: &'b [i8],
        /// One scale per row.
        scales: &'b [f32],
        /// Order of the values.
        layout: I8Layout,
    },
}

/// An input vector prepared for a matrix product: the f32 values and, for int8 models, their
/// quantized form (computed once and shared by every product that reads the same vector) and,
/// on cores with the DSP extension or Armv6-M, that form expanded for the optimized kernel.
#[derive(Debug, Clone, Copy)]
pub struct Activation<'a> {
    x: &'a [f32],
    q: &'a [i8],
    xe: &'a [u32],
    scale: f32,
}

impl<'a> Activation<'a> {
    /// Prepares `x`, quantizing it into `qbuf` when `quant` is int8. `qbuf` must hold 3 bytes per
    /// value (rounded up to 4) for the expansion; with less, the portable kernels are used.
    pub fn new(x: &'a [f32], qbuf: &'a mut [i8], quant: Quant) -> Self {
        match quant {
            Quant::F32 => Activation {
                x,
                q: &[],
                xe: &[],
                scale: 0.0,
            },
            Quant::Int8 => {
                let _p = crate::profile::scope(crate::profile::Phase::Quantize);
                let split = x.len().div_ceil(4) * 4;
                let (q, rest) = qbuf.split_at_mut(split.min(qbuf.len()));
                let q = q.get_mut(..x.len()).unwrap_or(&mut []);
                let scale = crate::quant::quantize_row(x, q);
                let xe = expand(q, rest);
                Activation { x, q, xe, scale }
            }
        }
    }
}

/// Expands `q` into `rest` for the DSP or Cortex-M0 kernel (an empty slice elsewhere, or when
/// `q` cannot be expanded).
#[cfg(any(picoformer_dsp, picoformer_v6m))]
fn expand<'a>(q: &[i8], rest: &'a mut [i8]) -> &'a [u32] {
    let words = 2 * (q.len() / 4);
    let Some(bytes) = rest.get_mut(..4 * words) else {
        return &[];
    };
    match bytemuck::try_cast_slice_mut::<i8, u32>(bytes) {
        Ok(xe) => {
            let n = kernels::panel::expand_activation(q, xe);
            xe.get(..n).unwrap_or(&[])
        }
        Err(_) => &[],
    }
}

/// Expands `q` into `rest` for the DSP or Cortex-M0 kernel (an empty slice elsewhere).
#[cfg(not(any(picoformer_dsp, picoformer_v6m)))]
fn expand<'a>(_q: &[i8], _rest: &'a mut [i8]) -> &'a [u32] {
    &[]
}

impl<'b> Matrix<'b> {
    /// `y = M a + bias`.
    pub fn matvec(&self, a: &Activation<'_>, bias: &[f32], y: &mut [f32]) {
        let _p = crate::profile::scope(crate::profile::Phase::Matvec);
        match *self {
            Matrix::F32(w) => kernels::matvec_f32_fast(w, a.x, bias, y),
            Matrix::I8 {
                w,
                scales,
                layout: I8Layout::RowMajor,
            } => kernels::matvec_i8(w, scales, a.q, a.scale, bias, y),
            Matrix::I8 {
                w,
                scales,
                layout: I8Layout::Panels,
            } => kernels::panel::matvec_i8_panels(w, scales, a.q, a.xe, a.scale, bias, y),
        }
    }

    /// Copies row `row` (dequantized) into `out`.
    pub fn row_into(&self, row: usize, out: &mut [f32]) {
        let cols = out.len().max(1);
        match *self {
            Matrix::F32(w) => {
                let src = w.chunks_exact(cols).nth(row).unwrap_or(&[]);
                out.iter_mut().zip(src).for_each(|(o, v)| *o = *v);
            }
            Matrix::I8 {
                w,
                scales,
                layout: I8Layout::RowMajor,
            } => {
                let src = w.chunks_exact(cols).nth(row).unwrap_or(&[]);
                let s = scales.get(row).copied().unwrap_or(0.0);
                out.iter_mut().zip(src).for_each(|(o, &v)| *o = f32::from(v) * s);
            }
            Matrix::I8 {
                w,
                scales,
                layout: I8Layout::Panels,
            } => {
                let s = scales.get(row).copied().unwrap_or(0.0);
                kernels::panel::panel_row_into(w, scales.len(), row, out, |v| f32::from(v) * s);
            }
        }
    }
}

/// A linear layer `y = W x + b`.
#[derive(Debug, Clone, Copy)]
pub struct Linear<'b> {
    /// Weight, `[out, in]`.
    pub w: Matrix<'b>,
    /// Bias, `[out]`.
    pub b: &'b [f32],
}

impl Linear<'_> {
    /// `y = W a + b`.
    #[inline]
    pub fn forward(&self, a: &Activation<'_>, y: &mut [f32]) {
        self.w.matvec(a, self.b, y);
    }
}

/// LayerNorm parameters.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'b> {
    /// Gain (`weight`).
    pub gain: &'b [f32],
    /// Shift (`bias`).
    pub shift: &'b [f32],
}

/// One attention sublayer's projections.
#[derive(Debug, Clone, Copy)]
pub struct Attention<'b> {
    /// Query projection.
    pub q: Linear<'b>,
    /// Key projection.
    pub k: Linear<'b>,
    /// Value projection.
    pub v: Linear<'b>,
    /// Output projection over the concatenated heads.
    pub o: Linear<'b>,
}

/// The position-wise feed-forward network.
#[derive(Debug, Clone, Copy)]
pub struct Ffn<'b> {
    /// `d_model -> d_ff`.
    pub l1: Linear<'b>,
    /// `d_ff -> d_model`.
    pub l2: Linear<'b>,
}

/// The encoder's depthwise convolution sublayer (see [`Config::conv_kernel`]).
#[derive(Debug, Clone, Copy)]
pub struct Conv<'b> {
    /// `[d_model, kernel]`: tap `j` of channel `c` at `c * kernel + j` reads position `t + j - kernel / 2`.
    pub weight: &'b [f32],
    /// One bias per channel.
    pub bias: &'b [f32],
    /// Kernel width (odd).
    pub kernel: usize,
    /// Norm around the sublayer.
    pub norm: Norm<'b>,
}

impl Conv<'_> {
    /// The sublayer body at row `r` of the `n` sublayer inputs in `rows`, into `out`.
    pub fn row(&self, rows: &[f32], n: usize, r: usize, out: &mut [f32]) {
        kernels::depthwise_conv_row(rows, n, r, self.weight, self.bias, self.kernel, out);
    }
}

/// One encoder block.
#[derive(Debug, Clone, Copy)]
pub struct EncoderBlock<'b> {
    /// Self-attention.
    pub attn: Attention<'b>,
    /// Norm around the attention sublayer.
    pub norm1: Norm<'b>,
    /// Depthwise convolution between attention and the FFN (`conv_kernel > 0`).
    pub conv: Option<Conv<'b>>,
    /// Feed-forward network.
    pub ffn: Ffn<'b>,
    /// Norm around the feed-forward sublayer.
    pub norm2: Norm<'b>,
}

/// One decoder block.
#[derive(Debug, Clone, Copy)]
pub struct DecoderBlock<'b> {
    /// Masked self-attention.
    pub self_attn: Attention<'b>,
    /// Norm around self-attention.
    pub norm1: Norm<'b>,
    /// Cross-attention over the encoder output.
    pub cross: Attention<'b>,
    /// Norm around cross-attention.
    pub norm2: Norm<'b>,
    /// Feed-forward network.
    pub ffn: Ffn<'b>,
    /// Norm around the feed-forward sublayer.
    pub norm3: Norm<'b>,
}

/// All tensors of a validated blob. Accessors cannot fail: the blob was checked at load time
/// (an impossible miss yields an empty view, never a panic).
#[derive(Debug, Clone, Copy)]
pub struct Weights<'b> {
    blob: &'b [u8],
    dir: &'b [DirEntry],
    layout: Layout,
    i8_layout: I8Layout,
}

impl<'b> Weights<'b> {
    pub(crate) fn new(blob: &'b [u8], dir: &'b [DirEntry], cfg: &Config, i8_layout: I8Layout) -> Self {
        Weights {
            blob,
            dir,
            layout: Layout::of(cfg),
            i8_layout,
        }
    }

    /// How this blob orders its int8 matrices.
    pub fn i8_layout(&self) -> I8Layout {
        self.i8_layout
    }

    fn bytes(&self, offset: u32, len: usize) -> &'b [u8] {
        let start = offset as usize;
        self.blob.get(start..start.saturating_add(len)).unwrap_or(&[])
    }

    fn floats(&self, offset: u32, n: usize) -> &'b [f32] {
        bytemuck::try_cast_slice(self.bytes(offset, 4 * n)).unwrap_or(&[])
    }

    /// The f32 tensor at directory index `i` that is not a matrix of a linear layer: a vector,
    /// or the convolution's `[d_model, kernel]` taps (all rows times columns values).
    pub fn vector(&self, i: usize) -> &'b [f32] {
        self.dir
            .get(i)
            .map_or(&[], |e| self.floats(e.offset, e.rows as usize * e.cols as usize))
    }

    /// The matrix at directory index `i`.
    pub fn matrix(&self, i: usize) -> Matrix<'b> {
        let Some(e) = self.dir.get(i) else {
            return Matrix::F32(&[]);
        };
        let n = e.rows as usize * e.cols as usize;
        if e.dtype == crate::blob::DTYPE_I8 {
            Matrix::I8 {
                w: bytemuck::cast_slice(self.bytes(e.offset, n)),
                scales: self.floats(e.scales, e.rows as usize),
                layout: self.i8_layout,
            }
        } else {
            Matrix::F32(self.floats(e.offset, n))
        }
    }

    fn linear(&self, i: usize) -> Linear<'b> {
        Linear {
            w: self.matrix(i),
            b: self.vector(i + 1),
        }
    }

    fn norm(&self, i: usize) -> Norm<'b> {
        Norm {
            gain: self.vector(i),
            shift: self.vector(i + 1),
        }
    }

    fn attention(&self, i: usize) -> Attention<'b> {
        Attention {
            q: self.linear(i),
            k: self.linear(i + 2),
            v: self.linear(i + 4),
            o: self.linear(i + 6),
        }
    }

    /// `src_emb.weight`.
    pub fn src_embedding(&self) -> Matrix<'b> {
        self.matrix(0)
    }

    /// `tgt_emb.weight`.
    pub fn tgt_embedding(&self) -> Matrix<'b> {
        self.matrix(1)
    }

    /// Encoder block `l` (see `tensors` for the order within a block).
    pub fn encoder(&self, l: usize) -> EncoderBlock<'b> {
        let at = |i| self.layout.encoder(l, i);
        let conv = (self.layout.encoder_block > crate::tensors::ENCODER_BLOCK_TENSORS).then(|| Conv {
            weight: self.vector(at(16)),
            bias: self.vector(at(17)),
            kernel: self.dir.get(at(16)).map_or(1, |e| e.cols as usize),
            norm: self.norm(at(18)),
        });
        EncoderBlock {
            attn: self.attention(at(0)),
            norm1: self.norm(at(8)),
            conv,
            ffn: Ffn {
                l1: self.linear(at(10)),
                l2: self.linear(at(12)),
            },
            norm2: self.norm(at(14)),
        }
    }

    /// Decoder block `l`.
    pub fn decoder(&self, l: usize) -> DecoderBlock<'b> {
        let at = |i| self.layout.decoder(l, i);
        DecoderBlock {
            self_attn: self.attention(at(0)),
            norm1: self.norm(at(8)),
            cross: self.cross_attention(l),
            norm2: self.norm(at(18)),
            ffn: Ffn {
                l1: self.linear(at(20)),
                l2: self.linear(at(22)),
            },
            norm3: self.norm(at(24)),
        }
    }

    /// The cross-attention of decoder block `l` alone (the encoder projects its keys and values
    /// once per input, without the rest of the block).
    pub fn cross_attention(&self, l: usize) -> Attention<'b> {
        self.attention(self.layout.decoder(l, 10))
    }

    /// Final encoder and decoder norms (pre-LN only).
    pub fn final_norms(&self, cfg: &Config) -> Option<(Norm<'b>, Norm<'b>)> {
        (cfg.norm == crate::config::NormPlacement::Pre)
            .then(|| (self.norm(self.layout.tail_start), self.norm(self.layout.tail_start + 2)))
    }

    /// The output projection (the output embedding when tied).
    pub fn output(&self, cfg: &Config) -> Linear<'b> {
        let bias = self.layout.count.saturating_sub(1);
        let w = if cfg.tied_output {
            self.tgt_embedding()
        } else {
            self.matrix(bias.saturating_sub(1))
        };
        Linear {
            w,
            b: self.vector(bias),
        }
    }
}
