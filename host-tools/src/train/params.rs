//! Model hyper-parameters, the flat parameter buffer's layout and its initialisation.
//!
//! All parameters live in one `Vec<f32>`; gradients and AdamW moments use the same layout, so the
//! optimiser, gradient clipping and gradient summation are single loops. Each tensor keeps its
//! PyTorch-style name from the engine's [`picoformer::TensorId`] list. Inside the buffer the q, k and v
//! projections of an attention block are stored next to each other (`[3d, d]` weights, `[3d]` biases)
//! so one matrix product computes all three.

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::rng::{self, Rng};

/// LayerNorm placement.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// `x = LN(x + Sublayer(x))`.
    Post,
    /// `x = x + Sublayer(LN(x))`, with a final LayerNorm after each stack.
    Pre,
}

/// The `model` section of `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Residual stream width.
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward hidden width.
    pub d_ff: usize,
    /// Encoder blocks.
    pub encoder_layers: usize,
    /// Decoder blocks.
    pub decoder_layers: usize,
    /// LayerNorm placement.
    pub norm: Norm,
    /// Output projection shares `tgt_emb.weight`.
    pub tied_output: bool,
    /// Most input symbols.
    pub max_input_len: usize,
    /// Most output tokens (without START/END).
    pub max_output_len: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Kernel width of the encoder's depthwise convolution sublayer (odd), 0 for none.
    #[serde(default)]
    pub conv_kernel: usize,
}

/// A model spec plus its vocabulary sizes: everything that fixes the parameter shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    /// Hyper-parameters.
    pub spec: ModelSpec,
    /// Input vocabulary size (with `<pad>`).
    pub input_vocab: usize,
    /// Output vocabulary size (with `<pad>`, `<s>`, `</s>`).
    pub output_vocab: usize,
}

impl Arch {
    /// Checks the sizes the trainer and the engine rely on.
    pub fn validate(&self) -> Result<()> {
        let s = &self.spec;
        if s.d_model == 0 || s.heads == 0 || !s.d_model.is_multiple_of(s.heads) {
            bail!(
                "d_model ({}) must be a positive multiple of heads ({})",
                s.d_model,
                s.heads
            );
        }
        if !s.d_model.is_multiple_of(2) {
            bail!("d_model ({}) must be even (sinusoidal position encoding)", s.d_model);
        }
        if s.conv_kernel > 0 && (s.conv_kernel.is_multiple_of(2) || s.conv_kernel > 31) {
            bail!(
                "conv_kernel ({}) must be odd and at most 31 (0 = no convolution)",
                s.conv_kernel
            );
        }
        if s.d_ff == 0 || s.encoder_layers == 0 || s.decoder_layers == 0 {
            bail!("d_ff, encoder_layers and decoder_layers must be at least 1");
        }
        if self.input_vocab < 2 || self.output_vocab < 4 {
            bail!(
                "vocabularies too small (input {}, output {})",
                self.input_vocab,
                self.output_vocab
            );
        }
        Ok(())
    }

    /// The engine's view of this architecture (used for the tensor list).
    pub fn engine_config(&self) -> picoformer::Config {
        let s = &self.spec;
        picoformer::Config {
            d_model: s.d_model,
            heads: s.heads,
            d_ff: s.d_ff,
            encoder_layers: s.encoder_layers,
            decoder_layers: s.decoder_layers,
            input_vocab: self.input_vocab,
            output_vocab: self.output_vocab,
            max_input_len: s.max_input_len,
            max_output_len: s.max_output_len,
            norm: match s.norm {
                Norm::Post => picoformer::NormPlacement::Post,
                Norm::Pre => picoformer::NormPlacement::Pre,
            },
            tied_output: s.tied_output,
            quant: picoformer::Quant::F32,
            kv_cache: picoformer::Quant::F32,
            input_split: picoformer::Split::Chars,
            output_split: picoformer::Split::Chars,
            layer_norm_eps: s.layer_norm_eps,
            conv_kernel: s.conv_kernel,
        }
    }
}

