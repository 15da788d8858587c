//! The training forward and backward passes over one padded batch ("tape": every activation the
//! backward pass needs, in buffers reused from step to step).

use super::attention::{self, Grads, Shape, Src};
use super::batch::Batch;
use super::layers::{
    add_into, apply_mask, layer_norm, layer_norm_backward, linear, linear_backward, relu, relu_backward, NormCache,
    NormGrad,
};
use super::loss::smoothed_cross_entropy;
use super::params::{Conv, Layout, Lin, Ln, Norm, Sub};
use super::profile::{self, Phase};
use super::rng::{self, Rng};

/// Parameters seen by a pass: a layout and a flat buffer (possibly fake-quantized for QAT).
#[derive(Clone, Copy)]
pub struct Net<'a> {
    /// Where each tensor lives.
    pub l: &'a Layout,
    /// The values.
    pub p: &'a [f32],
}

impl<'a> Net<'a> {
    fn s(&self, off: usize, len: usize) -> &'a [f32] {
        &self.p[off..off + len]
    }
}

/// Dropout for a training pass: the rate, and the counters the masks are derived from.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    /// Probability of dropping an element.
    pub p: f32,
    /// Run seed.
    pub seed: u64,
    /// Optimiser step.
    pub step: u64,
    /// Index of this shard's first example within the batch.
    pub first_example: usize,
}

/// Activations saved by one residual sublayer.
#[derive(Default)]
struct SubCache {
    norm: NormCache,
    /// The sublayer's input (after LayerNorm in pre-LN, the stream itself in post-LN).
    inp: Vec<f32>,
    /// Dropout multipliers of the sublayer output.
    out_mask: Vec<f32>,
    /// Self-attention: `[n, 3d]` q|k|v. Cross-attention: `[n, d]` q.
    qkv: Vec<f32>,
    /// Cross-attention: `[n_mem, 2d]` k|v.
    kv: Vec<f32>,
    probs: Vec<f32>,
    pmask: Vec<f32>,
    ctx: Vec<f32>,
    /// FFN hidden after ReLU, and after dropout.
    h: Vec<f32>,
    hmask: Vec<f32>,
    hd: Vec<f32>,
}

/// Scratch buffers shared by all sublayers.
#[derive(Default)]
struct Scratch {
    y: Vec<f32>,
    dy: Vec<f32>,
    dinp: Vec<f32>,
    dctx: Vec<f32>,
    dqkv: Vec<f32>,
    dkv: Vec<f32>,
    dh: Vec<f32>,
}

/// A sequence batch as the stream sees it.
#[derive(Clone, Copy)]
struct Seq<'a> {
    batch: usize,
    len: usize,
    lens: &'a [usize],
}

/// Every activation of a forward pass, kept for the backward pass. Reuse one per worker thread.
#[derive(Default)]
pub struct Tape {
    rngs: Vec<Rng>,
    p: f32,
    enc: Vec<Vec<SubCache>>,
    dec: Vec<Vec<SubCache>>,
    enc_x: Vec<f32>,
    enc_norm: NormCache,
    /// Encoder output (after the final norm in pre-LN).
    pub mem: Vec<f32>,
    dec_x: Vec<f32>,
    dec_norm: NormCache,
    /// Decoder output (after the final norm in pre-LN), `[batch * tgt_len, d]`.
    pub dec_out: Vec<f32>,
    sel: Vec<usize>,
    hsel: Vec<f32>,
    logits: Vec<f32>,
    targets: Vec<u32>,
    g_enc: Vec<f32>,
    g_dec: Vec<f32>,
    dmem: Vec<f32>,
    scratch: Scratch,
}

fn resize(v: &mut Vec<f32>, n: usize) {
    v.resize(n, 0.0);
}

/// Two disjoint mutable ranges of `g` (`a` before `b`).
fn pair(g: &mut [f32], a: (usize, usize), b: (usize, usize)) -> (&mut [f32], &mut [f32]) {
    assert!(a.0 + a.1 <= b.0);
    let (lo, hi) = g.split_at_mut(b.0);
    (&mut lo[a.0..a.0 + a.1], &mut hi[..b.1])
}

