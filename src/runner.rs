//! The forward pass and decoding, readable top to bottom: embed, encode, then decode step by step.
//!
//! All state lives in the caller's workspace (see `workspace`). The encoder runs once per input
//! and projects the cross-attention keys and values of every decoder layer once; each decoder step
//! then appends one position to its beam's self-attention cache.

use crate::attention::{self, KvView};
use crate::config::{Config, NormPlacement, END, START};
use crate::error::{Error, SYMBOL_REPORT_BYTES};
use crate::kernels::{add_assign, argmax, layer_norm, layer_norm_into, log_softmax, relu};
use crate::model::{positional_encoding, Model};
use crate::profile::{self, Phase};
use crate::weights::{Activation, Attention, Ffn, Linear, Matrix, Norm};
use crate::workspace::{Buffers, Scratch};

/// The widest beam the engine supports (beam state lives in fixed-capacity `heapless` vectors).
pub const MAX_BEAM: usize = 8;

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Beam width; 1 is greedy decoding.
    pub beam_width: usize,
    /// Length normalization exponent: a finished hypothesis scores `log_prob / len^alpha`
    /// (len counts END). 0 disables normalization.
    pub length_alpha: f32,
}

impl DecodeOptions {
    /// Greedy decoding.
    pub const fn greedy() -> Self {
        DecodeOptions {
            beam_width: 1,
            length_alpha: 1.0,
        }
    }

    /// Beam search of width `n`, scores normalized by length.
    pub const fn beam(n: usize) -> Self {
        DecodeOptions {
            beam_width: n,
            length_alpha: 1.0,
        }
    }
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self::greedy()
    }
}

/// The result of decoding one input; the tokens are in the caller's output buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decoded {
    /// Output tokens written (END excluded).
    pub len: usize,
    /// True if decoding stopped at the maximum output length without END.
    pub truncated: bool,
    /// Sum of the tokens' log-probabilities (END included when produced).
    pub log_prob: f32,
}

/// Which attention weights an [`AttentionProbe`] receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The attention site.
    pub site: crate::tensors::Site,
    /// Block index within its stack.
    pub layer: usize,
    /// Head index.
    pub head: usize,
}

/// Receives attention weights during a probed run (greedy decoding only).
pub trait AttentionProbe {
    /// Called once per query position with that query's weights over the keys (they sum to 1).
    fn record(&mut self, query: usize, weights: &[f32]);
}

impl<F: FnMut(usize, &[f32])> AttentionProbe for F {
    fn record(&mut self, query: usize, weights: &[f32]) {
        self(query, weights)
    }
}

/// Where a probe is attached during one run.
type Probe<'p> = Option<(ProbeSpec, &'p mut dyn AttentionProbe)>;

fn probe_hit(probe: &mut Probe<'_>, site: crate::tensors::Site, layer: usize, n: usize, query: usize, scores: &[f32]) {
    if let Some((spec, p)) = probe {
        if spec.site == site && spec.layer == layer {
            if let Some(w) = scores.chunks_exact(n.max(1)).nth(spec.head) {
                p.record(query, w);
            }
        }
    }
}

/// `x = LN(x + y)` (post-LN) or `x = x + y` (pre-LN).
fn residual(cfg: &Config, x: &mut [f32], y: &[f32], norm: &Norm<'_>) {
    add_assign(x, y);
    if cfg.norm == NormPlacement::Post {
        let _p = profile::scope(Phase::LayerNorm);
        layer_norm(x, norm.gain, norm.shift, cfg.layer_norm_eps);
    }
}

/// The sublayer input: `LN(x)` into `out` (pre-LN) or `x` copied (post-LN).
fn sublayer_input(cfg: &Config, x: &[f32], norm: &Norm<'_>, out: &mut [f32]) {
    match cfg.norm {
        NormPlacement::Pre => {
            let _p = profile::scope(Phase::LayerNorm);
            layer_norm_into(x, norm.gain, norm.shift, cfg.layer_norm_eps, out);
        }
        NormPlacement::Post => out.copy_from_slice(x),
    }
}

