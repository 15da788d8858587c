//! The engine's forward pass and decoding against an independent f64 reference.

mod common;

use common::*;
use picoformer::blob::writer::workspace;
use picoformer::{DecodeOptions, Error, Model, NormPlacement, ProbeSpec, Quant, Runner, Site};

/// Logit tolerance against the f64 reference: f32 rounding with libm; with `fast-math`,
/// micromath's exp (2.4e-3 relative error) perturbs the attention weights a little more.
const LOGIT_TOL: f64 = if cfg!(feature = "fast-math") { 2e-3 } else { 1e-4 };

fn inputs(rng: &mut Rng, n: usize, max_len: usize) -> Vec<Vec<u16>> {
    (0..n)
        .map(|_| (0..1 + rng.below(max_len)).map(|_| 1 + rng.below(8) as u16).collect())
        .collect()
}

/// Random weights whose END bias is chosen so greedy outputs on random inputs vary in length
/// (random models tend to stop at once or never).
fn varied_length_tensors(cfg: &picoformer::Config, seed: u64) -> std::collections::HashMap<String, Vec<f32>> {
    let mut rng = Rng::new(seed ^ 0xABCD);
    let probe = inputs(&mut rng, 20, cfg.max_input_len);
    for attempt in 0..200u64 {
        let bias = -3.0 + 0.25 * (attempt % 40) as f32;
        let tensors = random_tensors(cfg, seed + 1000 * (attempt / 40), bias);
        let blob = blob(cfg, &tensors);
        let model = Model::from_blob(blob.as_bytes()).unwrap();
        let mut ws = workspace(model.workspace_bytes(1));
        let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1).unwrap();
        let mut lengths = std::collections::BTreeSet::new();
        for input in &probe {
            let mut out = [0u16; 16];
            lengths.insert(
                runner
                    .translate_tokens(input, &DecodeOptions::greedy(), &mut out)
                    .unwrap()
                    .len,
            );
        }
        if lengths.len() >= 3 {
            return tensors;
        }
    }
    panic!("no END bias gives varied lengths for seed {seed}");
}

/// Norm placement, tied output and encoder convolution kernel (0 = none) of each tested model.
fn variants() -> Vec<(NormPlacement, bool, usize)> {
    vec![
        (NormPlacement::Post, false, 0),
        (NormPlacement::Pre, false, 0),
        (NormPlacement::Post, true, 0),
        (NormPlacement::Pre, true, 0),
        (NormPlacement::Pre, false, 3),
        (NormPlacement::Post, true, 5),
    ]
}

fn variant_config(norm: NormPlacement, tied: bool, conv: usize, quant: Quant) -> picoformer::Config {
    let mut cfg = config(norm, tied, quant);
    cfg.conv_kernel = conv;
    cfg
}

#[test]
fn logits_match_f64_reference() {
    for (seed, (norm, tied, conv)) in variants().into_iter().enumerate() {
        let cfg = variant_config(norm, tied, conv, Quant::F32);
        let tensors = random_tensors(&cfg, seed as u64, 0.0);
        let blob = blob(&cfg, &tensors);
        let model = Model::from_blob(blob.as_bytes()).unwrap();
        let mut ws = workspace(model.workspace_bytes(1));
        let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1).unwrap();
        let mut rng = Rng::new(100 + seed as u64);
        for input in inputs(&mut rng, 6, cfg.max_input_len) {
            let dec: Vec<u16> = std::iter::once(1)
                .chain((0..rng.below(cfg.max_output_len)).map(|_| 3 + rng.below(7) as u16))
                .collect();
            let expected = reference_logits(&cfg, &tensors, &input, &dec);
            let mut worst = 0.0f64;
            runner
                .teacher_forced(&input, &dec, &mut |pos, logits| {
                    for (a, b) in logits.iter().zip(&expected[pos]) {
                        worst = worst.max((*a as f64 - b).abs());
                    }
                })
                .unwrap();
            assert!(
                worst < LOGIT_TOL,
                "{norm:?} tied={tied} conv={conv}: logits differ by {worst}"
            );
        }
    }
}

