//! A loaded model: config, vocabularies and weight views over a validated blob.

use crate::blob;
use crate::config::Config;
use crate::error::BlobError;
use crate::vocab::Vocab;
use crate::weights::Weights;
use crate::workspace::WorkspaceLayout;

/// ln(10000), the base of the sinusoidal position encoding.
const LN_10000: f32 = 9.210_340_4;

/// Writes the sinusoidal encoding of position `pos` into `out` (`out.len()` = d_model):
/// `out[2i] = sin(pos * exp(-2i ln(10000) / d))`, `out[2i+1] = cos(..)`.
///
/// The trainer calls this same function, so training and inference agree to the bit.
#[inline(never)]
pub fn positional_encoding(pos: usize, out: &mut [f32]) {
    let d = out.len().max(1) as f32;
    for (i, pair) in out.chunks_mut(2).enumerate() {
        let freq = libm::expf(-((2 * i) as f32) * LN_10000 / d);
        let (s, c) = crate::math::sin_cos(pos as f32 * freq);
        let mut it = pair.iter_mut();
        if let Some(v) = it.next() {
            *v = s;
        }
        if let Some(v) = it.next() {
            *v = c;
        }
    }
}

/// A model whose weights stay in the blob (in flash on a microcontroller).
#[derive(Debug, Clone, Copy)]
pub struct Model<'b> {
    config: Config,
    vocab: Vocab<'b>,
    weights: Weights<'b>,
    blob_len: usize,
}

impl<'b> Model<'b> {
    /// Validates `blob` completely (see [`blob::parse`]) and returns views of its contents.
    /// The blob must start at a 4-byte aligned address (16 recommended).
    pub fn from_blob(blob: &'b [u8]) -> Result<Self, BlobError> {
        let parsed = blob::parse(blob)?;
        let config = parsed.config;
        Ok(Model {
            config,
            vocab: Vocab::new(
                parsed.input_vocab,
                parsed.output_vocab,
                config.input_split,
                config.output_split,
            ),
            weights: Weights::new(blob, parsed.dir, &config, parsed.i8_layout),
            blob_len: blob.len(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The vocabularies.
    pub fn vocab(&self) -> &Vocab<'b> {
        &self.vocab
    }

    /// The weight views.
    pub fn weights(&self) -> &Weights<'b> {
        &self.weights
    }

    /// The blob's format version (the lowest that describes this model, see [`blob::version_for`]).
    pub fn format_version(&self) -> u16 {
        blob::version_for(&self.config)
    }

    /// Bytes of the blob (what it occupies in flash).
    pub fn blob_bytes(&self) -> usize {
        self.blob_len
    }

    /// Number of parameters.
    pub fn param_count(&self) -> usize {
        self.config.param_count()
    }

    /// Exact workspace bytes a [`crate::Runner`] needs for beams up to `max_beam` wide.
    pub fn workspace_bytes(&self, max_beam: usize) -> usize {
        WorkspaceLayout::new(&self.config, max_beam).total_bytes()
    }

    /// The workspace broken down buffer by buffer.
    pub fn workspace_layout(&self, max_beam: usize) -> WorkspaceLayout {
        WorkspaceLayout::new(&self.config, max_beam)
    }
}
