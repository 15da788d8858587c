//! The numbers that define a model, read from a blob's header.

/// Where LayerNorm sits relative to each sublayer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `LayerNorm(x + Sublayer(x))`, as in "Attention Is All You Need".
    Post,
    /// `x + Sublayer(LayerNorm(x))`, with a final LayerNorm after each stack.
    Pre,
}

/// How the weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// 32-bit floats.
    F32,
    /// Symmetric int8 with one f32 scale per output row; activations quantized per call.
    Int8,
}

/// How a string is cut into vocabulary symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Every character is a symbol.
    Chars,
    /// Symbols are separated by spaces (e.g. phonemes).
    Space,
}

/// Model hyper-parameters. Every buffer size follows from these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Width of every residual stream vector.
    pub d_model: usize,
    /// Attention heads; `d_model / heads` is the head width.
    pub heads: usize,
    /// Hidden width of the position-wise feed-forward network.
    pub d_ff: usize,
    /// Encoder blocks.
    pub encoder_layers: usize,
    /// Decoder blocks.
    pub decoder_layers: usize,
    /// Input vocabulary size, including `<pad>` at id 0.
    pub input_vocab: usize,
    /// Output vocabulary size, including `<pad>`, `<s>`, `</s>` at ids 0, 1, 2.
    pub output_vocab: usize,
    /// Most input symbols the model takes.
    pub max_input_len: usize,
    /// Most output tokens decoded (END excluded).
    pub max_output_len: usize,
    /// LayerNorm placement.
    pub norm: NormPlacement,
    /// Output projection shares the output embedding matrix.
    pub tied_output: bool,
    /// Weight storage.
    pub quant: Quant,
    /// Storage of the attention key/value caches: f32, or int8 with one scale per row and head
    /// (a quarter of the RAM, for a small accuracy cost measured on each model).
    pub kv_cache: Quant,
    /// How inputs are split into symbols.
    pub input_split: Split,
    /// How output tokens are joined into text.
    pub output_split: Split,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Kernel width of the depthwise convolution sublayer in every encoder block (odd), or 0 for
    /// none. The sublayer sits between self-attention and the FFN, as in Conformer:
    /// `x + DWConv(LN(x))` (pre-LN) or `LN(x + DWConv(x))` (post-LN). It gives each position its
    /// neighbours directly, which attention with absolute positions learns only with effort.
    pub conv_kernel: usize,
}

/// Id of the padding token in both vocabularies.
pub const PAD: u16 = 0;
/// Id of the START token in the output vocabulary.
pub const START: u16 = 1;
/// Id of the END token in the output vocabulary.
pub const END: u16 = 2;
/// First ordinary output token id.
pub const FIRST_OUTPUT_TOKEN: u16 = 3;

impl Config {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads.max(1)
    }

    /// Decoder positions: START plus up to `max_output_len` tokens.
    pub fn decoder_positions(&self) -> usize {
        self.max_output_len + 1
    }

    /// Number of trainable parameters (weights, biases, LayerNorm gains and shifts).
    pub fn param_count(&self) -> usize {
        let d = self.d_model;
        let attn = 4 * (d * d + d);
        let ffn = d * self.d_ff + self.d_ff + self.d_ff * d + d;
        let conv = if self.conv_kernel > 0 {
            d * self.conv_kernel + d + 2 * d
        } else {
            0
        };
        let enc = self.encoder_layers * (attn + ffn + 2 * 2 * d + conv);
        let dec = self.decoder_layers * (2 * attn + ffn + 3 * 2 * d);
        let final_norms = if self.norm == NormPlacement::Pre { 2 * 2 * d } else { 0 };
        let out = if self.tied_output { 0 } else { self.output_vocab * d } + self.output_vocab;
        (self.input_vocab + self.output_vocab) * d + enc + dec + final_norms + out
    }
}