#[test]
fn greedy_matches_reference_and_beam_1_equals_greedy() {
    for (seed, (norm, tied, conv)) in variants().into_iter().enumerate() {
        let cfg = variant_config(norm, tied, conv, Quant::F32);
        let tensors = varied_length_tensors(&cfg, 10 + seed as u64);
        let blob = blob(&cfg, &tensors);
        let model = Model::from_blob(blob.as_bytes()).unwrap();
        let mut ws = workspace(model.workspace_bytes(4));
        let mut runner = Runner::new(&model, ws.as_bytes_mut(), 4).unwrap();
        let mut rng = Rng::new(200 + seed as u64);
        let mut lengths = std::collections::BTreeSet::new();
        for input in inputs(&mut rng, 20, cfg.max_input_len) {
            let (want, want_trunc) = reference_greedy(&cfg, &tensors, &input);
            let mut out = [0u16; 16];
            let g = runner
                .translate_tokens(&input, &DecodeOptions::greedy(), &mut out)
                .unwrap();
            assert_eq!(&out[..g.len], &want[..], "greedy tokens for {input:?}");
            assert_eq!(g.truncated, want_trunc);
            lengths.insert(g.len);
            let mut out1 = [0u16; 16];
            let b = runner
                .translate_tokens(&input, &DecodeOptions::beam(1), &mut out1)
                .unwrap();
            assert_eq!(&out1[..b.len], &out[..g.len], "beam 1 vs greedy");
            assert_eq!(b.truncated, g.truncated);
            assert!((b.log_prob - g.log_prob).abs() < 1e-4);
        }
        assert!(lengths.len() >= 2, "outputs should vary in length: {lengths:?}");
    }
}

/// Exhaustive search over short outputs checks that beam search finds high-scoring hypotheses.
#[test]
fn beam_search_never_scores_below_greedy() {
    let cfg = config(NormPlacement::Pre, false, Quant::F32);
    let tensors = random_tensors(&cfg, 77, 1.0);
    let blob = blob(&cfg, &tensors);
    let model = Model::from_blob(blob.as_bytes()).unwrap();
    let mut ws = workspace(model.workspace_bytes(picoformer::MAX_BEAM));
    let mut runner = Runner::new(&model, ws.as_bytes_mut(), picoformer::MAX_BEAM).unwrap();
    let mut rng = Rng::new(5);
    for input in inputs(&mut rng, 20, cfg.max_input_len) {
        let mut out = [0u16; 16];
        let g = runner
            .translate_tokens(&input, &DecodeOptions::greedy(), &mut out)
            .unwrap();
        for width in [2, 4, 8] {
            // Unnormalized scores: beam must find a hypothesis at least as probable as greedy's.
            let opts = DecodeOptions {
                beam_width: width,
                length_alpha: 0.0,
            };
            let b = runner.translate_tokens(&input, &opts, &mut out).unwrap();
            if !g.truncated && !b.truncated {
                assert!(
                    b.log_prob >= g.log_prob - 1e-4,
                    "width {width}: {} < greedy {}",
                    b.log_prob,
                    g.log_prob
                );
            }
            // The reported score is the true score of the reported tokens.
            let dec: Vec<u16> = std::iter::once(1).chain(out[..b.len].iter().copied()).collect();
            let mut total = 0.0f64;
            let logits = reference_logits(&cfg, &tensors, &input, &dec);
            for (pos, l) in logits.iter().enumerate() {
                let next = if pos < b.len { out[pos] } else { 2 } as usize;
                if pos == b.len && b.truncated {
                    break;
                }
                let mx = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = l.iter().map(|v| (v - mx).exp()).sum();
                total += l[next] - mx - z.ln();
            }
            assert!(
                (total - b.log_prob as f64).abs() < 1e-3 + 10.0 * LOGIT_TOL,
                "width {width}: score {} vs {}",
                b.log_prob,
                total
            );
        }
    }
}

#[test]
fn int8_agrees_with_f32_on_most_outputs() {
    let cfg32 = config(NormPlacement::Post, false, Quant::F32);
    let cfg8 = config(NormPlacement::Post, false, Quant::Int8);
    let tensors = random_tensors(&cfg32, 3, 1.5);
    let (b32, b8) = (blob(&cfg32, &tensors), blob(&cfg8, &tensors));
    let (m32, m8) = (
        Model::from_blob(b32.as_bytes()).unwrap(),
        Model::from_blob(b8.as_bytes()).unwrap(),
    );
    assert!(
        b8.as_bytes().len() * 2 < b32.as_bytes().len(),
        "int8 blob should be much smaller"
    );
    let mut w32 = workspace(m32.workspace_bytes(1));
    let mut w8 = workspace(m8.workspace_bytes(1));
    let mut r32 = Runner::new(&m32, w32.as_bytes_mut(), 1).unwrap();
    let mut r8 = Runner::new(&m8, w8.as_bytes_mut(), 1).unwrap();
    let mut rng = Rng::new(9);
    let all = inputs(&mut rng, 200, cfg32.max_input_len);
    let mut same = 0;
    for input in &all {
        let (mut o32, mut o8) = ([0u16; 16], [0u16; 16]);
        let a = r32.translate_tokens(input, &DecodeOptions::greedy(), &mut o32).unwrap();
        let b = r8.translate_tokens(input, &DecodeOptions::greedy(), &mut o8).unwrap();
        same += usize::from(o32[..a.len] == o8[..b.len]);
    }
    assert!(
        same * 100 >= all.len() * 80,
        "int8 matched f32 on only {same}/{}",
        all.len()
    );
}

