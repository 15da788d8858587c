//! Dense building blocks with their backward passes: matrix products, linear layers, LayerNorm,
//! ReLU and dropout. Activations are row-major `[rows, width]` slices; weights use PyTorch's
//! `[out, in]` layout.

/// A strided view for [`gemm`]: element `(i, j)` is at `i * rs + j * cs`.
#[derive(Clone, Copy)]
pub struct View {
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// Row-major `[_, cols]`.
pub const fn rows(cols: usize) -> View {
    View { rs: cols, cs: 1 }
}

/// The transpose of a row-major `[_, cols]` matrix.
pub const fn transposed(cols: usize) -> View {
    View { rs: 1, cs: cols }
}

fn span(r: usize, c: usize, v: View) -> usize {
    if r == 0 || c == 0 {
        0
    } else {
        (r - 1) * v.rs + (c - 1) * v.cs + 1
    }
}

/// `C[m, n] = A[m, k] B[k, n] + beta C` (row-major C with row stride `ldc`), single-threaded sgemm
/// (the `gemm` crate: about 25% faster than `matrixmultiply` on these shapes, see `docs/training.md`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    assert!(a.len() >= span(m, k, av) && b.len() >= span(k, n, bv) && c.len() >= span(m, n, rows(ldc)));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.chunks_mut(ldc)
            .take(m)
            .for_each(|r| r[..n].iter_mut().for_each(|v| *v *= beta));
        return;
    }
    // SAFETY: the assertion above keeps every access of the strided views inside the slices,
    // and `c` cannot alias `a` or `b` (it is borrowed mutably).
    let run = || unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            beta != 0.0,
            a.as_ptr(),
            av.cs as isize,
            av.rs as isize,
            b.as_ptr(),
            bv.cs as isize,
            bv.rs as isize,
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
    super::profile::time(super::profile::Phase::Gemm, run);
}

/// `y[n, out] = x[n, in] w[out, in]^T + b`.
pub fn linear(x: &[f32], w: &[f32], b: &[f32], n: usize, inp: usize, out: usize, y: &mut [f32]) {
    let y = &mut y[..n * out];
    for row in y.chunks_exact_mut(out) {
        row.copy_from_slice(&b[..out]);
    }
    gemm(n, inp, out, x, rows(inp), w, transposed(inp), 1.0, y, out);
}

/// Backward of [`linear`]: `dw += dy^T x`, `db += sum_rows dy`, and, when given,
/// `dx = dy w + dx_beta * dx`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
    inp: usize,
    out: usize,
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<(&mut [f32], f32)>,
) {
    gemm(out, n, inp, dy, transposed(out), x, rows(inp), 1.0, dw, inp);
    for row in dy[..n * out].chunks_exact(out) {
        for (g, d) in db.iter_mut().zip(row) {
            *g += d;
        }
    }
    if let Some((dx, beta)) = dx {
        gemm(n, out, inp, dy, rows(out), w, rows(inp), beta, dx, inp);
    }
}

/// Saved statistics of a LayerNorm forward pass.
#[derive(Default)]
pub struct NormCache {
    /// Normalised input `(x - mean) * rstd`, `[n, d]`.
    pub xhat: Vec<f32>,
    /// `1 / sqrt(var + eps)` per row.
    pub rstd: Vec<f32>,
}

/// LayerNorm over rows of width `d` with biased variance; fills `cache` for the backward pass.
pub fn layer_norm(x: &[f32], g: &[f32], b: &[f32], d: usize, eps: f32, y: &mut [f32], cache: &mut NormCache) {
    let n = x.len() / d;
    cache.xhat.resize(n * d, 0.0);
    cache.rstd.resize(n, 0.0);
    for (r, ((xr, yr), hr)) in x
        .chunks_exact(d)
        .zip(y.chunks_exact_mut(d))
        .zip(cache.xhat.chunks_exact_mut(d))
        .enumerate()
    {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        cache.rstd[r] = rstd;
        for i in 0..d {
            let h = (xr[i] - mean) * rstd;
            hr[i] = h;
            yr[i] = h * g[i] + b[i];
        }
    }
}

/// LayerNorm without a cache (inference).
pub fn layer_norm_infer(x: &[f32], g: &[f32], b: &[f32], d: usize, eps: f32, y: &mut [f32]) {
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = xr.iter().sum::<f32>() / d as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let rstd = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
        }
    }
}

/// Where the input gradient of a LayerNorm goes.
pub enum NormGrad<'a> {
    /// Overwrite the upstream gradient buffer in place (post-LN: the norm's input is a sum).
    InPlace(&'a mut [f32]),
    /// Read `dy` and add the input gradient into `dx` (pre-LN: the norm's input is the residual stream).
    AddTo { dy: &'a [f32], dx: &'a mut [f32] },
}

/// Backward of [`layer_norm`]: `dg += sum dy * xhat`, `db += sum dy`, and the input gradient
/// `rstd * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat))`.
pub fn layer_norm_backward(grad: NormGrad, cache: &NormCache, g: &[f32], d: usize, dg: &mut [f32], db: &mut [f32]) {
    let mut row_fn = |r: usize, dy: &[f32]| -> (f32, f32) {
        let xh = &cache.xhat[r * d..(r + 1) * d];
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for i in 0..d {
            let gy = dy[i] * g[i];
            s1 += gy;
            s2 += gy * xh[i];
            dg[i] += dy[i] * xh[i];
            db[i] += dy[i];
        }
        (s1 / d as f32, s2 / d as f32)
    };
    match grad {
        NormGrad::InPlace(buf) => {
            for (r, row) in buf.chunks_exact_mut(d).enumerate() {
                let (m1, m2) = row_fn(r, row);
                let xh = &cache.xhat[r * d..(r + 1) * d];
                let rstd = cache.rstd[r];
                for i in 0..d {
                    row[i] = rstd * (row[i] * g[i] - m1 - xh[i] * m2);
                }
            }
        }
        NormGrad::AddTo { dy, dx } => {
            for (r, (row, out)) in dy.chunks_exact(d).zip(dx.chunks_exact_mut(d)).enumerate() {
                let (m1, m2) = row_fn(r, row);
                let xh = &cache.xhat[r * d..(r + 1) * d];
                let rstd = cache.rstd[r];
                for i in 0..d {
                    out[i] += rstd * (row[i] * g[i] - m1 - xh[i] * m2);
                }
            }
        }
    }
}

/// In-place ReLU.
pub fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// `dx *= (y > 0)` where `y` is the ReLU output.
pub fn relu_backward(y: &[f32], dx: &mut [f32]) {
    for (d, &v) in dx.iter_mut().zip(y) {
        if v <= 0.0 {
            *d = 0.0;
        }
    }
}

/// `x *= mask` element-wise (dropout forward and backward share this).
pub fn apply_mask(x: &mut [f32], mask: &[f32]) {
    for (v, m) in x.iter_mut().zip(mask) {
        *v *= m;
    }
}

/// `acc += x`.
pub fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}