fn lin_fwd(net: Net, l: &Lin, x: &[f32], n: usize, y: &mut Vec<f32>) {
    resize(y, n * l.out);
    linear(x, net.s(l.w, l.out * l.inp), net.s(l.b, l.out), n, l.inp, l.out, y);
}

fn lin_bwd(net: Net, g: &mut [f32], l: &Lin, x: &[f32], dy: &[f32], n: usize, dx: Option<(&mut [f32], f32)>) {
    let (dw, db) = pair(g, (l.w, l.out * l.inp), (l.b, l.out));
    linear_backward(x, net.s(l.w, l.out * l.inp), dy, n, l.inp, l.out, dw, db, dx);
}

/// Timed [`layer_norm`].
fn norm_fwd(x: &[f32], g: &[f32], b: &[f32], d: usize, eps: f32, y: &mut [f32], cache: &mut NormCache) {
    profile::time(Phase::LayerNorm, || layer_norm(x, g, b, d, eps, y, cache));
}

/// Per-example dropout masks: example `b` owns `per` consecutive entries.
fn masks(mask: &mut Vec<f32>, rngs: &mut [Rng], per: usize, p: f32) {
    resize(mask, rngs.len() * per);
    profile::time(Phase::Dropout, || {
        for (r, m) in rngs.iter_mut().zip(mask.chunks_exact_mut(per.max(1))) {
            r.dropout_mask(m, p);
        }
    });
}

/// Forward of one sublayer body (no residual, no norm): `inp [n, d] -> s.y [n, d]`.
#[allow(clippy::too_many_arguments)]
fn body_forward(
    net: Net,
    sub: &Sub,
    seq: Seq,
    mem: Option<(&[f32], Seq)>,
    c: &mut SubCache,
    y: &mut Vec<f32>,
    rngs: &mut [Rng],
    p: f32,
) {
    let d = net.l.d();
    let heads = net.l.arch.spec.heads;
    let n = seq.batch * seq.len;
    match sub {
        Sub::SelfAttn { attn, causal } => {
            lin_fwd(net, &attn.qkv, &c.inp, n, &mut c.qkv);
            let sh = Shape {
                batch: seq.batch,
                tq: seq.len,
                tk: seq.len,
                heads,
                dk: d / heads,
            };
            resize(&mut c.probs, sh.probs_len());
            if p > 0.0 {
                masks(&mut c.pmask, rngs, sh.probs_per_example(), p);
            }
            resize(&mut c.ctx, n * d);
            let src = |off| Src {
                data: &c.qkv,
                stride: 3 * d,
                off,
            };
            profile::time(Phase::Attention, || {
                attention::forward(
                    sh,
                    src(0),
                    src(d),
                    src(2 * d),
                    seq.lens,
                    *causal,
                    &mut c.probs,
                    (p > 0.0).then_some(&c.pmask[..]),
                    &mut c.ctx,
                )
            });
            lin_fwd(net, &attn.out, &c.ctx, n, y);
        }
        Sub::CrossAttn(attn) => {
            let (mem, mseq) = mem.expect("cross-attention needs the encoder output");
            let q = Lin { out: d, ..attn.qkv };
            let kv = Lin {
                w: attn.qkv.w + d * d,
                b: attn.qkv.b + d,
                out: 2 * d,
                inp: d,
            };
            lin_fwd(net, &q, &c.inp, n, &mut c.qkv);
            lin_fwd(net, &kv, mem, mseq.batch * mseq.len, &mut c.kv);
            let sh = Shape {
                batch: seq.batch,
                tq: seq.len,
                tk: mseq.len,
                heads,
                dk: d / heads,
            };
            resize(&mut c.probs, sh.probs_len());
            if p > 0.0 {
                masks(&mut c.pmask, rngs, sh.probs_per_example(), p);
            }
            resize(&mut c.ctx, n * d);
            let qs = Src {
                data: &c.qkv,
                stride: d,
                off: 0,
            };
            let ks = Src {
                data: &c.kv,
                stride: 2 * d,
                off: 0,
            };
            let vs = Src {
                data: &c.kv,
                stride: 2 * d,
                off: d,
            };
            profile::time(Phase::Attention, || {
                attention::forward(
                    sh,
                    qs,
                    ks,
                    vs,
                    mseq.lens,
                    false,
                    &mut c.probs,
                    (p > 0.0).then_some(&c.pmask[..]),
                    &mut c.ctx,
                )
            });
            lin_fwd(net, &attn.out, &c.ctx, n, y);
        }
        Sub::Conv(cv) => {
            resize(y, n * d);
            conv_forward(net, cv, &c.inp, seq, d, y);
        }
        Sub::Ffn(l1, l2) => {
            lin_fwd(net, l1, &c.inp, n, &mut c.h);
            relu(&mut c.h);
            resize(&mut c.hd, c.h.len());
            c.hd.copy_from_slice(&c.h);
            if p > 0.0 {
                masks(&mut c.hmask, rngs, seq.len * l1.out, p);
                apply_mask(&mut c.hd, &c.hmask);
            }
            lin_fwd(net, l2, &c.hd, n, y);
        }
    }
}