#[test]
fn string_api_and_input_errors() {
    let cfg = config(NormPlacement::Post, false, Quant::F32);
    let tensors = random_tensors(&cfg, 1, 1.5);
    let blob = blob(&cfg, &tensors);
    let model = Model::from_blob(blob.as_bytes()).unwrap();
    let mut ws = workspace(model.workspace_bytes(1));
    let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1).unwrap();
    let mut out = [0u16; 16];
    let by_str = runner.translate("abch", &DecodeOptions::greedy(), &mut out).unwrap();
    let str_tokens = out[..by_str.len].to_vec();
    let by_ids = runner
        .translate_tokens(&[1, 2, 3, 8], &DecodeOptions::greedy(), &mut out)
        .unwrap();
    assert_eq!(str_tokens, &out[..by_ids.len]);
    let mut text = String::new();
    model.vocab().write_output(&[3, 9, 4], &mut text).unwrap();
    assert_eq!(text, "A GH B");

    let err = runner.translate("abz", &DecodeOptions::greedy(), &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "symbol \"z\" at position 2 is not in the input vocabulary"
    );
    let long = "a".repeat(13);
    let err = runner.translate(&long, &DecodeOptions::greedy(), &mut out).unwrap_err();
    assert_eq!(err, Error::InputTooLong { len: 13, max: 12 });
    assert_eq!(err.to_string(), "input has 13 symbols, the model takes at most 12");
    assert_eq!(
        runner.translate("", &DecodeOptions::greedy(), &mut out).unwrap_err(),
        Error::EmptyInput
    );
    let err = runner.translate("ab", &DecodeOptions::beam(2), &mut out).unwrap_err();
    assert_eq!(err, Error::BeamTooWide { requested: 2, max: 1 });
    let mut small = [0u16; 3];
    let err = runner
        .translate("ab", &DecodeOptions::greedy(), &mut small)
        .unwrap_err();
    assert_eq!(err, Error::OutputBufferTooSmall { needed: 10, given: 3 });
    assert!(matches!(
        runner.translate_tokens(&[0], &DecodeOptions::greedy(), &mut out),
        Err(Error::TokenOutOfRange { .. })
    ));
    // Errors leave the runner usable.
    let again = runner.translate("abch", &DecodeOptions::greedy(), &mut out).unwrap();
    assert_eq!(&out[..again.len], &str_tokens[..]);
}

#[test]
fn workspace_is_exact_and_checked() {
    let cfg = config(NormPlacement::Pre, true, Quant::Int8);
    let tensors = random_tensors(&cfg, 4, 1.0);
    let blob = blob(&cfg, &tensors);
    let model = Model::from_blob(blob.as_bytes()).unwrap();
    for beams in [1, 3, 8] {
        let need = model.workspace_bytes(beams);
        let mut ws = workspace(need);
        let err = Runner::new(&model, &mut ws.as_bytes_mut()[..need - 1], beams)
            .err()
            .unwrap();
        assert_eq!(
            err,
            Error::WorkspaceTooSmall {
                needed: need,
                given: need - 1
            }
        );
        let mut runner = Runner::new(&model, ws.as_bytes_mut(), beams).unwrap();
        let mut out = [0u16; 16];
        runner
            .translate("abcdefgh", &DecodeOptions::beam(beams), &mut out)
            .unwrap();
    }
    let mut ws = workspace(model.workspace_bytes(1) + 1);
    assert_eq!(
        Runner::new(&model, &mut ws.as_bytes_mut()[1..], 1).err().unwrap(),
        Error::WorkspaceMisaligned
    );
    assert_eq!(
        Runner::new(&model, ws.as_bytes_mut(), 9).err().unwrap(),
        Error::BeamTooWide { requested: 9, max: 8 }
    );
}

