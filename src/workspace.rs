//! All mutable state of a run, carved out of one caller-provided byte buffer.
//!
//! The layout follows from the config alone, so [`WorkspaceLayout::total_bytes`] is exact. The
//! encoder's bulk buffers (activations, keys, values of every input position) are only needed
//! until the cross-attention keys and values are projected, so they share memory with the
//! decoder's self-attention cache.

use crate::config::Config;
use crate::error::Error;

/// Byte sizes of every buffer, for a config and a maximum beam width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceLayout {
    /// Cross-attention keys and values: 2 x decoder layers x max input rows (f32, or int8 with a
    /// scale per row and head; see `attention::chunk_words`).
    pub cross_kv: usize,
    /// Shared region: max(encoder activations/keys/values, decoder self-attention cache).
    pub shared: usize,
    /// Of which the encoder needs: 3 x max input x d_model f32.
    pub encoder_bulk: usize,
    /// Of which the decoder self-attention cache needs: 2 x layers x beams x positions rows.
    pub self_kv: usize,
    /// Per-vector scratch: 4 x d_model + d_ff + heads x max(positions) + output vocab f32, plus the
    /// int8 copy of one activation vector and its expansion into halfwords (3 bytes per value).
    pub scratch: usize,
    /// Token buffers: input ids, live beams' tokens, finished hypotheses' tokens (u16).
    pub tokens: usize,
}

const F32: usize = 4;

fn round4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl WorkspaceLayout {
    /// The layout for `cfg` with beams up to `max_beam` wide.
    pub fn new(cfg: &Config, max_beam: usize) -> Self {
        let d = cfg.d_model;
        let beams = max_beam.max(1);
        let positions = cfg.decoder_positions();
        let cross_kv = 2 * cfg.decoder_layers * cross_chunk_words(cfg) * F32;
        let encoder_bulk = 3 * cfg.max_input_len * d * F32;
        let self_kv = 2 * cfg.decoder_layers * beams * self_chunk_words(cfg) * F32;
        let scores = cfg.heads * cfg.max_input_len.max(positions);
        let scratch = (4 * d + cfg.d_ff + scores + cfg.output_vocab) * F32 + xq_bytes(d.max(cfg.d_ff));
        let tokens = round4(2 * cfg.max_input_len) + 2 * round4(2 * beams * cfg.max_output_len);
        WorkspaceLayout {
            cross_kv,
            shared: encoder_bulk.max(self_kv),
            encoder_bulk,
            self_kv,
            scratch,
            tokens,
        }
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> usize {
        self.cross_kv + self.shared + self.scratch + self.tokens
    }
}

/// f32 words of one cross-attention cache chunk (one layer's keys or values of every input position).
pub(crate) fn cross_chunk_words(cfg: &Config) -> usize {
    crate::attention::chunk_words(cfg.kv_cache, cfg.max_input_len, cfg.d_model, cfg.heads)
}

/// f32 words of one self-attention cache chunk (one layer's keys or values of one beam).
pub(crate) fn self_chunk_words(cfg: &Config) -> usize {
    crate::attention::chunk_words(cfg.kv_cache, cfg.decoder_positions(), cfg.d_model, cfg.heads)
}

/// Bytes of the int8 activation scratch for vectors of up to `n` values: the int8 copy, then (at a
/// 4-byte aligned offset) the expanded halfword pairs the DSP kernel reads (see
/// `weights::Activation`).
fn xq_bytes(n: usize) -> usize {
    round4(n) + 2 * round4(n)
}

/// Splits `n` elements of `T` off the front of `rest` (the byte count rounded up to 4).
fn take<'a, T: bytemuck::Pod>(rest: &mut &'a mut [u8], n: usize) -> Result<&'a mut [T], Error> {
    let bytes = n * core::mem::size_of::<T>();
    let buf = core::mem::take(rest);
    let (head, tail) = buf
        .split_at_mut_checked(round4(bytes))
        .ok_or(Error::WorkspaceMisaligned)?;
    *rest = tail;
    let head = head.get_mut(..bytes).ok_or(Error::WorkspaceMisaligned)?;
    bytemuck::try_cast_slice_mut(head).map_err(|_| Error::WorkspaceMisaligned)
}

/// Per-vector scratch buffers.
pub(crate) struct Scratch<'w> {
    pub a: &'w mut [f32],
    pub q: &'w mut [f32],
    pub ctx: &'w mut [f32],
    pub hidden: &'w mut [f32],
    pub scores: &'w mut [f32],
    pub logits: &'w mut [f32],
    pub xq: &'w mut [i8],
}

/// The carved workspace.
pub(crate) struct Buffers<'w> {
    pub cross_k: &'w mut [f32],
    pub cross_v: &'w mut [f32],
    /// Encoder bulk or decoder self-attention cache.
    pub shared: &'w mut [f32],
    /// The decoder's residual stream.
    pub x: &'w mut [f32],
    pub s: Scratch<'w>,
    pub input_ids: &'w mut [u16],
    pub beam_tokens: &'w mut [u16],
    pub done_tokens: &'w mut [u16],
}

impl<'w> Buffers<'w> {
    /// Carves `buf` for `cfg` and `max_beam`. Fails if `buf` is too small or misaligned.
    pub fn carve(cfg: &Config, max_beam: usize, buf: &'w mut [u8]) -> Result<Self, Error> {
        let layout = WorkspaceLayout::new(cfg, max_beam);
        let needed = layout.total_bytes();
        if buf.len() < needed {
            return Err(Error::WorkspaceTooSmall {
                needed,
                given: buf.len(),
            });
        }
        if !(buf.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::WorkspaceMisaligned);
        }
        let d = cfg.d_model;
        let beams = max_beam.max(1);
        let kv = cfg.decoder_layers * cross_chunk_words(cfg);
        let scores = cfg.heads * cfg.max_input_len.max(cfg.decoder_positions());
        let mut rest = buf;
        let r = &mut rest;
        Ok(Buffers {
            cross_k: take(r, kv)?,
            cross_v: take(r, kv)?,
            shared: take(r, layout.shared / F32)?,
            x: take(r, d)?,
            s: Scratch {
                a: take(r, d)?,
                q: take(r, d)?,
                ctx: take(r, d)?,
                hidden: take(r, cfg.d_ff)?,
                scores: take(r, scores)?,
                logits: take(r, cfg.output_vocab)?,
                xq: take(r, xq_bytes(d.max(cfg.d_ff)))?,
            },
            input_ids: take(r, cfg.max_input_len)?,
            beam_tokens: take(r, beams * cfg.max_output_len)?,
            done_tokens: take(r, beams * cfg.max_output_len)?,
        })
    }
}