/// Depthwise convolution of each example's valid rows (the engine's own kernel, so trainer and
/// device compute the same sums in the same order); padded rows get zeros.
fn conv_forward(net: Net, cv: &Conv, inp: &[f32], seq: Seq, d: usize, y: &mut [f32]) {
    let (w, b) = (net.s(cv.w, d * cv.k), net.s(cv.b, d));
    for (ex, &len) in seq.lens.iter().enumerate().take(seq.batch) {
        let rows = &inp[ex * seq.len * d..(ex * seq.len + len) * d];
        let out = &mut y[ex * seq.len * d..(ex + 1) * seq.len * d];
        for (t, o) in out.chunks_exact_mut(d).enumerate() {
            if t < len {
                picoformer::kernels::depthwise_conv_row(rows, len, t, w, b, cv.k, o);
            } else {
                o.fill(0.0);
            }
        }
    }
}

/// Backward of [`conv_forward`]: weight and bias gradients into `g`, `dinp = d/d(inp) + beta * dinp`.
#[allow(clippy::too_many_arguments)]
fn conv_backward(
    net: Net,
    g: &mut [f32],
    cv: &Conv,
    inp: &[f32],
    dy: &[f32],
    seq: Seq,
    d: usize,
    (dinp, beta): (&mut [f32], f32),
) {
    let k = cv.k;
    let half = k / 2;
    let w = net.s(cv.w, d * k);
    if beta == 0.0 {
        dinp.fill(0.0);
    } else if beta != 1.0 {
        dinp.iter_mut().for_each(|v| *v *= beta);
    }
    let (dw, db) = pair(g, (cv.w, d * k), (cv.b, d));
    for (ex, &len) in seq.lens.iter().enumerate().take(seq.batch) {
        let base = ex * seq.len;
        for t in 0..len {
            let dyr = &dy[(base + t) * d..(base + t + 1) * d];
            db.iter_mut().zip(dyr).for_each(|(a, v)| *a += v);
            for j in 0..k {
                let Some(src) = (t + j).checked_sub(half).filter(|&u| u < len) else {
                    continue;
                };
                let row = (base + src) * d;
                for c in 0..d {
                    dw[c * k + j] += dyr[c] * inp[row + c];
                    dinp[row + c] += w[c * k + j] * dyr[c];
                }
            }
        }
    }
}