/// A linear layer's weight (`[out, inp]`) and bias offsets.
#[derive(Clone, Copy, Debug)]
pub struct Lin {
    /// Weight offset.
    pub w: usize,
    /// Bias offset.
    pub b: usize,
    /// Output width.
    pub out: usize,
    /// Input width.
    pub inp: usize,
}

/// LayerNorm gain and shift offsets.
#[derive(Clone, Copy, Debug)]
pub struct Ln {
    /// Gain offset.
    pub g: usize,
    /// Shift offset.
    pub b: usize,
}

/// Attention parameters: fused `[3d, d]` q/k/v weights at `qkv.w`, `[3d]` biases at `qkv.b`.
#[derive(Clone, Copy, Debug)]
pub struct Attn {
    /// Fused q, k, v projection (`out` = 3d).
    pub qkv: Lin,
    /// Output projection.
    pub out: Lin,
}

/// Depthwise convolution parameters: `[d, k]` weight at `w`, `[d]` bias at `b`.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    /// Weight offset.
    pub w: usize,
    /// Bias offset.
    pub b: usize,
    /// Kernel width (odd).
    pub k: usize,
}

/// One residual sublayer's parameters.
#[derive(Clone, Copy, Debug)]
pub enum Sub {
    /// Self-attention (causal in the decoder).
    SelfAttn {
        /// Parameters.
        attn: Attn,
        /// Causal mask.
        causal: bool,
    },
    /// Cross-attention over the encoder output.
    CrossAttn(Attn),
    /// Position-wise feed-forward network.
    Ffn(Lin, Lin),
    /// Depthwise convolution over positions (encoder only).
    Conv(Conv),
}

/// Name, shape and place of one tensor.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// PyTorch-style name.
    pub name: String,
    /// Shape (`[rows, cols]` for matrices, `[len]` for vectors).
    pub shape: Vec<usize>,
    /// Offset in the flat buffer.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
    /// A matrix (fake-quantized by QAT, stored as int8 by the exporter).
    pub matrix: bool,
}

/// Where every parameter lives in the flat buffer.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The architecture.
    pub arch: Arch,
    /// Tensors in the order of `docs/architecture.md` (the engine's blob order).
    pub tensors: Vec<TensorInfo>,
    /// Total number of parameters.
    pub total: usize,
    /// `src_emb.weight`.
    pub src_emb: usize,
    /// `tgt_emb.weight`.
    pub tgt_emb: usize,
    /// Encoder blocks: (sublayer, its LayerNorm).
    pub enc: Vec<Vec<(Sub, Ln)>>,
    /// Decoder blocks.
    pub dec: Vec<Vec<(Sub, Ln)>>,
    /// Final encoder LayerNorm (pre-LN).
    pub enc_norm: Option<Ln>,
    /// Final decoder LayerNorm (pre-LN).
    pub dec_norm: Option<Ln>,
    /// Output projection weight (`tgt_emb` when tied) and bias.
    pub out: Lin,
    /// Sinusoidal positions, `[positions, d]`.
    pub pe: Vec<f32>,
}

struct Alloc {
    next: usize,
    at: HashMap<String, usize>,
}

impl Alloc {
    fn take(&mut self, name: String, len: usize) -> usize {
        let off = self.next;
        self.next += len;
        self.at.insert(name, off);
        off
    }

    fn lin(&mut self, p: &str, out: usize, inp: usize) -> Lin {
        let w = self.take(format!("{p}.weight"), out * inp);
        let b = self.take(format!("{p}.bias"), out);
        Lin { w, b, out, inp }
    }

    fn attn(&mut self, p: &str, d: usize) -> Attn {
        let w = self.next;
        for n in ["q_proj", "k_proj", "v_proj"] {
            self.take(format!("{p}.{n}.weight"), d * d);
        }
        let b = self.next;
        for n in ["q_proj", "k_proj", "v_proj"] {
            self.take(format!("{p}.{n}.bias"), d);
        }
        let out = self.lin(&format!("{p}.out_proj"), d, d);
        Attn {
            qkv: Lin {
                w,
                b,
                out: 3 * d,
                inp: d,
            },
            out,
        }
    }
}