/// `x = sublayer(FFN)`: `linear2(relu(linear1(in)))` with its residual and norm.
#[inline(never)]
fn feed_forward(cfg: &Config, x: &mut [f32], ffn: &Ffn<'_>, norm: &Norm<'_>, s: &mut Scratch<'_>) {
    sublayer_input(cfg, x, norm, s.a);
    ffn.l1.forward(&Activation::new(s.a, s.xq, cfg.quant), s.hidden);
    relu(s.hidden);
    ffn.l2.forward(&Activation::new(s.hidden, s.xq, cfg.quant), s.a);
    residual(cfg, x, s.a, norm);
}

/// `out = emb[token] * sqrt(d) + PE(pos)`.
#[inline(never)]
fn embed(emb: &Matrix<'_>, token: u16, pos: usize, out: &mut [f32], tmp: &mut [f32]) {
    let _p = profile::scope(Phase::Embed);
    emb.row_into(usize::from(token), out);
    positional_encoding(pos, tmp);
    let scale = crate::math::sqrt(out.len() as f32);
    out.iter_mut().zip(tmp.iter()).for_each(|(o, p)| *o = *o * scale + p);
}

/// Runs a [`Model`] with all its state in a caller-provided workspace.
pub struct Runner<'m, 'b, 'w> {
    model: &'m Model<'b>,
    max_beam: usize,
    buf: Buffers<'w>,
    input_len: usize,
}

/// One live beam hypothesis.
#[derive(Debug, Clone, Copy)]
struct Hyp {
    slot: usize,
    len: usize,
    score: f32,
}

/// A candidate extension of a hypothesis.
#[derive(Debug, Clone, Copy)]
struct Cand {
    parent: usize,
    token: u16,
    score: f32,
}

/// A finished hypothesis.
#[derive(Debug, Clone, Copy)]
struct Fin {
    slot: usize,
    len: usize,
    score: f32,
    norm: f32,
}

impl<'m, 'b, 'w> Runner<'m, 'b, 'w> {
    /// Carves a workspace for beams up to `max_beam` wide out of `workspace`, which must hold at
    /// least [`Model::workspace_bytes`]`(max_beam)` bytes and be 4-byte aligned.
    pub fn new(model: &'m Model<'b>, workspace: &'w mut [u8], max_beam: usize) -> Result<Self, Error> {
        if max_beam == 0 {
            return Err(Error::ZeroBeam);
        }
        if max_beam > MAX_BEAM {
            return Err(Error::BeamTooWide {
                requested: max_beam,
                max: MAX_BEAM,
            });
        }
        let buf = Buffers::carve(model.config(), max_beam, workspace)?;
        Ok(Runner {
            model,
            max_beam,
            buf,
            input_len: 0,
        })
    }

    /// The model this runner runs.
    pub fn model(&self) -> &'m Model<'b> {
        self.model
    }

    /// Widest beam this runner's workspace holds.
    pub fn max_beam(&self) -> usize {
        self.max_beam
    }

    /// Splits `input` into symbols, looks each up, and stores the ids. Errors name the unknown
    /// symbol or the lengths.
    fn tokenize(&mut self, input: &str) -> Result<usize, Error> {
        let vocab = *self.model.vocab();
        let max = self.model.config().max_input_len;
        let mut n = 0;
        for (position, symbol) in vocab.split_input(input).enumerate() {
            let Some(id) = vocab.input_id(symbol) else {
                let mut name = heapless::String::<SYMBOL_REPORT_BYTES>::new();
                for c in symbol.chars() {
                    if name.push(c).is_err() {
                        break;
                    }
                }
                return Err(Error::UnknownSymbol { position, symbol: name });
            };
            if let Some(slot) = self.buf.input_ids.get_mut(position) {
                *slot = id;
            }
            n = position + 1;
        }
        if n > max {
            return Err(Error::InputTooLong { len: n, max });
        }
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        Ok(n)
    }

    fn load_tokens(&mut self, ids: &[u16]) -> Result<usize, Error> {
        let cfg = self.model.config();
        if ids.is_empty() {
            return Err(Error::EmptyInput);
        }
        if ids.len() > cfg.max_input_len {
            return Err(Error::InputTooLong {
                len: ids.len(),
                max: cfg.max_input_len,
            });
        }
        if let Some(&token) = ids.iter().find(|&&t| t == 0 || usize::from(t) >= cfg.input_vocab) {
            return Err(Error::TokenOutOfRange {
                token,
                vocab: cfg.input_vocab,
            });
        }
        self.buf.input_ids.iter_mut().zip(ids).for_each(|(d, s)| *d = *s);
        Ok(ids.len())
    }