/// Backward of one sublayer body: `dy [n, d]` -> `dinp = dy_inp + beta * dinp`; cross-attention adds into `dmem`.
#[allow(clippy::too_many_arguments)]
fn body_backward(
    net: Net,
    g: &mut [f32],
    sub: &Sub,
    seq: Seq,
    mem: Option<(&[f32], Seq)>,
    c: &SubCache,
    s: &mut Scratch,
    dmem: &mut [f32],
    p: f32,
    dinp: (&mut [f32], f32),
) {
    let d = net.l.d();
    let heads = net.l.arch.spec.heads;
    let n = seq.batch * seq.len;
    let drop = (p > 0.0).then_some(&c.pmask[..]);
    match sub {
        Sub::SelfAttn { attn, causal } => {
            resize(&mut s.dctx, n * d);
            lin_bwd(net, g, &attn.out, &c.ctx, &s.dy, n, Some((&mut s.dctx, 0.0)));
            let sh = Shape {
                batch: seq.batch,
                tq: seq.len,
                tk: seq.len,
                heads,
                dk: d / heads,
            };
            resize(&mut s.dqkv, n * 3 * d);
            let src = |off| Src {
                data: &c.qkv,
                stride: 3 * d,
                off,
            };
            let grads = Grads {
                q: &mut s.dqkv,
                q_stride: 3 * d,
                q_off: 0,
                kv: None,
                kv_stride: 3 * d,
                k_off: d,
                v_off: 2 * d,
            };
            profile::time(Phase::Attention, || {
                attention::backward(
                    sh,
                    src(0),
                    src(d),
                    src(2 * d),
                    seq.lens,
                    *causal,
                    &c.probs,
                    drop,
                    &s.dctx,
                    grads,
                )
            });
            lin_bwd(net, g, &attn.qkv, &c.inp, &s.dqkv, n, Some(dinp));
        }
        Sub::CrossAttn(attn) => {
            let (mem, mseq) = mem.expect("cross-attention needs the encoder output");
            let m = mseq.batch * mseq.len;
            resize(&mut s.dctx, n * d);
            lin_bwd(net, g, &attn.out, &c.ctx, &s.dy, n, Some((&mut s.dctx, 0.0)));
            let sh = Shape {
                batch: seq.batch,
                tq: seq.len,
                tk: mseq.len,
                heads,
                dk: d / heads,
            };
            resize(&mut s.dqkv, n * d);
            resize(&mut s.dkv, m * 2 * d);
            let qs = Src {
                data: &c.qkv,
                stride: d,
                off: 0,
            };
            let ks = Src {
                data: &c.kv,
                stride: 2 * d,
                off: 0,
            };
            let vs = Src {
                data: &c.kv,
                stride: 2 * d,
                off: d,
            };
            let grads = Grads {
                q: &mut s.dqkv,
                q_stride: d,
                q_off: 0,
                kv: Some(&mut s.dkv),
                kv_stride: 2 * d,
                k_off: 0,
                v_off: d,
            };
            profile::time(Phase::Attention, || {
                attention::backward(sh, qs, ks, vs, mseq.lens, false, &c.probs, drop, &s.dctx, grads)
            });
            let q = Lin { out: d, ..attn.qkv };
            let kv = Lin {
                w: attn.qkv.w + d * d,
                b: attn.qkv.b + d,
                out: 2 * d,
                inp: d,
            };
            lin_bwd(net, g, &kv, mem, &s.dkv, m, Some((dmem, 1.0)));
            lin_bwd(net, g, &q, &c.inp, &s.dqkv, n, Some(dinp));
        }
        Sub::Conv(cv) => conv_backward(net, g, cv, &c.inp, &s.dy, seq, d, dinp),
        Sub::Ffn(l1, l2) => {
            resize(&mut s.dh, n * l1.out);
            lin_bwd(net, g, l2, &c.hd, &s.dy, n, Some((&mut s.dh, 0.0)));
            if p > 0.0 {
                apply_mask(&mut s.dh, &c.hmask);
            }
            relu_backward(&c.h, &mut s.dh);
            lin_bwd(net, g, l1, &c.inp, &s.dh, n, Some(dinp));
        }
    }
}