impl Layout {
    /// Lays out the parameters of `arch`.
    pub fn new(arch: &Arch) -> Result<Layout> {
        arch.validate()?;
        let s = &arch.spec;
        let d = s.d_model;
        let mut a = Alloc {
            next: 0,
            at: HashMap::new(),
        };
        // LayerNorms take 2d: allocate gain and shift together.
        let ln = |a: &mut Alloc, p: String| {
            let g = a.take(format!("{p}.weight"), d);
            let b = a.take(format!("{p}.bias"), d);
            Ln { g, b }
        };
        let src_emb = a.take("src_emb.weight".into(), arch.input_vocab * d);
        let tgt_emb = a.take("tgt_emb.weight".into(), arch.output_vocab * d);
        let mut enc = Vec::new();
        for i in 0..s.encoder_layers {
            let p = format!("encoder.layers.{i}");
            let attn = a.attn(&format!("{p}.self_attn"), d);
            let n1 = ln(&mut a, format!("{p}.norm1"));
            let l1 = a.lin(&format!("{p}.linear1"), s.d_ff, d);
            let l2 = a.lin(&format!("{p}.linear2"), d, s.d_ff);
            let n2 = ln(&mut a, format!("{p}.norm2"));
            let mut block = vec![(Sub::SelfAttn { attn, causal: false }, n1)];
            if s.conv_kernel > 0 {
                let w = a.take(format!("{p}.conv.weight"), d * s.conv_kernel);
                let b = a.take(format!("{p}.conv.bias"), d);
                let n3 = ln(&mut a, format!("{p}.norm3"));
                block.push((Sub::Conv(Conv { w, b, k: s.conv_kernel }), n3));
            }
            block.push((Sub::Ffn(l1, l2), n2));
            enc.push(block);
        }
        let mut dec = Vec::new();
        for i in 0..s.decoder_layers {
            let p = format!("decoder.layers.{i}");
            let attn = a.attn(&format!("{p}.self_attn"), d);
            let n1 = ln(&mut a, format!("{p}.norm1"));
            let cross = a.attn(&format!("{p}.cross_attn"), d);
            let n2 = ln(&mut a, format!("{p}.norm2"));
            let l1 = a.lin(&format!("{p}.linear1"), s.d_ff, d);
            let l2 = a.lin(&format!("{p}.linear2"), d, s.d_ff);
            let n3 = ln(&mut a, format!("{p}.norm3"));
            dec.push(vec![
                (Sub::SelfAttn { attn, causal: true }, n1),
                (Sub::CrossAttn(cross), n2),
                (Sub::Ffn(l1, l2), n3),
            ]);
        }
        let (enc_norm, dec_norm) = match s.norm {
            Norm::Pre => (
                Some(ln(&mut a, "encoder.norm".into())),
                Some(ln(&mut a, "decoder.norm".into())),
            ),
            Norm::Post => (None, None),
        };
        let out_w = if s.tied_output {
            tgt_emb
        } else {
            a.take("out_proj.weight".into(), arch.output_vocab * d)
        };
        let out_b = a.take("out_proj.bias".into(), arch.output_vocab);
        let out = Lin {
            w: out_w,
            b: out_b,
            out: arch.output_vocab,
            inp: d,
        };

        let cfg = arch.engine_config();
        let mut tensors = Vec::new();
        for id in picoformer::TensorId::all(&cfg) {
            let name = id.to_string();
            let (r, c) = id.shape(&cfg);
            let Some(&offset) = a.at.get(&name) else {
                bail!("internal: no parameter for tensor {name}")
            };
            let shape = if id.is_matrix() || r > 1 { vec![r, c] } else { vec![c] };
            tensors.push(TensorInfo {
                name,
                shape,
                offset,
                len: r * c,
                matrix: id.is_matrix(),
            });
        }
        if tensors.len() != a.at.len() || tensors.iter().map(|t| t.len).sum::<usize>() != a.next {
            bail!("internal: trainer and engine disagree on the tensor list");
        }
        let positions = s.max_input_len.max(s.max_output_len + 2);
        let mut pe = vec![0.0f32; positions * d];
        for (pos, row) in pe.chunks_exact_mut(d).enumerate() {
            picoformer::model::positional_encoding(pos, row);
        }
        Ok(Layout {
            arch: arch.clone(),
            tensors,
            total: a.next,
            src_emb,
            tgt_emb,
            enc,
            dec,
            enc_norm,
            dec_norm,
            out,
            pe,
        })
    }

