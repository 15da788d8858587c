//! The per-phase profile (`--features profile`): every phase is entered as often as the model's
//! shape says, time is charged once, and without a clock nothing is recorded.
#![cfg(feature = "profile")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use picoformer::blob::writer::workspace;
use picoformer::profile::{self, Phase};
use picoformer::{Config, DecodeOptions, Model, NormPlacement, Quant, Runner};

/// A clock that advances by one at every reading, so each scope switch is one tick.
static TICKS: AtomicU32 = AtomicU32::new(0);

fn tick() -> u32 {
    TICKS.fetch_add(1, Ordering::Relaxed)
}

/// Runs one greedy translation of `input` and returns the report and the output length.
fn profiled(cfg: &Config, input: &[u16], clock: Option<fn() -> u32>) -> (profile::Report, usize, u32) {
    let tensors = random_tensors(cfg, 7, 0.0);
    let blob = blob(cfg, &tensors);
    let model = Model::from_blob(blob.as_bytes()).unwrap();
    let mut ws = workspace(model.workspace_bytes(1));
    let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1).unwrap();
    let mut out = [0u16; 16];
    profile::set_clock(clock);
    profile::reset();
    let t0 = TICKS.load(Ordering::Relaxed);
    let d = runner
        .translate_tokens(input, &DecodeOptions::greedy(), &mut out)
        .unwrap();
    let elapsed = TICKS.load(Ordering::Relaxed) - t0;
    profile::set_clock(None);
    (profile::report(), d.len, elapsed)
}

/// One test (the profile is global state), covering both precisions and both norm placements.
#[test]
fn phases_are_counted_as_the_model_shape_says() {
    for (norm, quant, conv) in [
        (NormPlacement::Pre, Quant::Int8, 0),
        (NormPlacement::Post, Quant::F32, 0),
        (NormPlacement::Pre, Quant::Int8, 3),
        (NormPlacement::Post, Quant::F32, 5),
    ] {
        let mut cfg = config(norm, false, quant);
        cfg.kv_cache = quant;
        cfg.conv_kernel = conv;
        let input = [1u16, 2, 3, 4, 5];
        let (report, len, elapsed) = profiled(&cfg, &input, Some(tick));
        let (n, steps) = (input.len() as u32, len as u32 + 1);
        let (le, ld) = (cfg.encoder_layers as u32, cfg.decoder_layers as u32);
        let calls = |p: Phase| report.calls[p as usize];
        // Encoder: Q, K, V, O and the two FFN layers per position and layer; cross-attention K and
        // V once per position and decoder layer; per decoder step and layer: self Q, K, V, O,
        // cross Q, O and the FFN's two; then the output projection.
        assert_eq!(calls(Phase::Matvec), le * n * 6 + ld * n * 2 + steps * (ld * 8 + 1));
        assert_eq!(calls(Phase::Attention), le * n + steps * ld * 2);
        assert_eq!(calls(Phase::Softmax), calls(Phase::Attention));
        assert_eq!(calls(Phase::CacheWrite), ld * n * 2 + steps * ld * 2);
        assert_eq!(calls(Phase::Embed), n + steps);
        assert_eq!(calls(Phase::Output), steps);
        // One convolution row per position and encoder layer; its sublayer has its own norm.
        let convs = if conv > 0 { le * n } else { 0 };
        assert_eq!(calls(Phase::Conv), convs);
        let norms = convs
            + match norm {
                // Per encoder block and position: the attention input twice (once for K and V of
                // every position, once for the row's Q) and the FFN input; three per decoder block
                // and step; the final norm of the encoder (one scope over all positions) and of the
                // decoder (every step).
                NormPlacement::Pre => le * n * 3 + 1 + steps * (ld * 3 + 1),
                NormPlacement::Post => le * n * 2 + steps * ld * 3,
            };
        assert_eq!(calls(Phase::LayerNorm), norms, "{norm:?}");
        match quant {
            Quant::Int8 => assert!(calls(Phase::Quantize) > 0),
            Quant::F32 => assert_eq!(calls(Phase::Quantize), 0),
        }
        // Every phase that ran was charged, and nothing twice: the charged ticks never exceed
        // the ticks that passed.
        for p in Phase::ALL {
            assert_eq!(report.ticks[p as usize] > 0, calls(p) > 0, "{p:?}");
        }
        assert!(report.sum() <= u64::from(elapsed), "{} > {elapsed}", report.sum());

        // Without a clock the profile records nothing.
        let (idle, _, _) = profiled(&cfg, &input, None);
        assert_eq!(idle, profile::Report::default());
    }
}
