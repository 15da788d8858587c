//! The 4-row panel layout (blob flag `FLAG_I8_PANELS`), its kernels, the activation expansion and
//! the fast rounding used by activation quantization. The DSP and FPU kernels themselves only
//! run on the emulated boards (`!selftest`, `host-tools/tests/bench_qemu.rs`); here the portable
//! paths are checked against the row-major reference, and panel blobs against row-major blobs.

mod common;

use common::*;
use picoformer::blob::writer::{write_blob_with, AlignedBytes, I8Layout, WriteOptions};
use picoformer::blob::{field, FLAG_I8_PANELS};
use picoformer::kernels::{dot_i8, matvec_i8, panel};
use picoformer::weights::Matrix;
use picoformer::{BlobError, DecodeOptions, Model, NormPlacement, Quant, Runner};

fn random_i8(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| (rng.below(255) as i32 - 127) as i8).collect()
}

#[test]
fn panel_index_is_a_permutation_and_to_panels_follows_it() {
    for rows in 1..14 {
        for cols in 1..19 {
            let mut seen = vec![false; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    let i = panel::panel_index(rows, cols, r, c);
                    assert!(!seen[i], "{rows}x{cols}: ({r},{c}) collides");
                    seen[i] = true;
                }
            }
            let src: Vec<u32> = (0..(rows * cols) as u32).collect();
            let mut dst = vec![0u32; rows * cols];
            panel::to_panels(&src, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[panel::panel_index(rows, cols, r, c)], (r * cols + c) as u32);
                }
                let mut out = vec![0.0; cols];
                panel::panel_row_into(&dst, rows, r, &mut out, |v| v as f32);
                let want: Vec<f32> = (0..cols).map(|c| (r * cols + c) as f32).collect();
                assert_eq!(out, want);
            }
        }
    }
    // The documented order inside a full panel: group of 4 columns, rows 0..4, then the tails.
    let src: Vec<u32> = (0..4 * 6).collect();
    let mut dst = vec![0u32; 24];
    panel::to_panels(&src, 6, &mut dst);
    assert_eq!(
        dst,
        [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15, 18, 19, 20, 21, 4, 5, 10, 11, 16, 17, 22, 23]
    );
}

#[test]
fn panel_kernels_equal_the_row_major_reference() {
    let mut rng = Rng::new(7);
    for case in 0..400 {
        let rows = 1 + rng.below(37);
        let cols = 1 + rng.below(140);
        let mut w = random_i8(&mut rng, rows * cols);
        let mut x = random_i8(&mut rng, cols);
        if case % 5 == 0 {
            w.iter_mut()
                .chain(x.iter_mut())
                .for_each(|v| *v = if *v >= 0 { 127 } else { -127 });
        }
        let mut wp = vec![0i8; rows * cols];
        panel::to_panels(&w, cols, &mut wp);
        let want: Vec<i32> = w.chunks_exact(cols).map(|row| dot_i8(row, &x)).collect();
        let mut got = vec![0i32; rows];
        panel::panel_dots_portable(&wp, &x, |r, d| got[r] = d);
        assert_eq!(got, want, "{rows}x{cols}");
        let mut xe = vec![0u32; 2 * (cols / 4)];
        assert_eq!(panel::expand_activation(&x, &mut xe), xe.len());
        let mut got2 = vec![0i32; rows];
        panel::panel_dots(&wp, &x, &xe, &mut got2);
        assert_eq!(got2, want, "{rows}x{cols}");

        let scales: Vec<f32> = (0..rows).map(|_| rng.uniform().abs() * 0.02 + 1e-3).collect();
        let bias: Vec<f32> = (0..rows).map(|_| rng.uniform()).collect();
        let mut y1 = vec![0.0; rows];
        let mut y2 = vec![0.0; rows];
        let mut y3 = vec![0.0; rows];
        matvec_i8(&w, &scales, &x, 0.013, &bias, &mut y1);
        panel::matvec_i8_panels_portable(&wp, &scales, &x, 0.013, &bias, &mut y2);
        panel::matvec_i8_panels(&wp, &scales, &x, &xe, 0.013, &bias, &mut y3);
        let bits = |y: &[f32]| y.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y1), bits(&y2));
        assert_eq!(bits(&y1), bits(&y3));
    }
}

