//! Shared test helpers: a deterministic RNG, random models, and an independent f64 reference
//! implementation of the textbook encoder-decoder, written for clarity rather than speed.
#![allow(dead_code, clippy::needless_range_loop)]

use std::collections::HashMap;

use picoformer::blob::writer::{write_blob, AlignedBytes};
use picoformer::{Config, NormPlacement, Quant, Split, TensorId};

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn config(norm: NormPlacement, tied: bool, quant: Quant) -> Config {
    Config {
        d_model: 16,
        heads: 4,
        d_ff: 24,
        encoder_layers: 2,
        decoder_layers: 2,
        input_vocab: 9,
        output_vocab: 10,
        max_input_len: 12,
        max_output_len: 10,
        norm,
        tied_output: tied,
        quant,
        kv_cache: Quant::F32,
        input_split: Split::Chars,
        output_split: Split::Space,
        layer_norm_eps: 1e-5,
        conv_kernel: 0,
    }
}

pub const INPUT_SYMBOLS: [&str; 9] = ["<pad>", "a", "b", "c", "d", "e", "f", "g", "h"];
pub const OUTPUT_TOKENS: [&str; 10] = ["<pad>", "<s>", "</s>", "A", "B", "C", "D", "E", "F", "GH"];

/// Random weights for `cfg`, scaled so activations stay in a sensible range. `end_bias` is added
/// to the END logit so decoding terminates at a range of lengths.
pub fn random_tensors(cfg: &Config, seed: u64, end_bias: f32) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng::new(seed);
    let mut map = HashMap::new();
    for id in TensorId::all(cfg) {
        let (rows, cols) = id.shape(cfg);
        let name = id.to_string();
        let scale = if id.is_matrix() {
            1.0 / (cols as f32).sqrt() * 1.5
        } else {
            0.2
        };
        let mut v: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() * scale).collect();
        if name.contains("norm") && name.ends_with("weight") {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        if name == "out_proj.bias" {
            v[2] += end_bias;
        }
        map.insert(name, v);
    }
    map
}

pub fn blob(cfg: &Config, tensors: &HashMap<String, Vec<f32>>) -> AlignedBytes {
    let bytes = write_blob(
        cfg,
        &INPUT_SYMBOLS[..cfg.input_vocab],
        &OUTPUT_TOKENS[..cfg.output_vocab],
        tensors,
    )
    .expect("write blob");
    AlignedBytes::new(&bytes)
}

// ---------------------------------------------------------------------------------------------
// f64 reference

fn t<'a>(m: &'a HashMap<String, Vec<f32>>, name: &str) -> &'a [f32] {
    m.get(name).unwrap_or_else(|| panic!("missing {name}"))
}

fn linear(m: &HashMap<String, Vec<f32>>, prefix: &str, x: &[f64]) -> Vec<f64> {
    let w = t(m, &format!("{prefix}.weight"));
    let b = t(m, &format!("{prefix}.bias"));
    let cols = x.len();
    w.chunks(cols)
        .zip(b)
        .map(|(row, &b)| row.iter().zip(x).map(|(&w, &x)| w as f64 * x).sum::<f64>() + b as f64)
        .collect()
}

fn layer_norm(m: &HashMap<String, Vec<f32>>, prefix: &str, x: &[f64], eps: f64) -> Vec<f64> {
    let g = t(m, &format!("{prefix}.weight"));
    let b = t(m, &format!("{prefix}.bias"));
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    x.iter()
        .zip(g)
        .zip(b)
        .map(|((v, &g), &b)| (v - mean) / (var + eps).sqrt() * g as f64 + b as f64)
        .collect()
}

fn pe(pos: usize, d: usize) -> Vec<f64> {
    (0..d)
        .map(|j| {
            let i = (j / 2) * 2;
            let a = pos as f64 * (-(i as f64) * (10000f64).ln() / d as f64).exp();
            if j % 2 == 0 {
                a.sin()
            } else {
                a.cos()
            }
        })
        .collect()
}