/// Forward of a residual sublayer on the stream `x` (in place).
#[allow(clippy::too_many_arguments)]
fn sub_forward(
    net: Net,
    sub: &Sub,
    ln: &Ln,
    seq: Seq,
    mem: Option<(&[f32], Seq)>,
    x: &mut [f32],
    c: &mut SubCache,
    s: &mut Scratch,
    rngs: &mut [Rng],
    p: f32,
) {
    let d = net.l.d();
    let eps = net.l.arch.spec.layer_norm_eps;
    let (g, b) = (net.s(ln.g, d), net.s(ln.b, d));
    resize(&mut c.inp, x.len());
    let pre = net.l.arch.spec.norm == Norm::Pre;
    if pre {
        norm_fwd(x, g, b, d, eps, &mut c.inp, &mut c.norm);
    } else {
        c.inp.copy_from_slice(x);
    }
    body_forward(net, sub, seq, mem, c, &mut s.y, rngs, p);
    if p > 0.0 {
        masks(&mut c.out_mask, rngs, seq.len * d, p);
        apply_mask(&mut s.y, &c.out_mask);
    }
    add_into(x, &s.y);
    if !pre {
        s.y.copy_from_slice(x);
        norm_fwd(&s.y, g, b, d, eps, x, &mut c.norm);
    }
}

/// Backward of a residual sublayer: `gx` holds d(loss)/d(output stream) and becomes d/d(input stream).
#[allow(clippy::too_many_arguments)]
fn sub_backward(
    net: Net,
    g: &mut [f32],
    sub: &Sub,
    ln: &Ln,
    seq: Seq,
    mem: Option<(&[f32], Seq)>,
    gx: &mut [f32],
    c: &SubCache,
    s: &mut Scratch,
    dmem: &mut [f32],
    p: f32,
) {
    let d = net.l.d();
    let (lg, lb) = pair(g, (ln.g, d), (ln.b, d));
    let gamma = net.s(ln.g, d);
    let pre = net.l.arch.spec.norm == Norm::Pre;
    if !pre {
        profile::time(Phase::LayerNorm, || {
            layer_norm_backward(NormGrad::InPlace(gx), &c.norm, gamma, d, lg, lb)
        });
    }
    resize(&mut s.dy, gx.len());
    s.dy.copy_from_slice(gx);
    if p > 0.0 {
        apply_mask(&mut s.dy, &c.out_mask);
    }
    if pre {
        let mut dinp = std::mem::take(&mut s.dinp);
        resize(&mut dinp, gx.len());
        body_backward(net, g, sub, seq, mem, c, s, dmem, p, (&mut dinp, 0.0));
        let (lg, lb) = pair(g, (ln.g, d), (ln.b, d));
        profile::time(Phase::LayerNorm, || {
            layer_norm_backward(NormGrad::AddTo { dy: &dinp, dx: gx }, &c.norm, gamma, d, lg, lb)
        });
        s.dinp = dinp;
    } else {
        body_backward(net, g, sub, seq, mem, c, s, dmem, p, (gx, 1.0));
    }
}

fn embed(net: Net, table: usize, ids: &[u32], len: usize, x: &mut Vec<f32>) {
    let d = net.l.d();
    let scale = (d as f32).sqrt();
    resize(x, ids.len() * d);
    for (i, (&id, row)) in ids.iter().zip(x.chunks_exact_mut(d)).enumerate() {
        let e = net.s(table + id as usize * d, d);
        let pos = &net.l.pe[(i % len) * d..(i % len + 1) * d];
        for k in 0..d {
            row[k] = e[k] * scale + pos[k];
        }
    }
}

fn embed_backward(d: usize, table: usize, ids: &[u32], gx: &[f32], g: &mut [f32]) {
    let scale = (d as f32).sqrt();
    for (&id, row) in ids.iter().zip(gx.chunks_exact(d)) {
        if id == 0 {
            continue; // PAD row: padding_idx, never trained
        }
        let dst = &mut g[table + id as usize * d..table + (id as usize + 1) * d];
        for k in 0..d {
            dst[k] += row[k] * scale;
        }
    }
}

fn sized(v: &mut Vec<Vec<SubCache>>, layers: &[Vec<(Sub, Ln)>]) {
    v.resize_with(layers.len(), Vec::new);
    for (c, l) in v.iter_mut().zip(layers) {
        c.resize_with(l.len(), SubCache::default);
    }
}

