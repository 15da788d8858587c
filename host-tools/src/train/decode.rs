//! Batched greedy decoding with a key/value cache (evaluation mode, no dropout).

use rayon::prelude::*;

use super::batch::{Batch, Example, END, START};
use super::layers::{add_into, layer_norm_infer, linear, relu};
use super::model::{Net, Tape};
use super::params::{Lin, Norm, Sub};

/// Examples decoded together by one worker.
const CHUNK: usize = 64;

/// Greedy decoding of every input (ids without padding); each result stops before END or after
/// `max_output_len` tokens. Inputs are truncated to `max_input_len`.
pub fn greedy(net: Net, inputs: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let max_in = net.l.arch.spec.max_input_len;
    // Decode inputs of similar length together.
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| inputs[i].len());
    let chunks: Vec<&[usize]> = order.chunks(CHUNK).collect();
    let results: Vec<Vec<Vec<u32>>> = chunks
        .par_iter()
        .map_init(Tape::default, |tape, idx| {
            let ex: Vec<Example> = idx
                .iter()
                .map(|&i| Example {
                    src: inputs[i][..inputs[i].len().min(max_in)].to_vec(),
                    tgt: Vec::new(),
                })
                .collect();
            decode_chunk(net, tape, &ex.iter().collect::<Vec<_>>())
        })
        .collect();
    let mut out = vec![Vec::new(); inputs.len()];
    for (idx, res) in chunks.iter().zip(results) {
        for (&i, r) in idx.iter().zip(res) {
            out[i] = r;
        }
    }
    out
}

fn lin(net: Net, l: &Lin, x: &[f32], n: usize, y: &mut Vec<f32>) {
    y.resize(n * l.out, 0.0);
    linear(
        x,
        &net.p[l.w..l.w + l.out * l.inp],
        &net.p[l.b..l.b + l.out],
        n,
        l.inp,
        l.out,
        y,
    );
}

/// Attention of one query row per example over `keys` rows `0..len[b]` of a per-example cache.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    q_stride: usize,
    cache: &[f32],
    rows_per_ex: usize,
    kv_stride: usize,
    v_off: usize,
    lens: &[usize],
    heads: usize,
    dk: usize,
    ctx: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let d = heads * dk;
    let scale = 1.0 / (dk as f32).sqrt();
    for (b, &len) in lens.iter().enumerate() {
        scores.resize(len, 0.0);
        for h in 0..heads {
            let qh = &q[b * q_stride + h * dk..b * q_stride + (h + 1) * dk];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                let k = &cache[(b * rows_per_ex + j) * kv_stride + h * dk..][..dk];
                *s = qh.iter().zip(k).map(|(a, c)| a * c).sum::<f32>() * scale;
                max = max.max(*s);
            }
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let out = &mut ctx[b * d + h * dk..b * d + (h + 1) * dk];
            out.iter_mut().for_each(|o| *o = 0.0);
            for (j, s) in scores.iter().enumerate() {
                let v = &cache[(b * rows_per_ex + j) * kv_stride + v_off + h * dk..][..dk];
                for (o, x) in out.iter_mut().zip(v) {
                    *o += s / sum * x;
                }
            }
        }
    }
}