/// Multi-head attention of queries `xq` over keys/values from `xkv`; `causal` masks future keys.
fn mha(
    m: &HashMap<String, Vec<f32>>,
    prefix: &str,
    xq: &[Vec<f64>],
    xkv: &[Vec<f64>],
    heads: usize,
    causal: bool,
) -> Vec<Vec<f64>> {
    let q: Vec<_> = xq.iter().map(|x| linear(m, &format!("{prefix}.q_proj"), x)).collect();
    let k: Vec<_> = xkv.iter().map(|x| linear(m, &format!("{prefix}.k_proj"), x)).collect();
    let v: Vec<_> = xkv.iter().map(|x| linear(m, &format!("{prefix}.v_proj"), x)).collect();
    let d = q[0].len();
    let dk = d / heads;
    q.iter()
        .enumerate()
        .map(|(i, qi)| {
            let mut ctx = vec![0.0; d];
            for h in 0..heads {
                let r = h * dk..(h + 1) * dk;
                let n = if causal { i + 1 } else { k.len() };
                let s: Vec<f64> = (0..n)
                    .map(|j| {
                        qi[r.clone()]
                            .iter()
                            .zip(&k[j][r.clone()])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (dk as f64).sqrt()
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..n {
                    for c in r.clone() {
                        ctx[c] += e[j] / z * v[j][c];
                    }
                }
            }
            linear(m, &format!("{prefix}.out_proj"), &ctx)
        })
        .collect()
}

fn sublayer(
    cfg: &Config,
    m: &HashMap<String, Vec<f32>>,
    norm: &str,
    x: &mut [Vec<f64>],
    f: impl Fn(&[Vec<f64>]) -> Vec<Vec<f64>>,
) {
    let eps = cfg.layer_norm_eps as f64;
    match cfg.norm {
        NormPlacement::Post => {
            let y = f(x);
            for (xi, yi) in x.iter_mut().zip(y) {
                let s: Vec<f64> = xi.iter().zip(&yi).map(|(a, b)| a + b).collect();
                *xi = layer_norm(m, norm, &s, eps);
            }
        }
        NormPlacement::Pre => {
            let normed: Vec<Vec<f64>> = x.iter().map(|xi| layer_norm(m, norm, xi, eps)).collect();
            let y = f(&normed);
            for (xi, yi) in x.iter_mut().zip(y) {
                xi.iter_mut().zip(&yi).for_each(|(a, b)| *a += b);
            }
        }
    }
}

fn ffn(m: &HashMap<String, Vec<f32>>, prefix: &str, x: &[Vec<f64>]) -> Vec<Vec<f64>> {
    x.iter()
        .map(|xi| {
            let h: Vec<f64> = linear(m, &format!("{prefix}.linear1"), xi)
                .into_iter()
                .map(|v| v.max(0.0))
                .collect();
            linear(m, &format!("{prefix}.linear2"), &h)
        })
        .collect()
}

/// `out[t][c] = bias[c] + sum_j w[c][j] * x[t + j - k/2][c]`, zero outside the sequence.
fn depthwise_conv(m: &HashMap<String, Vec<f32>>, prefix: &str, x: &[Vec<f64>], k: usize) -> Vec<Vec<f64>> {
    let w = t(m, &format!("{prefix}.conv.weight"));
    let b = t(m, &format!("{prefix}.conv.bias"));
    let n = x.len() as isize;
    (0..n)
        .map(|i| {
            (0..b.len())
                .map(|c| {
                    let taps: f64 = (0..k)
                        .map(|j| {
                            let src = i + j as isize - (k / 2) as isize;
                            if (0..n).contains(&src) {
                                w[c * k + j] as f64 * x[src as usize][c]
                            } else {
                                0.0
                            }
                        })
                        .sum();
                    b[c] as f64 + taps
                })
                .collect()
        })
        .collect()
}

fn embed(m: &HashMap<String, Vec<f32>>, name: &str, ids: &[u16], d: usize) -> Vec<Vec<f64>> {
    let e = t(m, name);
    ids.iter()
        .enumerate()
        .map(|(p, &id)| {
            let row = &e[id as usize * d..(id as usize + 1) * d];
            row.iter()
                .zip(pe(p, d))
                .map(|(&w, p)| w as f64 * (d as f64).sqrt() + p)
                .collect()
        })
        .collect()
}

/// Logits at every decoder position, recomputing everything from scratch (no caches).
pub fn reference_logits(
    cfg: &Config,
    m: &HashMap<String, Vec<f32>>,
    input: &[u16],
    dec_input: &[u16],
) -> Vec<Vec<f64>> {
    let d = cfg.d_model;
    let eps = cfg.layer_norm_eps as f64;
    let mut x = embed(m, "src_emb.weight", input, d);
    for l in 0..cfg.encoder_layers {
        let p = format!("encoder.layers.{l}");
        sublayer(cfg, m, &format!("{p}.norm1"), &mut x, |h| {
            mha(m, &format!("{p}.self_attn"), h, h, cfg.heads, false)
        });
        if cfg.conv_kernel > 0 {
            sublayer(cfg, m, &format!("{p}.norm3"), &mut x, |h| {
                depthwise_conv(m, &p, h, cfg.conv_kernel)
            });
        }
        sublayer(cfg, m, &format!("{p}.norm2"), &mut x, |h| ffn(m, &p, h));
    }
    if cfg.norm == NormPlacement::Pre {
        x = x.iter().map(|xi| layer_norm(m, "encoder.norm", xi, eps)).collect();
    }
    let mem = x;
    let mut y = embed(m, "tgt_emb.weight", dec_input, d);
    for l in 0..cfg.decoder_layers {
        let p = format!("decoder.layers.{l}");
        sublayer(cfg, m, &format!("{p}.norm1"), &mut y, |h| {
            mha(m, &format!("{p}.self_attn"), h, h, cfg.heads, true)
        });
        sublayer(cfg, m, &format!("{p}.norm2"), &mut y, |h| {
            mha(m, &format!("{p}.cross_attn"), h, &mem, cfg.heads, false)
        });
        sublayer(cfg, m, &format!("{p}.norm3"), &mut y, |h| ffn(m, &p, h));
    }
    if cfg.norm == NormPlacement::Pre {
        y = y.iter().map(|yi| layer_norm(m, "decoder.norm", yi, eps)).collect();
    }
    let out_w = if cfg.tied_output {
        "tgt_emb.weight"
    } else {
        "out_proj.weight"
    };
    let w = t(m, out_w);
    let b = t(m, "out_proj.bias");
    y.iter()
        .map(|yi| {
            w.chunks(d)
                .zip(b)
                .map(|(row, &b)| row.iter().zip(yi).map(|(&w, y)| w as f64 * y).sum::<f64>() + b as f64)
                .collect()
        })
        .collect()
}

/// Greedy decoding with the reference: argmax over ids >= END at each step.
pub fn reference_greedy(cfg: &Config, m: &HashMap<String, Vec<f32>>, input: &[u16]) -> (Vec<u16>, bool) {
    let mut dec = vec![1u16];
    loop {
        let logits = reference_logits(cfg, m, input, &dec);
        let last = logits.last().unwrap();
        let mut best = 2;
        for (i, &v) in last.iter().enumerate().skip(2) {
            if v > last[best] {
                best = i;
            }
        }
        if best == 2 {
            return (dec[1..].to_vec(), false);
        }
        if dec.len() > cfg.max_output_len {
            return (dec[1..].to_vec(), true);
        }
        dec.push(best as u16);
    }
}