impl Tape {
    /// Runs the encoder and decoder on `bt` (teacher forcing); with `drop`, in training mode.
    /// Leaves the decoder output in [`Tape::dec_out`].
    pub fn forward(&mut self, net: Net, bt: &Batch, drop: Option<Dropout>) {
        let l = net.l;
        let d = l.d();
        assert!(
            l.pe.len() >= d * bt.src_len.max(bt.tgt_len),
            "sequence longer than the position table"
        );
        sized(&mut self.enc, &l.enc);
        sized(&mut self.dec, &l.dec);
        self.p = drop.map_or(0.0, |x| x.p);
        self.rngs.clear();
        if let Some(dr) = drop {
            self.rngs
                .extend((0..bt.batch).map(|b| Rng::new(dr.seed, rng::DROPOUT, dr.step, (dr.first_example + b) as u64)));
        }
        self.run_encoder(net, bt);
        let eps = l.arch.spec.layer_norm_eps;
        let Tape {
            rngs,
            p,
            dec,
            mem,
            dec_x,
            dec_norm,
            dec_out,
            scratch,
            ..
        } = self;
        let p = *p;
        let src = Seq {
            batch: bt.batch,
            len: bt.src_len,
            lens: &bt.src_lens,
        };
        let tgt = Seq {
            batch: bt.batch,
            len: bt.tgt_len,
            lens: &bt.tgt_lens,
        };

        embed(net, l.tgt_emb, &bt.dec_in, bt.tgt_len, dec_x);
        for (layer, caches) in l.dec.iter().zip(dec.iter_mut()) {
            for ((sub, ln), c) in layer.iter().zip(caches.iter_mut()) {
                sub_forward(net, sub, ln, tgt, Some((mem, src)), dec_x, c, scratch, rngs, p);
            }
        }
        resize(dec_out, dec_x.len());
        match l.dec_norm {
            Some(n) => norm_fwd(dec_x, net.s(n.g, d), net.s(n.b, d), d, eps, dec_out, dec_norm),
            None => dec_out.copy_from_slice(dec_x),
        }
    }

    /// Runs the encoder only, in evaluation mode, leaving its output in [`Tape::mem`].
    pub fn encode(&mut self, net: Net, bt: &Batch) {
        self.p = 0.0;
        self.rngs.clear();
        self.run_encoder(net, bt);
    }

    fn run_encoder(&mut self, net: Net, bt: &Batch) {
        let l = net.l;
        let d = l.d();
        let eps = l.arch.spec.layer_norm_eps;
        sized(&mut self.enc, &l.enc);
        let Tape {
            rngs,
            p,
            enc,
            enc_x,
            enc_norm,
            mem,
            scratch,
            ..
        } = self;
        let p = *p;
        let src = Seq {
            batch: bt.batch,
            len: bt.src_len,
            lens: &bt.src_lens,
        };
        embed(net, l.src_emb, &bt.src, bt.src_len, enc_x);
        for (layer, caches) in l.enc.iter().zip(enc.iter_mut()) {
            for ((sub, ln), c) in layer.iter().zip(caches.iter_mut()) {
                sub_forward(net, sub, ln, src, None, enc_x, c, scratch, rngs, p);
            }
        }
        resize(mem, enc_x.len());
        match l.enc_norm {
            Some(n) => norm_fwd(enc_x, net.s(n.g, d), net.s(n.b, d), d, eps, mem, enc_norm),
            None => mem.copy_from_slice(enc_x),
        }
    }

    /// Signs of every ReLU input of the last forward pass (tests: finite differences must not cross a kink).
    #[cfg(test)]
    pub fn relu_pattern(&self) -> Vec<bool> {
        self.enc
            .iter()
            .chain(&self.dec)
            .flatten()
            .flat_map(|c| c.h.iter().map(|&v| v > 0.0))
            .collect()
    }

