//! The list of tensors a model has, in the order a blob stores them, with PyTorch-style names.
//!
//! One list serves the blob reader, the blob writer and the exporter, so they cannot drift apart.

use core::fmt;

use crate::config::{Config, NormPlacement};

/// Weight or bias of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `.weight` (a matrix for linear layers and embeddings, the gain for LayerNorm).
    Weight,
    /// `.bias` (the shift for LayerNorm).
    Bias,
}

/// One of the three attention sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// Encoder self-attention.
    EncoderSelf,
    /// Decoder masked self-attention.
    DecoderSelf,
    /// Decoder cross-attention over the encoder output.
    DecoderCross,
}

/// A projection inside an attention sublayer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    /// Queries.
    Q,
    /// Keys.
    K,
    /// Values.
    V,
    /// Output projection over the concatenated heads.
    O,
}

/// Encoder or decoder stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// The encoder.
    Encoder,
    /// The decoder.
    Decoder,
}

/// What a tensor is, independent of its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `src_emb.weight`.
    SrcEmbedding,
    /// `tgt_emb.weight`.
    TgtEmbedding,
    /// `{stack}.layers.{l}.{self_attn|cross_attn}.{q|k|v|out}_proj.{weight|bias}`.
    Attention(Site, Proj, Param),
    /// `{stack}.layers.{l}.norm{n}.{weight|bias}` (n = 1..=3).
    LayerNorm(Stack, u8, Param),
    /// `{stack}.layers.{l}.linear{n}.{weight|bias}` (n = 1, 2).
    Linear(Stack, u8, Param),
    /// `encoder.layers.{l}.conv.{weight|bias}`: the depthwise convolution (`[d, kernel]` weight),
    /// always f32.
    Conv(Param),
    /// `{stack}.norm.{weight|bias}`: the final LayerNorm of a pre-LN stack.
    FinalNorm(Stack, Param),
    /// `out_proj.{weight|bias}`.
    OutProj(Param),
}

/// A tensor of a model: its kind and layer (0 for tensors outside the stacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorId {
    /// What it is.
    pub kind: Kind,
    /// Which block of its stack.
    pub layer: u16,
}

/// Tensors per encoder block without the convolution sublayer.
pub const ENCODER_BLOCK_TENSORS: usize = 16;
/// Extra tensors per encoder block with the convolution sublayer (`conv.weight`, `conv.bias`,
/// `norm3.weight`, `norm3.bias`, after the block's other tensors).
pub const CONV_TENSORS: usize = 4;
/// Tensors per decoder block.
pub const DECODER_BLOCK_TENSORS: usize = 26;

const ATTN: [(Proj, Param); 8] = [
    (Proj::Q, Param::Weight),
    (Proj::Q, Param::Bias),
    (Proj::K, Param::Weight),
    (Proj::K, Param::Bias),
    (Proj::V, Param::Weight),
    (Proj::V, Param::Bias),
    (Proj::O, Param::Weight),
    (Proj::O, Param::Bias),
];

fn norm(stack: Stack, n: u8) -> [Kind; 2] {
    [
        Kind::LayerNorm(stack, n, Param::Weight),
        Kind::LayerNorm(stack, n, Param::Bias),
    ]
}

fn ffn(stack: Stack) -> [Kind; 4] {
    [
        Kind::Linear(stack, 1, Param::Weight),
        Kind::Linear(stack, 1, Param::Bias),
        Kind::Linear(stack, 2, Param::Weight),
        Kind::Linear(stack, 2, Param::Bias),
    ]
}

/// The kind of the `i`-th tensor of an encoder block.
fn encoder_block_kind(i: usize) -> Option<Kind> {
    let attn = ATTN.iter().map(|&(p, q)| Kind::Attention(Site::EncoderSelf, p, q));
    let conv = [Kind::Conv(Param::Weight), Kind::Conv(Param::Bias)];
    attn.chain(norm(Stack::Encoder, 1))
        .chain(ffn(Stack::Encoder))
        .chain(norm(Stack::Encoder, 2))
        .chain(conv)
        .chain(norm(Stack::Encoder, 3))
        .nth(i)
}

/// Tensors per encoder block of `cfg`.
pub fn encoder_block_tensors(cfg: &Config) -> usize {
    ENCODER_BLOCK_TENSORS + if cfg.conv_kernel > 0 { CONV_TENSORS } else { 0 }
}

