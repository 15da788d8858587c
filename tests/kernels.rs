//! Every kernel against a naive f64 reference, on random inputs of odd and even sizes.
#![allow(clippy::needless_range_loop)]

use picoformer::kernels::*;
use picoformer::quant::{fake_quantize_row, quantize_row};
use proptest::prelude::*;

fn vec_f32(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-4.0f32..4.0, len)
}

/// Softmax tolerance: libm's exp is exact to ~1e-7; micromath's (`fast-math`) to 2.4e-3 relative.
const SOFTMAX_TOL: f64 = if cfg!(feature = "fast-math") { 3e-3 } else { 1e-6 };

fn close(a: f32, b: f64, tol: f64) -> bool {
    (a as f64 - b).abs() <= tol * (1.0 + b.abs())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dot_f32_matches_f64(pair in (1usize..70).prop_flat_map(|n| (vec_f32(n..n + 1), vec_f32(n..n + 1)))) {
        let (a, b) = pair;
        let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let scale: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
        prop_assert!((dot_f32(&a, &b) as f64 - want).abs() <= 1e-5 * (1.0 + scale));
    }

    #[test]
    fn matvec_f32_matches_f64(rows in 1usize..20, cols in 1usize..40, seed in any::<u64>()) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 };
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let x: Vec<f32> = (0..cols).map(|_| next()).collect();
        let b: Vec<f32> = (0..rows).map(|_| next()).collect();
        let mut y = vec![0.0; rows];
        matvec_f32(&w, &x, &b, &mut y);
        for r in 0..rows {
            let want: f64 = (0..cols).map(|c| w[r * cols + c] as f64 * x[c] as f64).sum::<f64>() + b[r] as f64;
            prop_assert!(close(y[r], want, 1e-5));
        }
    }

    #[test]
    fn matvec_i8_is_exact_in_integers(rows in 1usize..20, cols in 1usize..70, seed in any::<u64>()) {
        let mut s = seed;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (s >> 56) as u8 as i8 };
        let w: Vec<i8> = (0..rows * cols).map(|_| next().max(-127)).collect();
        let x: Vec<i8> = (0..cols).map(|_| next().max(-127)).collect();
        let scales: Vec<f32> = (0..rows).map(|r| 0.01 + r as f32 * 0.001).collect();
        let b: Vec<f32> = (0..rows).map(|r| r as f32 * 0.5).collect();
        let mut y = vec![0.0; rows];
        matvec_i8(&w, &scales, &x, 0.02, &b, &mut y);
        for r in 0..rows {
            let acc: i64 = (0..cols).map(|c| w[r * cols + c] as i64 * x[c] as i64).sum();
            prop_assert_eq!(dot_i8(&w[r * cols..(r + 1) * cols], &x) as i64, acc);
            let want = acc as f64 * (scales[r] as f64 * 0.02) + b[r] as f64;
            prop_assert!(close(y[r], want, 1e-6));
        }
    }

    #[test]
    fn quantize_row_error_is_half_a_step(x in vec_f32(1..70)) {
        let mut q = vec![0i8; x.len()];
        let scale = quantize_row(&x, &mut q);
        let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        prop_assert!(close(scale, max as f64 / 127.0, 1e-6));
        let mut fq = x.clone();
        fake_quantize_row(&mut fq);
        for ((v, qv), f) in x.iter().zip(&q).zip(&fq) {
            prop_assert!((-127..=127).contains(&(*qv as i32)));
            prop_assert!((*v as f64 - *qv as f64 * scale as f64).abs() <= scale as f64 * 0.5 + 1e-6);
            prop_assert_eq!(*f, *qv as f32 * scale);
        }
    }

    /// The engine's quantization (integer maximum of magnitudes, no clamp) gives exactly what the
    /// straightforward formulation (`f32::max`, clamped rounding) gives, at any magnitude and with
    /// NaN, infinity and signed zeros mixed in (a NaN or an infinity makes the row zero), and with
    /// an output shorter or longer than the input.
    #[test]
    fn quantize_row_matches_straightforward_form(
        x in prop::collection::vec(
            prop_oneof![
                8 => -4.0f32..4.0,
                2 => (-30i32..30, -1.0f32..1.0).prop_map(|(e, m)| m * 2f32.powi(e)),
                1 => prop::sample::select(vec![0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::MIN_POSITIVE, 1e-45]),
            ],
            1..70,
        )
    ) {
        let reference = |x: &[f32], out: &mut [i8]| -> f32 {
            let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if max == 0.0 || !max.is_finite() || x.iter().any(|v| v.is_nan()) {
                out.iter_mut().for_each(|q| *q = 0);
                return 0.0;
            }
            let inv = 127.0 / max;
            for (q, &v) in out.iter_mut().zip(x) {
                *q = picoformer::quant::round_half_away(v * inv).clamp(-127, 127) as i8;
            }
            max / 127.0
        };
        for out_len in [x.len(), x.len().saturating_sub(3), x.len() + 5] {
            let (mut q, mut r) = (vec![9i8; out_len], vec![9i8; out_len]);
            let (s, rs) = (quantize_row(&x, &mut q), reference(&x, &mut r));
            prop_assert_eq!(s.to_bits(), rs.to_bits());
            prop_assert_eq!(q, r);
        }
    }

    #[test]
    fn layer_norm_matches_f64(x in vec_f32(2..70), eps in 1e-6f32..1e-3) {
        let n = x.len();
        let g: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * -0.02).collect();
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let mut out = vec![0.0; n];
        layer_norm_into(&x, &g, &b, eps, &mut out);
        let mut inplace = x.clone();
        layer_norm(&mut inplace, &g, &b, eps);
        for i in 0..n {
            let want = (x[i] as f64 - mean) / (var + eps as f64).sqrt() * g[i] as f64 + b[i] as f64;
            prop_assert!((out[i] as f64 - want).abs() < 2e-4 * (1.0 + want.abs()), "{} vs {}", out[i], want);
            prop_assert_eq!(out[i], inplace[i]);
        }
    }

    #[test]
    fn softmax_matches_f64(x in prop::collection::vec(-80.0f32..80.0, 1..70)) {
        let max = x.iter().cloned().fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
        let z: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        let mut p = x.clone();
        softmax(&mut p);
        let mut lp = x.clone();
        log_softmax(&mut lp);
        for i in 0..x.len() {
            let want = (x[i] as f64 - max).exp() / z;
            prop_assert!((p[i] as f64 - want).abs() < SOFTMAX_TOL * want.max(1e-3));
            prop_assert!((lp[i] as f64 - want.ln()).abs() < 1e-4 * (1.0 + want.ln().abs()) + SOFTMAX_TOL);
        }
        prop_assert!((p.iter().map(|&v| v as f64).sum::<f64>() - 1.0).abs() < 1e-5 + SOFTMAX_TOL);
    }

    #[test]
    fn relu_argmax_add(x in vec_f32(1..50)) {
        let mut r = x.clone();
        relu(&mut r);
        for (a, b) in r.iter().zip(&x) { prop_assert_eq!(*a, b.max(0.0)); }
        let i = argmax(&x);
        prop_assert!(x.iter().all(|&v| v <= x[i]));
        prop_assert!(x[..i].iter().all(|&v| v < x[i]), "first maximum");
        let mut s = x.clone();
        add_assign(&mut s, &x);
        for (a, b) in s.iter().zip(&x) { prop_assert_eq!(*a, 2.0 * b); }
    }
}

#[test]
fn positional_encoding_matches_formula() {
    let d = 10;
    let mut pe = vec![0.0f32; d];
    for pos in [0usize, 1, 7, 40] {
        picoformer::model::positional_encoding(pos, &mut pe);
        for j in 0..d {
            let i = (j / 2) * 2;
            let a = pos as f64 * (-(i as f64) * 10000f64.ln() / d as f64).exp();
            let want = if j % 2 == 0 { a.sin() } else { a.cos() };
            assert!(
                (pe[j] as f64 - want).abs() < 2e-5,
                "pos {pos} dim {j}: {} vs {want}",
                pe[j]
            );
        }
    }
}

#[test]
fn sin_cos_is_accurate_over_the_positions_used() {
    let mut worst = 0.0f64;
    for i in 0..2_000_000u32 {
        let x = i as f32 * 0.004_096 - 100.0; // -100 .. 8092
        let (s, c) = picoformer::math::sin_cos(x);
        let xd = x as f64;
        worst = worst.max((s as f64 - xd.sin()).abs()).max((c as f64 - xd.cos()).abs());
    }
    eprintln!("sin_cos worst abs error {worst:e}");
    assert!(worst < 1e-6, "sin_cos error {worst}");
}