    /// Decodes a string: splits it into symbols, encodes it, and decodes into `out` (which must
    /// hold `max_output_len` tokens). Write the result as text with [`crate::Vocab::write_output`].
    pub fn translate(&mut self, input: &str, opts: &DecodeOptions, out: &mut [u16]) -> Result<Decoded, Error> {
        let n = self.tokenize(input)?;
        self.run(n, opts, out, None)
    }

    /// Decodes input token ids (1..input_vocab) into output token ids.
    pub fn translate_tokens(&mut self, input: &[u16], opts: &DecodeOptions, out: &mut [u16]) -> Result<Decoded, Error> {
        let n = self.load_tokens(input)?;
        self.run(n, opts, out, None)
    }

    /// Greedy decoding of `input` that hands `probe` the attention weights of one layer and head:
    /// one call per query position (decoder step, or encoder position for encoder self-attention).
    pub fn translate_probed(
        &mut self,
        input: &str,
        out: &mut [u16],
        spec: ProbeSpec,
        probe: &mut dyn AttentionProbe,
    ) -> Result<Decoded, Error> {
        let cfg = self.model.config();
        let layers = match spec.site {
            crate::tensors::Site::EncoderSelf => cfg.encoder_layers,
            _ => cfg.decoder_layers,
        };
        if spec.layer >= layers || spec.head >= cfg.heads {
            return Err(Error::BadProbe);
        }
        let n = self.tokenize(input)?;
        self.run(n, &DecodeOptions::greedy(), out, Some((spec, probe)))
    }

    /// Runs the decoder over a given `dec_input` (teacher forcing: START then target tokens) and
    /// hands `on_logits(position, logits)` the output logits at every position. For parity tests.
    pub fn teacher_forced(
        &mut self,
        input: &[u16],
        dec_input: &[u16],
        on_logits: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        let cfg = *self.model.config();
        if dec_input.len() > cfg.decoder_positions() {
            return Err(Error::OutputTooLong {
                len: dec_input.len(),
                max: cfg.decoder_positions(),
            });
        }
        if let Some(&token) = dec_input.iter().find(|&&t| usize::from(t) >= cfg.output_vocab) {
            return Err(Error::TokenOutOfRange {
                token,
                vocab: cfg.output_vocab,
            });
        }
        let n = self.load_tokens(input)?;
        self.encode(n, &mut None);
        for (pos, &token) in dec_input.iter().enumerate() {
            self.decode_step(0, pos, token, &mut None);
            on_logits(pos, self.buf.s.logits);
        }
        Ok(())
    }

    fn run(&mut self, n: usize, opts: &DecodeOptions, out: &mut [u16], mut probe: Probe<'_>) -> Result<Decoded, Error> {
        let cfg = self.model.config();
        if out.len() < cfg.max_output_len {
            return Err(Error::OutputBufferTooSmall {
                needed: cfg.max_output_len,
                given: out.len(),
            });
        }
        if opts.beam_width == 0 {
            return Err(Error::ZeroBeam);
        }
        if opts.beam_width > self.max_beam {
            return Err(Error::BeamTooWide {
                requested: opts.beam_width,
                max: self.max_beam,
            });
        }
        self.encode(n, &mut probe);
        if opts.beam_width == 1 {
            Ok(self.greedy(out, &mut probe))
        } else {
            Ok(self.beam(opts, out))
        }
    }