/// The kind of the `i`-th tensor of a decoder block.
fn decoder_block_kind(i: usize) -> Option<Kind> {
    let own = ATTN.iter().map(|&(p, q)| Kind::Attention(Site::DecoderSelf, p, q));
    let cross = ATTN.iter().map(|&(p, q)| Kind::Attention(Site::DecoderCross, p, q));
    own.chain(norm(Stack::Decoder, 1))
        .chain(cross)
        .chain(norm(Stack::Decoder, 2))
        .chain(ffn(Stack::Decoder))
        .chain(norm(Stack::Decoder, 3))
        .nth(i)
}

/// Layout of the tensor list for a config: where each group starts.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Index of the first encoder block tensor.
    pub encoder_start: usize,
    /// Index of the first decoder block tensor.
    pub decoder_start: usize,
    /// Index of the first tensor after the stacks.
    pub tail_start: usize,
    /// Number of tensors.
    pub count: usize,
    /// Tensors per encoder block.
    pub encoder_block: usize,
}

impl Layout {
    /// The layout of `cfg`'s tensors.
    pub fn of(cfg: &Config) -> Layout {
        let encoder_start = 2;
        let encoder_block = encoder_block_tensors(cfg);
        let decoder_start = encoder_start + cfg.encoder_layers * encoder_block;
        let tail_start = decoder_start + cfg.decoder_layers * DECODER_BLOCK_TENSORS;
        let count = tail_start + tail_kinds(cfg).count();
        Layout {
            encoder_start,
            decoder_start,
            tail_start,
            count,
            encoder_block,
        }
    }

    /// Index of an encoder block's `i`-th tensor.
    pub fn encoder(&self, layer: usize, i: usize) -> usize {
        self.encoder_start + layer * self.encoder_block + i
    }

    /// Index of a decoder block's `i`-th tensor.
    pub fn decoder(&self, layer: usize, i: usize) -> usize {
        self.decoder_start + layer * DECODER_BLOCK_TENSORS + i
    }
}

fn tail_kinds(cfg: &Config) -> impl Iterator<Item = Kind> {
    let pre = cfg.norm == NormPlacement::Pre;
    let finals = [
        Kind::FinalNorm(Stack::Encoder, Param::Weight),
        Kind::FinalNorm(Stack::Encoder, Param::Bias),
        Kind::FinalNorm(Stack::Decoder, Param::Weight),
        Kind::FinalNorm(Stack::Decoder, Param::Bias),
    ];
    let out_w = (!cfg.tied_output).then_some(Kind::OutProj(Param::Weight));
    finals
        .into_iter()
        .filter(move |_| pre)
        .chain(out_w)
        .chain([Kind::OutProj(Param::Bias)])
}

