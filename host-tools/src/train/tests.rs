//! Gradient checks against central finite differences, gradient coverage, greedy/teacher-forcing
//! agreement, checkpoint round trips and a learning test (string reversal).

use super::batch::{Batch, Example, END, START};
use super::checkpoint::{self, Checkpoint, Which};
use super::model::{Dropout, Net, Tape};
use super::optim::Moments;
use super::params::{Arch, Layout, ModelSpec, Norm};
use super::rng::Rng;
use super::session::Trainer;
use super::TrainModel;

fn arch(norm: Norm, tied: bool) -> Arch {
    Arch {
        spec: ModelSpec {
            d_model: 10,
            heads: 2,
            d_ff: 7,
            encoder_layers: 2,
            decoder_layers: 2,
            norm,
            tied_output: tied,
            max_input_len: 16,
            max_output_len: 16,
            layer_norm_eps: 1e-5,
            conv_kernel: 0,
        },
        input_vocab: 7,
        output_vocab: 9,
    }
}

/// Three examples of different lengths: padding in inputs and in targets.
fn examples() -> Vec<Example> {
    vec![
        Example {
            src: vec![1, 2, 3, 4, 5],
            tgt: vec![3, 4, 5],
        },
        Example {
            src: vec![6, 1],
            tgt: vec![8, 7, 6, 5, 4],
        },
        Example {
            src: vec![3, 3, 2],
            tgt: vec![3],
        },
    ]
}

/// Perturbs parameters so LayerNorm gains/shifts and zero biases are not at special values.
fn jittered(layout: &Layout, seed: u64) -> Vec<f32> {
    let mut p = layout.init(seed);
    let mut r = Rng::new(seed, 77, 0, 0);
    for v in &mut p {
        *v += 0.1 * r.normal();
    }
    p
}

fn loss_and_grad(layout: &Layout, p: &[f32], bt: &Batch, drop: Option<Dropout>, ls: f32) -> (f64, Vec<f32>) {
    let mut tape = Tape::default();
    let mut g = vec![0.0; layout.total];
    let net = Net { l: layout, p };
    tape.forward(net, bt, drop);
    let loss = tape.backward(net, bt, ls, 1.0, &mut g);
    (loss, g)
}

/// Central difference of the loss along `dir` (added to the entries from `offset`), halving the step
/// while any ReLU changes sign between the base point and the probes (a kink makes the difference meaningless).
#[allow(clippy::too_many_arguments)]
fn central_difference(
    layout: &Layout,
    p: &[f32],
    bt: &Batch,
    drop: Option<Dropout>,
    ls: f32,
    offset: usize,
    dir: &[f32],
    base: &[bool],
) -> f64 {
    let mut h = 2e-3f32;
    loop {
        let probe = |sign: f32| {
            let mut q = p.to_vec();
            for (k, v) in dir.iter().enumerate() {
                q[offset + k] += sign * h * v;
            }
            let mut tape = Tape::default();
            let net = Net { l: layout, p: &q };
            tape.forward(net, bt, drop);
            let pattern = tape.relu_pattern();
            let loss = tape.backward(net, bt, ls, 1.0, &mut vec![0.0; layout.total]);
            (loss, pattern == base)
        };
        let ((lp, okp), (lm, okm)) = (probe(1.0), probe(-1.0));
        if (okp && okm) || h < 2e-4 {
            return (lp - lm) / (2.0 * f64::from(h));
        }
        h /= 2.0;
    }
}

fn check_gradients(norm: Norm, tied: bool) {
    check_gradients_of(&arch(norm, tied));
}

/// `arch(norm, false)` with a 3-wide encoder convolution.
fn conv_arch(norm: Norm) -> Arch {
    let mut a = arch(norm, false);
    a.spec.conv_kernel = 3;
    a
}