    /// The encoder: embeds the `n` input ids, runs every block, and projects the cross-attention
    /// keys and values of every decoder layer.
    #[inline(never)]
    fn encode(&mut self, n: usize, probe: &mut Probe<'_>) {
        let model = self.model;
        let cfg = model.config();
        let w = model.weights();
        let d = cfg.d_model;
        let rows = cfg.max_input_len * d;
        self.input_len = n;
        let Buffers {
            shared,
            s,
            input_ids,
            cross_k,
            cross_v,
            ..
        } = &mut self.buf;
        let (x, rest) = shared.split_at_mut(rows.min(shared.len()));
        let (k, rest) = rest.split_at_mut(rows.min(rest.len()));
        let v = rest;

        let emb = w.src_embedding();
        for (r, (xr, &id)) in x.chunks_exact_mut(d).zip(input_ids.iter()).take(n).enumerate() {
            embed(&emb, id, r, xr, s.a);
        }

        for l in 0..cfg.encoder_layers {
            let blk = w.encoder(l);
            // Keys and values of every position first, so each row's update below reads the
            // unchanged inputs of the others.
            for ((xr, kr), vr) in x
                .chunks_exact(d)
                .zip(k.chunks_exact_mut(d))
                .zip(v.chunks_exact_mut(d))
                .take(n)
            {
                sublayer_input(cfg, xr, &blk.norm1, s.a);
                let act = Activation::new(s.a, s.xq, cfg.quant);
                blk.attn.k.forward(&act, kr);
                blk.attn.v.forward(&act, vr);
            }
            for (r, xr) in x.chunks_exact_mut(d).take(n).enumerate() {
                self_attention_row(cfg, &blk.attn, &blk.norm1, xr, k, v, n, s);
                probe_hit(probe, crate::tensors::Site::EncoderSelf, l, n, r, s.scores);
                if blk.conv.is_none() {
                    feed_forward(cfg, xr, &blk.ffn, &blk.norm2, s);
                }
            }
            if let Some(conv) = &blk.conv {
                // Every position's sublayer input first (into the key buffer, free once attention
                // is done), then each row's update reads only those.
                for (xr, ir) in x.chunks_exact(d).zip(k.chunks_exact_mut(d)).take(n) {
                    sublayer_input(cfg, xr, &conv.norm, ir);
                }
                for (r, xr) in x.chunks_exact_mut(d).take(n).enumerate() {
                    {
                        let _p = profile::scope(Phase::Conv);
                        conv.row(k, n, r, s.a);
                    }
                    residual(cfg, xr, s.a, &conv.norm);
                    feed_forward(cfg, xr, &blk.ffn, &blk.norm2, s);
                }
            }
        }
        if let Some((enc_norm, _)) = w.final_norms(cfg) {
            let _p = profile::scope(Phase::LayerNorm);
            for xr in x.chunks_exact_mut(d).take(n) {
                layer_norm(xr, enc_norm.gain, enc_norm.shift, cfg.layer_norm_eps);
            }
        }

        // Cross-attention keys and values of every decoder layer, projected once per input, from
        // each position's output quantized once for all the layers.
        let (kv, rows, heads) = (cfg.kv_cache, cfg.max_input_len, cfg.heads);
        let per_layer = crate::workspace::cross_chunk_words(cfg);
        for (r, xr) in x.chunks_exact(d).take(n).enumerate() {
            let act = Activation::new(xr, s.xq, cfg.quant);
            let layers = cross_k
                .chunks_exact_mut(per_layer)
                .zip(cross_v.chunks_exact_mut(per_layer));
            for (l, (ck, cv)) in layers.enumerate() {
                let cross = w.cross_attention(l);
                cross.k.forward(&act, s.q);
                attention::write_row(ck, kv, rows, heads, r, s.q);
                cross.v.forward(&act, s.q);
                attention::write_row(cv, kv, rows, heads, r, s.q);
            }
        }
    }