fn decode_chunk(net: Net, tape: &mut Tape, ex: &[&Example]) -> Vec<Vec<u32>> {
    let l = net.l;
    let spec = &l.arch.spec;
    let (d, heads) = (spec.d_model, spec.heads);
    let dk = d / heads;
    let eps = spec.layer_norm_eps;
    let max_out = spec.max_output_len;
    let bt = Batch::new(ex);
    let n = bt.batch;
    tape.encode(net, &bt);
    let mem = &tape.mem;
    let s_len = bt.src_len;
    let steps = max_out + 1;
    // Per decoder layer: cross-attention k|v of the memory, and the self-attention cache.
    let mut cross_kv: Vec<Vec<f32>> = Vec::new();
    let mut self_kv: Vec<Vec<f32>> = Vec::new();
    for layer in &l.dec {
        for (sub, _) in layer {
            match sub {
                Sub::CrossAttn(a) => {
                    let kv = Lin {
                        w: a.qkv.w + d * d,
                        b: a.qkv.b + d,
                        out: 2 * d,
                        inp: d,
                    };
                    let mut y = Vec::new();
                    lin(net, &kv, mem, n * s_len, &mut y);
                    cross_kv.push(y);
                }
                Sub::SelfAttn { .. } => self_kv.push(vec![0.0; n * steps * 2 * d]),
                Sub::Ffn(..) | Sub::Conv(_) => {}
            }
        }
    }
    let scale = (d as f32).sqrt();
    let mut tokens = vec![START; n];
    let mut done = vec![false; n];
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); n];
    let (mut x, mut a, mut y, mut ctx, mut q, mut h, mut tmp, mut scores, mut logits) = (
        vec![0.0f32; n * d],
        vec![0.0f32; n * d],
        Vec::new(),
        vec![0.0f32; n * d],
        Vec::new(),
        Vec::new(),
        vec![0.0f32; n * d],
        Vec::new(),
        Vec::new(),
    );
    for t in 0..steps {
        for (b, row) in x.chunks_exact_mut(d).enumerate() {
            let e = &net.p[l.tgt_emb + tokens[b] as usize * d..][..d];
            let pe = &l.pe[t * d..(t + 1) * d];
            for k in 0..d {
                row[k] = e[k] * scale + pe[k];
            }
        }
        let (mut si, mut ci) = (0, 0);
        for layer in &l.dec {
            for (sub, ln) in layer {
                let (g, bb) = (&net.p[ln.g..ln.g + d], &net.p[ln.b..ln.b + d]);
                if spec.norm == Norm::Pre {
                    layer_norm_infer(&x, g, bb, d, eps, &mut a);
                } else {
                    a.copy_from_slice(&x);
                }
                match sub {
                    Sub::SelfAttn { attn, .. } => {
                        lin(net, &attn.qkv, &a, n, &mut q);
                        let cache = &mut self_kv[si];
                        si += 1;
                        for b in 0..n {
                            let dst = &mut cache[(b * steps + t) * 2 * d..][..2 * d];
                            dst.copy_from_slice(&q[b * 3 * d + d..b * 3 * d + 3 * d]);
                        }
                        let lens = vec![t + 1; n];
                        attend(
                            &q,
                            3 * d,
                            cache,
                            steps,
                            2 * d,
                            d,
                            &lens,
                            heads,
                            dk,
                            &mut ctx,
                            &mut scores,
                        );
                        lin(net, &attn.out, &ctx, n, &mut y);
                    }
                    Sub::CrossAttn(attn) => {
                        let ql = Lin { out: d, ..attn.qkv };
                        lin(net, &ql, &a, n, &mut q);
                        attend(
                            &q,
                            d,
                            &cross_kv[ci],
                            s_len,
                            2 * d,
                            d,
                            &bt.src_lens,
                            heads,
                            dk,
                            &mut ctx,
                            &mut scores,
                        );
                        ci += 1;
                        lin(net, &attn.out, &ctx, n, &mut y);
                    }
                    Sub::Ffn(l1, l2) => {
                        lin(net, l1, &a, n, &mut h);
                        relu(&mut h);
                        lin(net, l2, &h, n, &mut y);
                    }
                    Sub::Conv(_) => unreachable!("the decoder has no convolution"),
                }
                add_into(&mut x, &y);
                if spec.norm == Norm::Post {
                    tmp.copy_from_slice(&x);
                    layer_norm_infer(&tmp, g, bb, d, eps, &mut x);
                }
            }
        }
        let final_x = match l.dec_norm {
            Some(nm) => {
                layer_norm_infer(&x, &net.p[nm.g..nm.g + d], &net.p[nm.b..nm.b + d], d, eps, &mut tmp);
                &tmp
            }
            None => &x,
        };
        lin(net, &l.out, final_x, n, &mut logits);
        for b in 0..n {
            if done[b] {
                continue;
            }
            let row = &logits[b * l.out.out..(b + 1) * l.out.out];
            // PAD and START are never produced (as in the engine's greedy decoding).
            let mut best = END as usize;
            for (i, &v) in row.iter().enumerate().skip(END as usize) {
                if v > row[best] {
                    best = i;
                }
            }
            let tok = best as u32;
            if tok == END || out[b].len() >= max_out {
                done[b] = true;
            } else {
                out[b].push(tok);
            }
            tokens[b] = tok;
        }
        if done.iter().all(|&x| x) {
            break;
        }
    }
    out
}