impl TensorId {
    /// Every tensor of a model with this config, in blob order.
    pub fn all(cfg: &Config) -> impl Iterator<Item = TensorId> + '_ {
        let head = [Kind::SrcEmbedding, Kind::TgtEmbedding]
            .into_iter()
            .map(|kind| TensorId { kind, layer: 0 });
        let per_block = encoder_block_tensors(cfg);
        let enc = (0..cfg.encoder_layers).flat_map(move |l| {
            (0..per_block).filter_map(move |i| encoder_block_kind(i).map(|kind| TensorId { kind, layer: l as u16 }))
        });
        let dec = (0..cfg.decoder_layers).flat_map(|l| {
            (0..DECODER_BLOCK_TENSORS)
                .filter_map(move |i| decoder_block_kind(i).map(|kind| TensorId { kind, layer: l as u16 }))
        });
        head.chain(enc)
            .chain(dec)
            .chain(tail_kinds(cfg).map(|kind| TensorId { kind, layer: 0 }))
    }

    /// True for matrices (stored as int8 in an int8 blob); false for vectors (always f32).
    pub fn is_matrix(&self) -> bool {
        match self.kind {
            Kind::SrcEmbedding | Kind::TgtEmbedding => true,
            Kind::Attention(_, _, p) | Kind::Linear(_, _, p) | Kind::OutProj(p) => p == Param::Weight,
            Kind::LayerNorm(..) | Kind::FinalNorm(..) | Kind::Conv(_) => false,
        }
    }

    /// `(rows, cols)` for this tensor under `cfg`; vectors are `(1, len)`.
    pub fn shape(&self, cfg: &Config) -> (usize, usize) {
        let d = cfg.d_model;
        match self.kind {
            Kind::SrcEmbedding => (cfg.input_vocab, d),
            Kind::TgtEmbedding => (cfg.output_vocab, d),
            Kind::Attention(_, _, Param::Weight) => (d, d),
            Kind::Linear(_, 1, Param::Weight) => (cfg.d_ff, d),
            Kind::Linear(_, _, Param::Weight) => (d, cfg.d_ff),
            Kind::Linear(_, 1, Param::Bias) => (1, cfg.d_ff),
            Kind::OutProj(Param::Weight) => (cfg.output_vocab, d),
            Kind::OutProj(Param::Bias) => (1, cfg.output_vocab),
            Kind::Conv(Param::Weight) => (d, cfg.conv_kernel),
            Kind::Attention(..) | Kind::Linear(..) | Kind::LayerNorm(..) | Kind::FinalNorm(..) | Kind::Conv(_) => {
                (1, d)
            }
        }
    }

    /// A compact code stored in the blob's tensor directory.
    pub fn code(&self) -> u16 {
        fn p(x: Param) -> u16 {
            match x {
                Param::Weight => 0,
                Param::Bias => 1,
            }
        }
        fn s(x: Stack) -> u16 {
            match x {
                Stack::Encoder => 0,
                Stack::Decoder => 1,
            }
        }
        match self.kind {
            Kind::SrcEmbedding => 0x0100,
            Kind::TgtEmbedding => 0x0200,
            Kind::Attention(site, proj, q) => {
                let site = match site {
                    Site::EncoderSelf => 0,
                    Site::DecoderSelf => 1,
                    Site::DecoderCross => 2,
                };
                let proj = match proj {
                    Proj::Q => 0,
                    Proj::K => 1,
                    Proj::V => 2,
                    Proj::O => 3,
                };
                0x0300 | site << 4 | proj << 1 | p(q)
            }
            Kind::LayerNorm(st, n, q) => 0x0400 | s(st) << 4 | u16::from(n) << 1 | p(q),
            Kind::Linear(st, n, q) => 0x0500 | s(st) << 4 | u16::from(n) << 1 | p(q),
            Kind::FinalNorm(st, q) => 0x0600 | s(st) << 4 | p(q),
            Kind::OutProj(q) => 0x0700 | p(q),
            Kind::Conv(q) => 0x0800 | p(q),
        }
    }
}

impl fmt::Display for TensorId {
    /// The PyTorch-style name, e.g. `decoder.layers.1.cross_attn.k_proj.weight`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let param = |p: Param| match p {
            Param::Weight => "weight",
            Param::Bias => "bias",
        };
        let stack = |s: Stack| match s {
            Stack::Encoder => "encoder",
            Stack::Decoder => "decoder",
        };
        let l = self.layer;
        match self.kind {
            Kind::SrcEmbedding => write!(f, "src_emb.weight"),
            Kind::TgtEmbedding => write!(f, "tgt_emb.weight"),
            Kind::Attention(site, proj, p) => {
                let (st, sub) = match site {
                    Site::EncoderSelf => ("encoder", "self_attn"),
                    Site::DecoderSelf => ("decoder", "self_attn"),
                    Site::DecoderCross => ("decoder", "cross_attn"),
                };
                let proj = match proj {
                    Proj::Q => "q_proj",
                    Proj::K => "k_proj",
                    Proj::V => "v_proj",
                    Proj::O => "out_proj",
                };
                write!(f, "{st}.layers.{l}.{sub}.{proj}.{}", param(p))
            }
            Kind::LayerNorm(s, n, p) => write!(f, "{}.layers.{l}.norm{n}.{}", stack(s), param(p)),
            Kind::Linear(s, n, p) => write!(f, "{}.layers.{l}.linear{n}.{}", stack(s), param(p)),
            Kind::FinalNorm(s, p) => write!(f, "{}.norm.{}", stack(s), param(p)),
            Kind::OutProj(p) => write!(f, "out_proj.{}", param(p)),
            Kind::Conv(p) => write!(f, "encoder.layers.{l}.conv.{}", param(p)),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for TensorId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}", defmt::Display2Format(self))
    }
}