    /// One decoder step for the hypothesis in cache `slot`: feeds `token` at position `pos`,
    /// appends its keys and values to the slot's cache, and leaves the logits in scratch.
    #[inline(never)]
    fn decode_step(&mut self, slot: usize, pos: usize, token: u16, probe: &mut Probe<'_>) {
        let model = self.model;
        let cfg = model.config();
        let w = model.weights();
        let n = self.input_len;
        let positions = cfg.decoder_positions();
        let slot_len = crate::workspace::self_chunk_words(cfg);
        let (kv, heads) = (cfg.kv_cache, cfg.heads);
        let Buffers {
            shared,
            s,
            x,
            cross_k,
            cross_v,
            ..
        } = &mut self.buf;
        let kv_half = cfg.decoder_layers * self.max_beam * slot_len;
        let (self_k, self_v) = shared.split_at_mut(kv_half.min(shared.len()));
        let cross_len = crate::workspace::cross_chunk_words(cfg);

        embed(&w.tgt_embedding(), token, pos, x, s.a);
        for l in 0..cfg.decoder_layers {
            let blk = w.decoder(l);
            let cache = l * self.max_beam + slot;
            let kc = self_k.chunks_exact_mut(slot_len).nth(cache).unwrap_or(&mut []);
            let vc = self_v.chunks_exact_mut(slot_len).nth(cache).unwrap_or(&mut []);

            // Masked self-attention: the cache holds positions 0..=pos only, which is the causal mask.
            sublayer_input(cfg, x, &blk.norm1, s.a);
            {
                let act = Activation::new(s.a, s.xq, cfg.quant);
                blk.self_attn.q.forward(&act, s.q);
                blk.self_attn.k.forward(&act, s.ctx);
                attention::write_row(kc, kv, positions, heads, pos, s.ctx);
                blk.self_attn.v.forward(&act, s.ctx);
                attention::write_row(vc, kv, positions, heads, pos, s.ctx);
            }
            let (keys, values) = (
                attention::view(kc, kv, positions, heads),
                attention::view(vc, kv, positions, heads),
            );
            attention::attend(s.q, keys, values, pos + 1, heads, s.scores, s.ctx);
            probe_hit(probe, crate::tensors::Site::DecoderSelf, l, pos + 1, pos, s.scores);
            blk.self_attn.o.forward(&Activation::new(s.ctx, s.xq, cfg.quant), s.a);
            residual(cfg, x, s.a, &blk.norm1);

            // Cross-attention over the encoder output's projected keys and values.
            let ck = cross_k.chunks_exact(cross_len).nth(l).unwrap_or(&[]);
            let cv = cross_v.chunks_exact(cross_len).nth(l).unwrap_or(&[]);
            sublayer_input(cfg, x, &blk.norm2, s.a);
            blk.cross.q.forward(&Activation::new(s.a, s.xq, cfg.quant), s.q);
            let rows = cfg.max_input_len;
            let (keys, values) = (
                attention::view(ck, kv, rows, heads),
                attention::view(cv, kv, rows, heads),
            );
            attention::attend(s.q, keys, values, n, heads, s.scores, s.ctx);
            probe_hit(probe, crate::tensors::Site::DecoderCross, l, n, pos, s.scores);
            blk.cross.o.forward(&Activation::new(s.ctx, s.xq, cfg.quant), s.a);
            residual(cfg, x, s.a, &blk.norm2);

            feed_forward(cfg, x, &blk.ffn, &blk.norm3, s);
        }
        if let Some((_, dec_norm)) = w.final_norms(cfg) {
            let _p = profile::scope(Phase::LayerNorm);
            layer_norm(x, dec_norm.gain, dec_norm.shift, cfg.layer_norm_eps);
        }
        let out: Linear<'_> = w.output(cfg);
        out.forward(&Activation::new(x, s.xq, cfg.quant), s.logits);
    }

    /// Greedy decoding: the most probable token at every step, until END or `max_output_len`.
    #[inline(never)]
    fn greedy(&mut self, out: &mut [u16], probe: &mut Probe<'_>) -> Decoded {
        let max = self.model.config().max_output_len;
        let mut token = START;
        let mut log_prob = 0.0;
        for pos in 0..=max {
            self.decode_step(0, pos, token, probe);
            let _p = profile::scope(Phase::Output);
            let logits = &mut *self.buf.s.logits;
            log_softmax(logits);
            // PAD and START are never produced.
            let best = argmax(logits.get(usize::from(END)..).unwrap_or(&[])) + usize::from(END);
            let lp = logits.get(best).copied().unwrap_or(0.0);
            token = best as u16;
            if token == END {
                return Decoded {
                    len: pos,
                    truncated: false,
                    log_prob: log_prob + lp,
                };
            }
            let Some(slot) = out.get_mut(pos).filter(|_| pos < max) else {
                break;
            };
            *slot = token;
            log_prob += lp;
        }
        Decoded {
            len: max,
            truncated: true,
            log_prob,
        }
    }