    /// Width of the residual stream.
    pub fn d(&self) -> usize {
        self.arch.spec.d_model
    }

    /// Rows of the position table needed for sequences of length `len`; grows the table if needed.
    pub fn ensure_positions(&mut self, len: usize) {
        let d = self.d();
        let have = self.pe.len() / d;
        if len > have {
            self.pe.resize(len * d, 0.0);
            for pos in have..len {
                picoformer::model::positional_encoding(pos, &mut self.pe[pos * d..(pos + 1) * d]);
            }
        }
    }

    /// Fresh parameters initialised like the PyTorch reference: embeddings N(0, d^-1/2) with a zero PAD
    /// row, Xavier-uniform attention and feed-forward matrices (the fused `[3d, d]` in-projection as one
    /// matrix, as `nn.MultiheadAttention`), zero attention biases, `nn.Linear` defaults for the other
    /// biases and the output projection, LayerNorm gain 1 and shift 0.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let d = self.d();
        let mut p = vec![0.0f32; self.total];
        let mut k = 0u64;
        let mut fill = |p: &mut [f32], f: &mut dyn FnMut(&mut Rng) -> f32| {
            k += 1;
            let mut r = Rng::new(seed, rng::INIT, k, 0);
            p.iter_mut().for_each(|v| *v = f(&mut r));
        };
        let uniform = |bound: f32| move |r: &mut Rng| (2.0 * r.uniform() - 1.0) * bound;
        let std = (d as f32).powf(-0.5);
        for (off, vocab) in [
            (self.src_emb, self.arch.input_vocab),
            (self.tgt_emb, self.arch.output_vocab),
        ] {
            fill(&mut p[off..off + vocab * d], &mut |r| r.normal() * std);
            p[off..off + d].iter_mut().for_each(|v| *v = 0.0);
        }
        let xavier = |out: usize, inp: usize| (6.0 / (out + inp) as f32).sqrt();
        for (sub, ln) in self.enc.iter().chain(&self.dec).flatten() {
            p[ln.g..ln.g + d].iter_mut().for_each(|v| *v = 1.0);
            match sub {
                Sub::SelfAttn { attn, .. } | Sub::CrossAttn(attn) => {
                    fill(
                        &mut p[attn.qkv.w..attn.qkv.w + 3 * d * d],
                        &mut uniform(xavier(3 * d, d)),
                    );
                    fill(&mut p[attn.out.w..attn.out.w + d * d], &mut uniform(xavier(d, d)));
                }
                Sub::Ffn(l1, l2) => {
                    for l in [l1, l2] {
                        fill(&mut p[l.w..l.w + l.out * l.inp], &mut uniform(xavier(l.out, l.inp)));
                        fill(&mut p[l.b..l.b + l.out], &mut uniform(1.0 / (l.inp as f32).sqrt()));
                    }
                }
                Sub::Conv(cv) => {
                    // `nn.Conv1d(d, d, k, groups=d)` defaults: fan-in k.
                    let bound = 1.0 / (cv.k as f32).sqrt();
                    fill(&mut p[cv.w..cv.w + d * cv.k], &mut uniform(bound));
                    fill(&mut p[cv.b..cv.b + d], &mut uniform(bound));
                }
            }
        }
        for ln in self.enc_norm.iter().chain(&self.dec_norm) {
            p[ln.g..ln.g + d].iter_mut().for_each(|v| *v = 1.0);
        }
        let bound = 1.0 / (d as f32).sqrt();
        if !self.arch.spec.tied_output {
            fill(&mut p[self.out.w..self.out.w + self.out.out * d], &mut uniform(bound));
        }
        fill(&mut p[self.out.b..self.out.b + self.out.out], &mut uniform(bound));
        p
    }
}