#[test]
fn attention_probe_reports_normalized_weights() {
    let cfg = config(NormPlacement::Post, false, Quant::F32);
    let tensors = random_tensors(&cfg, 2, 1.5);
    let blob = blob(&cfg, &tensors);
    let model = Model::from_blob(blob.as_bytes()).unwrap();
    let mut ws = workspace(model.workspace_bytes(1));
    let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1).unwrap();
    let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut out = [0u16; 16];
    let spec = ProbeSpec {
        site: Site::DecoderCross,
        layer: 1,
        head: 3,
    };
    let d = runner
        .translate_probed("abcde", &mut out, spec, &mut |q: usize, w: &[f32]| {
            rows.push((q, w.to_vec()))
        })
        .unwrap();
    // One decoder step per output token plus the step that produced END (or hit the limit).
    assert_eq!(rows.len(), d.len + 1);
    for (i, (q, w)) in rows.iter().enumerate() {
        assert_eq!(*q, i);
        assert_eq!(w.len(), 5);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let bad = ProbeSpec {
        site: Site::EncoderSelf,
        layer: 2,
        head: 0,
    };
    assert_eq!(
        runner
            .translate_probed("ab", &mut out, bad, &mut |_: usize, _: &[f32]| {})
            .unwrap_err(),
        Error::BadProbe
    );
}

/// Int8 key/value caches (a quarter of the cache RAM) stay close to f32 caches: same logits within a
/// quantization-sized tolerance, and the same greedy tokens on most inputs.
#[test]
fn int8_kv_cache_is_close_to_f32() {
    let cfg32 = config(NormPlacement::Pre, false, Quant::F32);
    let mut cfg8 = cfg32;
    cfg8.kv_cache = Quant::Int8;
    let tensors = varied_length_tensors(&cfg32, 21);
    let (b32, b8) = (blob(&cfg32, &tensors), blob(&cfg8, &tensors));
    let (m32, m8) = (
        Model::from_blob(b32.as_bytes()).unwrap(),
        Model::from_blob(b8.as_bytes()).unwrap(),
    );
    assert_eq!(m8.config().kv_cache, Quant::Int8);
    let layout32 = m32.workspace_layout(4);
    let layout8 = m8.workspace_layout(4);
    // d 16 with 4 heads: 16 int8 values and 4 f32 scales per row against 16 f32 values.
    assert_eq!(layout8.cross_kv * 2, layout32.cross_kv, "{layout8:?} vs {layout32:?}");
    assert_eq!(layout8.self_kv * 2, layout32.self_kv);
    let mut w32 = workspace(m32.workspace_bytes(4));
    let mut w8 = workspace(m8.workspace_bytes(4));
    let mut r32 = Runner::new(&m32, w32.as_bytes_mut(), 4).unwrap();
    let mut r8 = Runner::new(&m8, w8.as_bytes_mut(), 4).unwrap();
    let mut rng = Rng::new(31);
    let all = inputs(&mut rng, 100, cfg32.max_input_len);
    let (mut same, mut worst) = (0, 0.0f32);
    for input in &all {
        let dec = [1u16, 3, 4, 5];
        let mut a = Vec::new();
        r32.teacher_forced(input, &dec, &mut |_, l| a.extend_from_slice(l))
            .unwrap();
        let mut i = 0;
        r8.teacher_forced(input, &dec, &mut |_, l| {
            for v in l {
                worst = worst.max((v - a[i]).abs());
                i += 1;
            }
        })
        .unwrap();
        for opts in [DecodeOptions::greedy(), DecodeOptions::beam(4)] {
            let (mut o32, mut o8) = ([0u16; 16], [0u16; 16]);
            let x = r32.translate_tokens(input, &opts, &mut o32).unwrap();
            let y = r8.translate_tokens(input, &opts, &mut o8).unwrap();
            same += usize::from(o32[..x.len] == o8[..y.len]);
        }
    }
    assert!(worst < 0.1, "int8 caches move logits by {worst}");
    assert!(
        same * 100 >= 2 * all.len() * 85,
        "int8 caches matched f32 on only {same}/{}",
        2 * all.len()
    );
    eprintln!(
        "int8 KV cache: worst logit difference {worst}, same outputs {same}/{}",
        2 * all.len()
    );
}