    /// Beam search with length-normalized scores. Each live hypothesis owns one cache slot; when
    /// a parent has several surviving children, the first keeps the parent's slot and the others
    /// take the slots of dropped hypotheses, so no copy ever overwrites a slot still being read.
    #[inline(never)]
    fn beam(&mut self, opts: &DecodeOptions, out: &mut [u16]) -> Decoded {
        let cfg = *self.model.config();
        let width = opts.beam_width.clamp(1, self.max_beam);
        let max = cfg.max_output_len;
        let mut alive: heapless::Vec<Hyp, MAX_BEAM> = heapless::Vec::new();
        let mut finished: heapless::Vec<Fin, MAX_BEAM> = heapless::Vec::new();
        let _ = alive.push(Hyp {
            slot: 0,
            len: 0,
            score: 0.0,
        });
        let norm = |score: f32, len: usize| score / libm::powf(len.max(1) as f32, opts.length_alpha);

        for pos in 0..=max {
            let mut cands: heapless::Vec<Cand, { 2 * MAX_BEAM }> = heapless::Vec::new();
            for (parent, h) in alive.iter().enumerate() {
                let token = if pos == 0 {
                    START
                } else {
                    self.token_of(h.slot, pos - 1)
                };
                self.decode_step(h.slot, pos, token, &mut None);
                let _p = profile::scope(Phase::Output);
                let logits = &mut *self.buf.s.logits;
                log_softmax(logits);
                for (t, &lp) in logits.iter().enumerate().skip(usize::from(END)) {
                    insert_candidate(
                        &mut cands,
                        2 * width,
                        Cand {
                            parent,
                            token: t as u16,
                            score: h.score + lp,
                        },
                    );
                }
            }
            let mut next: heapless::Vec<(usize, u16, f32), MAX_BEAM> = heapless::Vec::new();
            for (rank, c) in cands.iter().enumerate() {
                let Some(parent) = alive.get(c.parent).copied() else {
                    continue;
                };
                if c.token == END {
                    if rank < width && finished.len() < width {
                        let fin_slot = finished.len();
                        self.save_finished(parent.slot, parent.len, fin_slot);
                        let len = parent.len + 1;
                        let _ = finished.push(Fin {
                            slot: fin_slot,
                            len: parent.len,
                            score: c.score,
                            norm: norm(c.score, len),
                        });
                    }
                } else if next.len() < width {
                    let _ = next.push((c.parent, c.token, c.score));
                }
            }
            if finished.len() >= width || next.is_empty() || pos == max {
                break;
            }
            alive = self.reassign_slots(&alive, &next);
        }

        let best = finished
            .iter()
            .copied()
            .reduce(|a, b| if b.norm > a.norm { b } else { a });
        if let Some(f) = best {
            let src = self.buf.done_tokens.chunks_exact(max.max(1)).nth(f.slot).unwrap_or(&[]);
            out.iter_mut().zip(src).take(f.len).for_each(|(o, t)| *o = *t);
            return Decoded {
                len: f.len,
                truncated: false,
                log_prob: f.score,
            };
        }
        let best = alive
            .iter()
            .copied()
            .reduce(|a, b| if b.score > a.score { b } else { a });
        let h = best.unwrap_or(Hyp {
            slot: 0,
            len: 0,
            score: 0.0,
        });
        let src = self.buf.beam_tokens.chunks_exact(max.max(1)).nth(h.slot).unwrap_or(&[]);
        out.iter_mut().zip(src).take(h.len).for_each(|(o, t)| *o = *t);
        Decoded {
            len: h.len,
            truncated: true,
            log_prob: h.score,
        }
    }

    fn token_of(&self, slot: usize, i: usize) -> u16 {
        let max = self.model.config().max_output_len.max(1);
        self.buf
            .beam_tokens
            .chunks_exact(max)
            .nth(slot)
            .and_then(|t| t.get(i))
            .copied()
            .unwrap_or(START)
    }

    fn save_finished(&mut self, slot: usize, len: usize, fin: usize) {
        let max = self.model.config().max_output_len.max(1);
        let src = self.buf.beam_tokens.chunks_exact(max).nth(slot).unwrap_or(&[]);
        let dst = self.buf.done_tokens.chunks_exact_mut(max).nth(fin).unwrap_or(&mut []);
        dst.iter_mut().zip(src).take(len).for_each(|(d, s)| *d = *s);
    }

