//! Scaled dot-product attention over a padded batch, forward and backward.
//!
//! Rows of `q` are `batch * tq` query positions (example-major), rows of `k`/`v` are `batch * tk` key
//! positions; head `h` owns columns `h*dk .. (h+1)*dk` of each. Keys at positions `>= key_lens[b]` are
//! padding and masked; with `causal`, query `i` sees keys `0..=i` only.

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Examples.
    pub batch: usize,
    /// Query positions per example.
    pub tq: usize,
    /// Key positions per example.
    pub tk: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub dk: usize,
}

impl Shape {
    /// Entries of the probability tensor `[batch, heads, tq, tk]`.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.tq * self.tk
    }

    /// Entries of the probabilities of one example.
    pub fn probs_per_example(&self) -> usize {
        self.heads * self.tq * self.tk
    }
}

/// A read-only strided matrix: row `r` starts at `r * stride + off`.
#[derive(Clone, Copy)]
pub struct Src<'a> {
    /// Backing buffer.
    pub data: &'a [f32],
    /// Row stride.
    pub stride: usize,
    /// Column offset.
    pub off: usize,
}

impl Src<'_> {
    #[inline]
    fn head(&self, row: usize, h: usize, dk: usize) -> &[f32] {
        let s = row * self.stride + self.off + h * dk;
        &self.data[s..s + dk]
    }
}

/// Where the query, key and value gradients go. Keys and values go to `kv` when given, else into `q`'s buffer.
pub struct Grads<'a> {
    /// Query-gradient buffer.
    pub q: &'a mut [f32],
    /// Its row stride.
    pub q_stride: usize,
    /// Column offset of the query gradient in `q`.
    pub q_off: usize,
    /// Separate key/value gradient buffer (cross-attention), or `None` to use `q`'s buffer.
    pub kv: Option<&'a mut [f32]>,
    /// Row stride of the key/value gradient buffer.
    pub kv_stride: usize,
    /// Column offset of the key gradient.
    pub k_off: usize,
    /// Column offset of the value gradient.
    pub v_off: usize,
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

fn visible(causal: bool, i: usize, klen: usize) -> usize {
    if causal {
        (i + 1).min(klen)
    } else {
        klen
    }
}

/// Forward pass: writes the softmax probabilities (before dropout) to `probs` and the concatenated
/// head outputs to `ctx` (`[batch*tq, heads*dk]`). `drop` holds the dropout multipliers of `probs`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    sh: Shape,
    q: Src,
    k: Src,
    v: Src,
    key_lens: &[usize],
    causal: bool,
    probs: &mut [f32],
    drop: Option<&[f32]>,
    ctx: &mut [f32],
) {
    let d = sh.heads * sh.dk;
    let scale = 1.0 / (sh.dk as f32).sqrt();
    for (b, &klen) in key_lens.iter().enumerate().take(sh.batch) {
        for h in 0..sh.heads {
            for i in 0..sh.tq {
                let qrow = b * sh.tq + i;
                let qi = q.head(qrow, h, sh.dk);
                let p0 = ((b * sh.heads + h) * sh.tq + i) * sh.tk;
                let p = &mut probs[p0..p0 + sh.tk];
                let lim = visible(causal, i, klen);
                let mut max = f32::NEG_INFINITY;
                for (j, pj) in p[..lim].iter_mut().enumerate() {
                    *pj = dot(qi, k.head(b * sh.tk + j, h, sh.dk)) * scale;
                    max = max.max(*pj);
                }
                let mut sum = 0.0;
                for pj in &mut p[..lim] {
                    *pj = (*pj - max).exp();
                    sum += *pj;
                }
                let inv = 1.0 / sum;
                p[..lim].iter_mut().for_each(|pj| *pj *= inv);
                p[lim..].iter_mut().for_each(|pj| *pj = 0.0);
                let out = &mut ctx[qrow * d + h * sh.dk..qrow * d + (h + 1) * sh.dk];
                out.iter_mut().for_each(|o| *o = 0.0);
                for j in 0..lim {
                    let w = match drop {
                        Some(m) => p[j] * m[p0 + j],
                        None => p[j],
                    };
                    axpy(out, w, v.head(b * sh.tk + j, h, sh.dk));
                }
            }
        }
    }
}

/// Backward pass of [`forward`] given `dctx`; writes (not accumulates) every query, key and value gradient.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    sh: Shape,
    q: Src,
    k: Src,
    v: Src,
    key_lens: &[usize],
    causal: bool,
    probs: &[f32],
    drop: Option<&[f32]>,
    dctx: &[f32],
    grads: Grads,
) {
    let d = sh.heads * sh.dk;
    let dk = sh.dk;
    let scale = 1.0 / (dk as f32).sqrt();
    let mut dq_t = vec![0.0f32; sh.tq * dk];
    let mut dk_t = vec![0.0f32; sh.tk * dk];
    let mut dv_t = vec![0.0f32; sh.tk * dk];
    let mut ds = vec![0.0f32; sh.tk];
    let Grads {
        q: gq,
        q_stride,
        q_off,
        mut kv,
        kv_stride,
        k_off,
        v_off,
    } = grads;
    for (b, &klen) in key_lens.iter().enumerate().take(sh.batch) {
        for h in 0..sh.heads {
            dq_t.iter_mut().for_each(|x| *x = 0.0);
            dk_t.iter_mut().for_each(|x| *x = 0.0);
            dv_t.iter_mut().for_each(|x| *x = 0.0);
            for i in 0..sh.tq {
                let qrow = b * sh.tq + i;
                let p0 = ((b * sh.heads + h) * sh.tq + i) * sh.tk;
                let p = &probs[p0..p0 + sh.tk];
                let go = &dctx[qrow * d + h * dk..qrow * d + (h + 1) * dk];
                let lim = visible(causal, i, klen);
                let mut dot_pdp = 0.0;
                for j in 0..lim {
                    let m = drop.map_or(1.0, |m| m[p0 + j]);
                    axpy(&mut dv_t[j * dk..(j + 1) * dk], p[j] * m, go);
                    let dp = dot(go, v.head(b * sh.tk + j, h, dk)) * m;
                    ds[j] = dp;
                    dot_pdp += dp * p[j];
                }
                let qi = q.head(qrow, h, dk);
                let dqi = &mut dq_t[i * dk..(i + 1) * dk];
                for j in 0..lim {
                    let s = p[j] * (ds[j] - dot_pdp) * scale;
                    axpy(dqi, s, k.head(b * sh.tk + j, h, dk));
                    axpy(&mut dk_t[j * dk..(j + 1) * dk], s, qi);
                }
            }
            for i in 0..sh.tq {
                let s = (b * sh.tq + i) * q_stride + q_off + h * dk;
                gq[s..s + dk].copy_from_slice(&dq_t[i * dk..(i + 1) * dk]);
            }
            let (buf, stride): (&mut [f32], usize) = match kv.as_deref_mut() {
                Some(buf) => (buf, kv_stride),
                None => (&mut *gq, q_stride),
            };
            for j in 0..sh.tk {
                let r = (b * sh.tk + j) * stride + h * dk;
                buf[r + k_off..r + k_off + dk].copy_from_slice(&dk_t[j * dk..(j + 1) * dk]);
                buf[r + v_off..r + v_off + dk].copy_from_slice(&dv_t[j * dk..(j + 1) * dk]);
            }
        }
    }
}