#[test]
fn expansion_pairs_even_and_odd_values() {
    let x: Vec<i8> = vec![1, -2, 3, -4, 127, -127, 0, 5, 9];
    let mut xe = vec![0u32; 4];
    assert_eq!(panel::expand_activation_portable(&x, &mut xe), 4);
    let pair = |lo: i16, hi: i16| (lo as u16 as u32) | ((hi as u16 as u32) << 16);
    assert_eq!(xe, [pair(1, 3), pair(-2, -4), pair(127, 0), pair(-127, 5)]);
}

/// A float for the dequantization tests: any bits, or exponents from tiny to huge, often with
/// few significand bits (so that products and sums land exactly on rounding ties).
fn awkward_f32(rng: &mut Rng) -> f32 {
    let bits = rng.next_u64() as u32;
    let keep = !((1u32 << rng.below(24)) - 1);
    let exp = match rng.below(8) {
        0 => rng.below(256) as u32,
        1 => 1 + rng.below(30) as u32,
        2 => 225 + rng.below(30) as u32,
        _ => 107 + rng.below(40) as u32,
    };
    match rng.below(16) {
        0 => [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40,
            -3e-39,
            f32::MIN_POSITIVE,
        ][rng.below(8)],
        1..=5 => f32::from_bits((bits & 0x807f_ffff & keep) | exp << 23),
        6 => f32::from_bits(bits),
        _ => f32::from_bits((bits & 0x807f_ffff) | exp << 23),
    }
}

#[test]
fn integer_dequantization_equals_the_float_expression() {
    use picoformer::kernels::dequant::{dequant, dequant_integer, fast, XScale};
    let mut rng = Rng::new(11);
    let mut on_fast_path = 0;
    let cases = 2_000_000;
    for i in 0..cases {
        let dot = (rng.next_u64() as i32) >> rng.below(32);
        // Activation scales are positive (a negative one takes the float expression).
        let s = awkward_f32(&mut rng);
        let xs = if i % 8 == 0 {
            awkward_f32(&mut rng)
        } else {
            awkward_f32(&mut rng).abs()
        };
        let q = dot as f32 * (s * xs);
        let b = match i % 4 {
            // Cancel the product, to the last bits.
            0 => f32::from_bits((-q).to_bits() ^ (rng.next_u64() as u32 & 0xff) >> rng.below(9)),
            1 => f32::from_bits(q.to_bits() ^ (rng.next_u64() as u32 & 0xff) >> rng.below(9)),
            _ => awkward_f32(&mut rng),
        };
        let want = q + b;
        for got in [dequant_integer(dot, s, xs, b), dequant(dot, s, xs, b)] {
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "dot {dot} scale {s:e} x_scale {xs:e} bias {b:e}: {got:e} instead of {want:e}"
            );
        }
        if XScale::new(xs).is_some_and(|k| fast(dot, s.to_bits(), b.to_bits(), &k).is_some()) {
            on_fast_path += 1;
        }
    }
    // The fast path is the common case, not a curiosity.
    assert!(on_fast_path > cases / 3, "{on_fast_path}");
    // Typical operands take it.
    let k = XScale::new(0.013).unwrap();
    for (dot, s, b) in [
        (1, 0.02f32, 0.5f32),
        (-123_456, 0.011, -0.25),
        (9_999_999, 1e-3, 0.0),
        (-7, 0.004, -0.0),
    ] {
        let bits = fast(dot, s.to_bits(), b.to_bits(), &k).unwrap();
        assert_eq!(bits, (dot as f32 * (s * 0.013) + b).to_bits());
    }
}

#[test]
fn round_half_away_equals_libm_roundf() {
    let check = |x: f32| {
        assert_eq!(
            picoformer::quant::round_half_away(x),
            libm::roundf(x) as i32,
            "{x:e} ({:#010x})",
            x.to_bits()
        );
    };
    // Every float within 4096 ulps of each half-integer and integer up to 2^12, both signs.
    for k in 0..(1 << 13) {
        let center = k as f32 * 0.5;
        for sign in [1.0f32, -1.0] {
            let c = (center * sign).to_bits();
            for d in 0..4096u32 {
                for bits in [c.wrapping_add(d), c.wrapping_sub(d)] {
                    check(f32::from_bits(bits));
                }
            }
        }
    }
    // Every float in [0.25, 2] and a stride through all 2^32 bit patterns (NaN, infinities,
    // subnormals, huge values included).
    for bits in 0.25f32.to_bits()..=2.0f32.to_bits() {
        check(f32::from_bits(bits));
        check(-f32::from_bits(bits));
    }
    for bits in (0..=u32::MAX).step_by(997) {
        check(f32::from_bits(bits));
    }
    for x in [
        0.5,
        1.5,
        2.5,
        126.5,
        127.49999,
        8_388_607.5,
        8_388_608.0,
        1e30,
        f32::INFINITY,
        f32::NAN,
    ] {
        check(x);
        check(-x);
    }
}