    /// Gives every surviving extension a cache slot, copying caches and token prefixes where a
    /// parent has more than one child, then appends each extension's token.
    fn reassign_slots(&mut self, alive: &[Hyp], next: &[(usize, u16, f32)]) -> heapless::Vec<Hyp, MAX_BEAM> {
        let mut parent_used: heapless::Vec<bool, MAX_BEAM> = alive.iter().map(|_| false).collect();
        let mut slot_busy = [false; MAX_BEAM];
        let mut result: heapless::Vec<Hyp, MAX_BEAM> = heapless::Vec::new();
        let mut needs_slot: heapless::Vec<usize, MAX_BEAM> = heapless::Vec::new();
        // First child of each parent keeps the parent's slot.
        for (i, &(parent, _, score)) in next.iter().enumerate() {
            let (Some(p), Some(used)) = (alive.get(parent), parent_used.get_mut(parent)) else {
                continue;
            };
            if !*used {
                *used = true;
                if let Some(b) = slot_busy.get_mut(p.slot) {
                    *b = true;
                }
                let _ = result.push(Hyp {
                    slot: p.slot,
                    len: p.len,
                    score,
                });
            } else {
                let _ = result.push(Hyp {
                    slot: usize::MAX,
                    len: p.len,
                    score,
                });
                let _ = needs_slot.push(i);
            }
        }
        // The others take free slots (slots of dropped hypotheses or never used).
        for &i in &needs_slot {
            let Some(free) = slot_busy.iter().take(self.max_beam).position(|b| !b) else {
                continue;
            };
            if let Some(b) = slot_busy.get_mut(free) {
                *b = true;
            }
            let parent_slot = next.get(i).and_then(|&(p, _, _)| alive.get(p)).map_or(0, |h| h.slot);
            self.copy_slot(parent_slot, free);
            if let Some(h) = result.get_mut(i) {
                h.slot = free;
            }
        }
        // Append each extension's token.
        let max = self.model.config().max_output_len.max(1);
        for (h, &(_, token, _)) in result.iter_mut().zip(next) {
            if let Some(t) = self
                .buf
                .beam_tokens
                .chunks_exact_mut(max)
                .nth(h.slot)
                .and_then(|t| t.get_mut(h.len))
            {
                *t = token;
            }
            h.len += 1;
        }
        result
    }

    /// Copies the self-attention caches (every layer's keys and values) and the token prefix of
    /// slot `from` into slot `to`.
    fn copy_slot(&mut self, from: usize, to: usize) {
        let cfg = self.model.config();
        let chunk = crate::workspace::self_chunk_words(cfg);
        for l in 0..cfg.decoder_layers * 2 {
            // Caches are [k | v], each [layer][slot] chunks.
            let base = l * self.max_beam;
            copy_chunk(self.buf.shared, chunk, base + from, base + to);
        }
        let max = cfg.max_output_len.max(1);
        copy_chunk(self.buf.beam_tokens, max, from, to);
    }
}

/// Keeps `cands` sorted by descending score with at most `cap` entries; ties keep insertion order.
fn insert_candidate(cands: &mut heapless::Vec<Cand, { 2 * MAX_BEAM }>, cap: usize, c: Cand) {
    let at = cands.iter().position(|x| c.score > x.score).unwrap_or(cands.len());
    if at >= cap {
        return;
    }
    if cands.len() >= cap {
        cands.pop();
    }
    let _ = cands.insert(at, c);
}

/// Copies chunk `from` of `buf` (chunks of `chunk` elements) over chunk `to`; out-of-range
/// indices (impossible: slots are below the runner's beam width) copy nothing.
fn copy_chunk<T: Copy>(buf: &mut [T], chunk: usize, from: usize, to: usize) {
    let (src, dst) = (from * chunk, to * chunk);
    if from != to && buf.get(src..src + chunk).is_some() && buf.get(dst..dst + chunk).is_some() {
        buf.copy_within(src..src + chunk, dst);
    }
}

/// Self-attention of one encoder row over all `n` keys/values, its output projection, and the
/// residual with its norm.
#[allow(clippy::too_many_arguments)]
fn self_attention_row(
    cfg: &Config,
    attn: &Attention<'_>,
    norm: &Norm<'_>,
    xr: &mut [f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    s: &mut Scratch<'_>,
) {
    sublayer_input(cfg, xr, norm, s.a);
    attn.q.forward(&Activation::new(s.a, s.xq, cfg.quant), s.q);
    attention::attend(s.q, KvView::F32(k), KvView::F32(v), n, cfg.heads, s.scores, s.ctx);
    attn.o.forward(&Activation::new(s.ctx, s.xq, cfg.quant), s.a);
    residual(cfg, xr, s.a, norm);
}
