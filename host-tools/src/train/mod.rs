//! `picoformer train`: a dedicated f32 trainer with hand-written forward and backward passes.
//!
//! One module per job: [`args`] (flags and `--config`), [`batch`] (vocabularies, length-sorted padded
//! batches), [`params`] (hyper-parameters, flat parameter layout, initialisation), [`layers`] (matrix
//! products, linear, LayerNorm, ReLU, dropout), [`attention`], [`loss`] (smoothed cross-entropy),
//! [`model`] (the forward/backward "tape"), [`decode`] (batched greedy decoding with a KV cache),
//! [`optim`] (AdamW, clipping, schedule), [`qat`] (int8 fake quantization), [`checkpoint`] (the
//! checkpoint directory), [`average`] (checkpoint averaging) and [`rng`] (counter-based randomness, so a resumed run is bit-identical).
//! Both cores are used by splitting each batch into one shard per thread (data parallelism).

mod args;
mod attention;
mod average;
mod batch;
mod checkpoint;
mod decode;
mod layers;
mod loss;
mod model;
mod optim;
mod params;
mod profile;
mod qat;
mod rng;
mod session;
#[cfg(test)]
mod tests;

use anyhow::Result;

pub use args::TrainArgs;
pub use average::{run as average, AverageArgs};
// The API `export` and `eval` build on (see the module docs).
#[allow(unused_imports)]
pub use batch::Vocabs;
#[allow(unused_imports)]
pub use checkpoint::{Checkpoint, CheckpointConfig, Weights, Which};
#[allow(unused_imports)]
pub use params::{ModelSpec, Norm};

use batch::Batch;
use model::{Net, Tape};
use params::Layout;

/// A model held in the trainer's own layout, for evaluation-mode inference (used by export checks
/// and evaluation).
pub struct TrainModel {
    layout: Layout,
    params: Vec<f32>,
}

impl TrainModel {
    /// Builds the model of a loaded checkpoint.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self> {
        let layout = Layout::new(&ck.config.arch())?;
        let params = ck.weights.to_params(&layout);
        Ok(TrainModel { layout, params })
    }

    /// Logits `[dec_input.len() x out_vocab]`, row-major, for one example in evaluation mode (no
    /// dropout). `dec_input` is what the decoder reads, normally `[START, y1 .. yk]`.
    pub fn logits(&self, input: &[u32], dec_input: &[u32]) -> Vec<f32> {
        let mut layout;
        let mut l = &self.layout;
        let need = input.len().max(dec_input.len());
        if l.pe.len() < need * l.d() {
            layout = self.layout.clone();
            layout.ensure_positions(need);
            l = &layout;
        }
        let bt = Batch {
            batch: 1,
            src_len: input.len().max(1),
            tgt_len: dec_input.len(),
            src: if input.is_empty() { vec![0] } else { input.to_vec() },
            src_lens: vec![input.len().max(1)],
            dec_in: dec_input.to_vec(),
            dec_out: vec![0; dec_input.len()],
            tgt_lens: vec![dec_input.len()],
        };
        let net = Net { l, p: &self.params };
        let mut tape = Tape::default();
        tape.forward(net, &bt, None);
        tape.all_logits(net)
    }

    /// Greedy decoding of many inputs (token ids), batched over both cores; the results hold neither
    /// START nor END.
    pub fn greedy(&self, inputs: &[Vec<u32>]) -> Vec<Vec<u32>> {
        decode::greedy(
            Net {
                l: &self.layout,
                p: &self.params,
            },
            inputs,
        )
    }
}

/// Runs `picoformer train`.
pub fn run(args: TrainArgs) -> Result<()> {
    session::run(args)
}