fn blob_with(cfg: &picoformer::Config, layout: I8Layout, seed: u64) -> AlignedBytes {
    let tensors = random_tensors(cfg, seed, 0.3);
    let bytes = write_blob_with(
        cfg,
        &INPUT_SYMBOLS[..cfg.input_vocab],
        &OUTPUT_TOKENS[..cfg.output_vocab],
        &tensors,
        &WriteOptions { i8_layout: layout },
    )
    .unwrap();
    AlignedBytes::new(&bytes)
}

#[test]
fn panel_and_row_major_blobs_decode_identically() {
    for (norm, tied) in [(NormPlacement::Post, false), (NormPlacement::Pre, true)] {
        let mut cfg = config(norm, tied, Quant::Int8);
        cfg.d_ff = 26; // tail columns in the second FFN matrix
        cfg.output_vocab = 10; // two rows after the last full panel
        let a = blob_with(&cfg, I8Layout::RowMajor, 3);
        let b = blob_with(&cfg, I8Layout::Panels, 3);
        let (ma, mb) = (
            Model::from_blob(a.as_bytes()).unwrap(),
            Model::from_blob(b.as_bytes()).unwrap(),
        );
        assert_eq!(ma.weights().i8_layout(), I8Layout::RowMajor);
        assert_eq!(mb.weights().i8_layout(), I8Layout::Panels);
        assert!(matches!(
            mb.weights().matrix(0),
            Matrix::I8 {
                layout: I8Layout::Panels,
                ..
            }
        ));
        let flags = |m: &AlignedBytes| u32::from_le_bytes(m.as_bytes()[field::FLAGS].try_into().unwrap());
        assert_eq!(flags(&a) & FLAG_I8_PANELS, 0);
        assert_eq!(flags(&b) & FLAG_I8_PANELS, FLAG_I8_PANELS);
        let mut wa = picoformer::blob::writer::workspace(ma.workspace_bytes(2));
        let mut wb = picoformer::blob::writer::workspace(mb.workspace_bytes(2));
        let mut ra = Runner::new(&ma, wa.as_bytes_mut(), 2).unwrap();
        let mut rb = Runner::new(&mb, wb.as_bytes_mut(), 2).unwrap();
        let mut rng = Rng::new(11);
        for _ in 0..30 {
            let len = 1 + rng.below(cfg.max_input_len);
            let input: Vec<u16> = (0..len).map(|_| 1 + rng.below(cfg.input_vocab - 1) as u16).collect();
            let dec = [1u16, 3, 4];
            let mut la = Vec::new();
            let mut lb = Vec::new();
            ra.teacher_forced(&input, &dec, &mut |_, l| la.extend(l.iter().map(|v| v.to_bits())))
                .unwrap();
            rb.teacher_forced(&input, &dec, &mut |_, l| lb.extend(l.iter().map(|v| v.to_bits())))
                .unwrap();
            assert_eq!(la, lb, "logits differ");
            for opts in [DecodeOptions::greedy(), DecodeOptions::beam(2)] {
                let (mut oa, mut ob) = ([0u16; 16], [0u16; 16]);
                let da = ra.translate_tokens(&input, &opts, &mut oa).unwrap();
                let db = rb.translate_tokens(&input, &opts, &mut ob).unwrap();
                assert_eq!(da, db);
                assert_eq!(oa, ob);
            }
        }
    }
}

#[test]
fn panel_flag_is_refused_on_f32_blobs_and_unknown_flags_still_are() {
    let cfg = config(NormPlacement::Pre, false, Quant::F32);
    let good = blob_with(&cfg, I8Layout::Panels, 5);
    assert!(
        Model::from_blob(good.as_bytes()).is_ok(),
        "the option is ignored for f32 blobs"
    );
    for flag in [FLAG_I8_PANELS, 1 << 6, 1 << 31] {
        let mut bytes = good.as_bytes().to_vec();
        let f = u32::from_le_bytes(bytes[field::FLAGS].try_into().unwrap()) | flag;
        bytes[field::FLAGS].copy_from_slice(&f.to_le_bytes());
        let n = bytes.len() - 4;
        let crc = picoformer::blob::crc32(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        let patched = AlignedBytes::new(&bytes);
        assert_eq!(
            Model::from_blob(patched.as_bytes()).unwrap_err(),
            BlobError::ReservedBits,
            "flag {flag:#x}"
        );
    }
}