    /// Logits `[rows, out_vocab]` of every decoder position of the last forward pass.
    pub fn all_logits(&self, net: Net) -> Vec<f32> {
        let o = &net.l.out;
        let n = self.dec_out.len() / o.inp;
        let mut y = Vec::new();
        lin_fwd(net, o, &self.dec_out, n, &mut y);
        y
    }

    /// Smoothed cross-entropy over the non-PAD targets of the last forward pass, and its backward pass:
    /// adds `scale * d(loss sum)/d(params)` into `g`. Returns the loss summed over those targets.
    pub fn backward(&mut self, net: Net, bt: &Batch, label_smoothing: f32, scale: f32, g: &mut [f32]) -> f64 {
        let l = net.l;
        let d = l.d();
        let Tape {
            p,
            enc,
            dec,
            enc_x: _,
            enc_norm,
            mem,
            dec_norm,
            dec_out,
            sel,
            hsel,
            logits,
            targets,
            g_enc,
            g_dec,
            dmem,
            scratch,
            ..
        } = self;
        let p = *p;
        let src = Seq {
            batch: bt.batch,
            len: bt.src_len,
            lens: &bt.src_lens,
        };
        let tgt = Seq {
            batch: bt.batch,
            len: bt.tgt_len,
            lens: &bt.tgt_lens,
        };

        // Output projection and loss on the non-PAD rows only.
        sel.clear();
        targets.clear();
        for (i, &t) in bt.dec_out.iter().enumerate() {
            if t != 0 {
                sel.push(i);
                targets.push(t);
            }
        }
        let m = sel.len();
        resize(hsel, m * d);
        for (k, &i) in sel.iter().enumerate() {
            hsel[k * d..(k + 1) * d].copy_from_slice(&dec_out[i * d..(i + 1) * d]);
        }
        lin_fwd(net, &l.out, hsel, m, logits);
        let loss = profile::time(Phase::Loss, || {
            smoothed_cross_entropy(logits, l.out.out, targets, label_smoothing, scale)
        });
        let mut dsel = std::mem::take(&mut scratch.dy);
        resize(&mut dsel, m * d);
        lin_bwd(net, g, &l.out, hsel, logits, m, Some((&mut dsel, 0.0)));
        g_dec.clear();
        g_dec.resize(dec_out.len(), 0.0);
        for (k, &i) in sel.iter().enumerate() {
            g_dec[i * d..(i + 1) * d].copy_from_slice(&dsel[k * d..(k + 1) * d]);
        }
        scratch.dy = dsel;

        // Decoder.
        if let Some(n) = l.dec_norm {
            let (lg, lb) = pair(g, (n.g, d), (n.b, d));
            profile::time(Phase::LayerNorm, || {
                layer_norm_backward(NormGrad::InPlace(g_dec), dec_norm, net.s(n.g, d), d, lg, lb)
            });
        }
        dmem.clear();
        dmem.resize(mem.len(), 0.0);
        for (layer, caches) in l.dec.iter().zip(dec.iter()).rev() {
            for ((sub, ln), c) in layer.iter().zip(caches.iter()).rev() {
                sub_backward(net, g, sub, ln, tgt, Some((mem, src)), g_dec, c, scratch, dmem, p);
            }
        }
        embed_backward(d, l.tgt_emb, &bt.dec_in, g_dec, g);

        // Encoder.
        g_enc.clear();
        g_enc.extend_from_slice(dmem);
        if let Some(n) = l.enc_norm {
            let (lg, lb) = pair(g, (n.g, d), (n.b, d));
            profile::time(Phase::LayerNorm, || {
                layer_norm_backward(NormGrad::InPlace(g_enc), enc_norm, net.s(n.g, d), d, lg, lb)
            });
        }
        let mut unused = Vec::new();
        for (layer, caches) in l.enc.iter().zip(enc.iter()).rev() {
            for ((sub, ln), c) in layer.iter().zip(caches.iter()).rev() {
                sub_backward(net, g, sub, ln, src, None, g_enc, c, scratch, &mut unused, p);
            }
        }
        embed_backward(d, l.src_emb, &bt.src, g_enc, g);
        loss
    }
}