fn check_gradients_of(a: &Arch) {
    let (norm, tied, conv) = (a.spec.norm, a.spec.tied_output, a.spec.conv_kernel);
    let layout = Layout::new(a).unwrap();
    let p = jittered(&layout, 3);
    let ex = examples();
    let bt = Batch::new(&ex.iter().collect::<Vec<_>>());
    let drop = Some(Dropout {
        p: 0.1,
        seed: 5,
        step: 1,
        first_example: 0,
    });
    let ls = 0.1;
    let (_, g) = loss_and_grad(&layout, &p, &bt, drop, ls);
    let base = {
        let mut tape = Tape::default();
        tape.forward(Net { l: &layout, p: &p }, &bt, drop);
        tape.relu_pattern()
    };
    let mut r = Rng::new(11, 12, 0, 0);
    for t in &layout.tensors {
        // Directional derivative along a random direction over the whole tensor.
        let dir: Vec<f32> = (0..t.len).map(|_| r.normal()).collect();
        let numeric = central_difference(&layout, &p, &bt, drop, ls, t.offset, &dir, &base);
        let analytic: f64 = dir
            .iter()
            .enumerate()
            .map(|(k, v)| f64::from(*v) * f64::from(g[t.offset + k]))
            .sum();
        // Scale of the terms being summed: a directional derivative can cancel to near zero.
        let terms: f64 = dir
            .iter()
            .enumerate()
            .map(|(k, v)| f64::from(*v * g[t.offset + k]).abs())
            .sum();
        let err = (numeric - analytic).abs();
        assert!(
            err <= 2e-3 + 1e-2 * analytic.abs().max(0.2 * terms),
            "{norm:?} tied={tied} conv={conv} {}: numeric {numeric:.6} analytic {analytic:.6}",
            t.name
        );
        // A few single entries, including the largest gradient of the tensor.
        let gt = &g[t.offset..t.offset + t.len];
        let largest = (0..t.len).max_by(|&a, &b| gt[a].abs().total_cmp(&gt[b].abs())).unwrap();
        for k in [largest, r.below(t.len), r.below(t.len)] {
            let numeric = central_difference(&layout, &p, &bt, drop, ls, t.offset + k, &[1.0], &base);
            let analytic = f64::from(gt[k]);
            assert!(
                (numeric - analytic).abs() <= 2e-3 + 1e-2 * analytic.abs(),
                "{norm:?} tied={tied} conv={conv} {}[{k}]: numeric {numeric:.6} analytic {analytic:.6}",
                t.name
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences_post_ln_untied() {
    check_gradients(Norm::Post, false);
}

#[test]
fn gradients_match_finite_differences_pre_ln_untied() {
    check_gradients(Norm::Pre, false);
}

#[test]
fn gradients_match_finite_differences_post_ln_tied() {
    check_gradients(Norm::Post, true);
}

#[test]
fn gradients_match_finite_differences_pre_ln_tied() {
    check_gradients(Norm::Pre, true);
}

#[test]
fn gradients_match_finite_differences_pre_ln_conv() {
    check_gradients_of(&conv_arch(Norm::Pre));
}

#[test]
fn gradients_match_finite_differences_post_ln_conv() {
    check_gradients_of(&conv_arch(Norm::Post));
}

#[test]
fn padding_does_not_change_an_examples_loss() {
    // Each example's loss alone sums to the loss of the padded batch (the convolution must not
    // read padded positions either).
    for a in [arch(Norm::Pre, false), conv_arch(Norm::Pre), conv_arch(Norm::Post)] {
        let layout = Layout::new(&a).unwrap();
        let p = jittered(&layout, 4);
        let ex = examples();
        let all = Batch::new(&ex.iter().collect::<Vec<_>>());
        let (total, _) = loss_and_grad(&layout, &p, &all, None, 0.1);
        let parts: f64 = ex
            .iter()
            .map(|e| loss_and_grad(&layout, &p, &Batch::new(&[e]), None, 0.1).0)
            .sum();
        assert!((total - parts).abs() < 1e-4 * total.abs(), "{total} vs {parts}");
    }
}

#[test]
fn every_tensor_gets_a_nonzero_gradient_after_one_step() {
    for a in [arch(Norm::Post, false), arch(Norm::Pre, true), conv_arch(Norm::Pre)] {
        let norm = a.spec.norm;
        let layout = Layout::new(&a).unwrap();
        let params = layout.init(1);
        let mut t = Trainer::new(layout.clone(), params.clone(), Moments::zeros(layout.total), 2, false);
        let ex = examples();
        let refs: Vec<&Example> = ex.iter().collect();
        let hyper = test_hyper();
        t.step(&refs, &hyper, 1e-3, 1);
        for info in &layout.tensors {
            let moved = (info.offset..info.offset + info.len).any(|i| t.params[i] != params[i]);
            let g = &t.grads()[info.offset..info.offset + info.len];
            assert!(g.iter().any(|&v| v != 0.0), "{norm:?} {}: zero gradient", info.name);
            assert!(moved, "{norm:?} {}: not updated", info.name);
        }
    }
}

#[test]
fn shards_sum_to_the_single_shard_gradient() {
    let layout = Layout::new(&arch(Norm::Pre, false)).unwrap();
    let params = jittered(&layout, 9);
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let mut one = Trainer::new(layout.clone(), params.clone(), Moments::zeros(layout.total), 1, false);
    let mut two = Trainer::new(layout.clone(), params, Moments::zeros(layout.total), 2, false);
    let a = one.gradients(&refs, 0.0, 0.1, 1, 1);
    let b = two.gradients(&refs, 0.0, 0.1, 1, 1);
    assert!((a.loss - b.loss).abs() < 1e-5);
    for (x, y) in one.grads().iter().zip(two.grads()) {
        assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{x} vs {y}");
    }
}

fn test_hyper() -> checkpoint::TrainHyper {
    checkpoint::TrainHyper {
        lr: 1e-3,
        batch_size: 64,
        warmup: 10,
        label_smoothing: 0.1,
        dropout: 0.1,
        clip: 1.0,
        weight_decay: 0.01,
        betas: (0.9, 0.98),
        adam_eps: 1e-8,
        epochs: 1,
        patience: 3,
        eval_every: 0,
        keep_last: 0,
        seed: 0,
        data: String::new(),
        dev: String::new(),
    }
}

#[test]
fn greedy_agrees_with_teacher_forced_logits_and_checkpoints_round_trip() {
    for (norm, tied) in [(Norm::Post, false), (Norm::Pre, true)] {
        let layout = Layout::new(&arch(norm, tied)).unwrap();
        let params = jittered(&layout, 21);
        let dir = std::env::temp_dir().join(format!("pf-train-ck-{norm:?}-{tied}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = checkpoint::CheckpointConfig {
            format: checkpoint::FORMAT.into(),
            version: checkpoint::VERSION,
            model: layout.arch.spec.clone(),
            input_tokens: crate::tsv::Split::Chars,
            output_tokens: crate::tsv::Split::Chars,
            input_vocab: (0..7).map(|i| format!("i{i}")).collect(),
            output_vocab: (0..9).map(|i| format!("o{i}")).collect(),
            train: test_hyper(),
        };
        checkpoint::save_json(&dir.join("config.json"), &config).unwrap();
        checkpoint::save_weights(&dir.join("best.safetensors"), &layout, &params).unwrap();
        let ck = Checkpoint::load(&dir, Which::Best).unwrap();
        assert_eq!(ck.weights.iter().count(), layout.tensors.len());
        assert_eq!(ck.weights.to_params(&layout), params);
        let names: Vec<&str> = ck.weights.iter().map(|(n, _, _)| n).collect();
        assert_eq!(names[0], "src_emb.weight");
        assert_eq!(*names.last().unwrap(), "out_proj.bias");
        let model = TrainModel::from_checkpoint(&ck).unwrap();
        let inputs = vec![vec![1, 2, 3], vec![4, 5, 6, 1, 2, 3, 4], vec![2]];
        let outs = model.greedy(&inputs);
        for (inp, out) in inputs.iter().zip(&outs) {
            // Re-derive each greedy token from the full (teacher-forced) forward pass.
            let mut dec = vec![START];
            dec.extend(out);
            let logits = model.logits(inp, &dec);
            let v = 9;
            for (t, row) in logits.chunks_exact(v).enumerate() {
                let arg = (END as usize..v)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                    .unwrap() as u32;
                let expect = if t < out.len() { out[t] } else { END };
                if t == out.len() && out.len() == 16 {
                    break; // stopped at max_output_len, not at END
                }
                assert_eq!(arg, expect, "{norm:?} position {t} of {out:?}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn learns_string_reversal() {
    // 10-letter alphabet, lengths 3-8: a tiny model must reach >= 95% dev exact match.
    let mut r = Rng::new(42, 1, 0, 0);
    let mut make = |n: usize| -> Vec<Example> {
        (0..n)
            .map(|_| {
                let len = 3 + r.below(6);
                let src: Vec<u32> = (0..len).map(|_| 1 + r.below(10) as u32).collect();
                let tgt = src.iter().rev().map(|&s| s + 2).collect();
                Example { src, tgt }
            })
            .collect()
    };
    let train = make(6000);
    let dev = make(300);
    let a = Arch {
        spec: ModelSpec {
            d_model: 64,
            heads: 4,
            d_ff: 128,
            encoder_layers: 2,
            decoder_layers: 2,
            norm: Norm::Pre,
            tied_output: false,
            max_input_len: 16,
            max_output_len: 16,
            layer_norm_eps: 1e-5,
            conv_kernel: 0,
        },
        input_vocab: 11,
        output_vocab: 13,
    };
    let layout = Layout::new(&a).unwrap();
    let params = layout.init(0);
    let mut t = Trainer::new(layout.clone(), params, Moments::zeros(layout.total), 2, false);
    let mut h = test_hyper();
    h.batch_size = 64;
    h.warmup = 200;
    h.lr = 2e-3;
    let batches = super::batch::make_batches(&train, h.batch_size, 0);
    let epochs = 12u64;
    let total = epochs * batches.len() as u64;
    let mut step = 0;
    let start = std::time::Instant::now();
    let mut em = 0.0;
    for epoch in 1..=epochs {
        for &b in &super::batch::epoch_order(batches.len(), 0, epoch) {
            step += 1;
            let lr = super::optim::learning_rate(h.lr, step, h.warmup, total);
            let exs: Vec<&Example> = batches[b].iter().map(|&i| &train[i]).collect();
            t.step(&exs, &h, lr, step);
        }
        let model = TrainModel {
            layout: layout.clone(),
            params: t.params.clone(),
        };
        let preds = model.greedy(&dev.iter().map(|e| e.src.clone()).collect::<Vec<_>>());
        em = preds.iter().zip(&dev).filter(|(p, e)| **p == e.tgt).count() as f64 / dev.len() as f64;
        eprintln!(
            "epoch {epoch}: dev exact match {:.1}% after {:.1}s",
            100.0 * em,
            start.elapsed().as_secs_f64()
        );
        if em >= 0.98 {
            break;
        }
    }
    assert!(em >= 0.95, "dev exact match {em}");
}

/// The trainer's forward pass and the no_std engine compute the same model: on random checkpoints
/// (post-LN and pre-LN, tied and untied, with and without the encoder convolution) the f32 blob's logits agree within 1e-4 and greedy decoding
/// gives identical tokens.
#[test]
fn engine_and_trainer_agree_on_random_checkpoints() {
    use picoformer::{blob::writer, DecodeOptions, Model, Quant, Runner};
    for (i, a) in [
        arch(Norm::Post, false),
        arch(Norm::Pre, false),
        arch(Norm::Post, true),
        arch(Norm::Pre, true),
        conv_arch(Norm::Pre),
        conv_arch(Norm::Post),
    ]
    .into_iter()
    .enumerate()
    {
        let (norm, tied) = (a.spec.norm, a.spec.tied_output);
        let layout = Layout::new(&a).unwrap();
        let params = jittered(&layout, 40 + i as u64);
        let ck = Checkpoint {
            config: checkpoint::CheckpointConfig {
                format: checkpoint::FORMAT.into(),
                version: checkpoint::VERSION,
                model: layout.arch.spec.clone(),
                input_tokens: crate::tsv::Split::Chars,
                output_tokens: crate::tsv::Split::Chars,
                input_vocab: ["<pad>", "a", "b", "c", "d", "e", "f"].map(String::from).to_vec(),
                output_vocab: ["<pad>", "<s>", "</s>", "A", "B", "C", "D", "E", "F"]
                    .map(String::from)
                    .to_vec(),
                train: test_hyper(),
            },
            weights: checkpoint::Weights::from_params(&layout, &params),
        };
        let device = crate::export::DeviceOptions {
            quant: Quant::F32,
            kv_cache: Quant::F32,
            max_input_len: None,
            max_output_len: None,
        };
        let blob = writer::AlignedBytes::new(&crate::export::blob_of(&ck, &device).unwrap());
        let model = Model::from_blob(blob.as_bytes()).unwrap();
        let mut ws = writer::workspace(model.workspace_bytes(1));
        let mut runner = Runner::new(&model, ws.as_bytes_mut(), 1).unwrap();
        let trainer = TrainModel::from_checkpoint(&ck).unwrap();
        let inputs: Vec<Vec<u32>> = vec![
            vec![1, 2, 3],
            vec![4, 5, 6, 1, 2, 3, 4],
            vec![2],
            vec![6, 6, 5, 4, 3, 2, 1, 1, 2],
        ];
        let greedy = trainer.greedy(&inputs);
        let mut worst = 0.0f32;
        for (input, want) in inputs.iter().zip(&greedy) {
            let ids: Vec<u16> = input.iter().map(|&t| t as u16).collect();
            let dec: Vec<u16> = [1u16, 3, 5, 7, 4].to_vec();
            let expected = trainer.logits(input, &dec.iter().map(|&t| u32::from(t)).collect::<Vec<_>>());
            let mut got = Vec::new();
            runner
                .teacher_forced(&ids, &dec, &mut |_, l| got.extend_from_slice(l))
                .unwrap();
            assert_eq!(got.len(), expected.len());
            for (a, b) in got.iter().zip(&expected) {
                worst = worst.max((a - b).abs());
            }
            let mut out = [0u16; 16];
            let d = runner
                .translate_tokens(&ids, &DecodeOptions::greedy(), &mut out)
                .unwrap();
            let engine: Vec<u32> = out[..d.len].iter().map(|&t| u32::from(t)).collect();
            assert_eq!(&engine, want, "{norm:?} tied={tied} input {input:?}");
        }
        assert!(worst < 1e-4, "{norm:?} tied={tied}: logits differ by {worst}");
    }
}
