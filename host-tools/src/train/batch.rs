//! Vocabularies, token ids, and padded batches sorted by length.

use std::collections::BTreeSet;

use crate::tsv::{Pair, Split};

use super::rng::{self, Rng};

/// Output id of `<s>`.
pub const START: u32 = 1;
/// Output id of `</s>`.
pub const END: u32 = 2;

/// Both vocabularies in id order (input id 0 is `<pad>`; output ids 0..3 are `<pad>`, `<s>`, `</s>`).
#[derive(Clone, Debug, PartialEq)]
pub struct Vocabs {
    /// Input symbols by id.
    pub input: Vec<String>,
    /// Output tokens by id.
    pub output: Vec<String>,
    /// How inputs are split.
    pub input_split: Split,
    /// How outputs are split.
    pub output_split: Split,
}

/// One training example as token ids (`tgt` without START/END).
#[derive(Clone, Debug)]
pub struct Example {
    /// Input ids.
    pub src: Vec<u32>,
    /// Output ids.
    pub tgt: Vec<u32>,
}

impl Vocabs {
    /// Builds sorted, unique vocabularies from the training pairs.
    pub fn build(pairs: &[Pair], input_split: Split, output_split: Split) -> Vocabs {
        let ins: BTreeSet<&str> = pairs.iter().flat_map(|p| input_split.tokens(&p.input)).collect();
        let outs: BTreeSet<&str> = pairs.iter().flat_map(|p| output_split.tokens(&p.output)).collect();
        let input = std::iter::once("<pad>").chain(ins).map(String::from).collect();
        let output = ["<pad>", "<s>", "</s>"]
            .into_iter()
            .chain(outs)
            .map(String::from)
            .collect();
        Vocabs {
            input,
            output,
            input_split,
            output_split,
        }
    }

    /// Input ids of `s`; symbols not in the vocabulary are dropped.
    pub fn encode_input(&self, s: &str) -> Vec<u32> {
        self.input_split
            .tokens(s)
            .iter()
            .filter_map(|t| lookup(&self.input[1..], t).map(|i| i as u32 + 1))
            .collect()
    }

    /// Output ids of `s`; tokens not in the vocabulary are dropped.
    pub fn encode_output(&self, s: &str) -> Vec<u32> {
        self.output_split
            .tokens(s)
            .iter()
            .filter_map(|t| lookup(&self.output[3..], t).map(|i| i as u32 + 3))
            .collect()
    }

    /// The strings of output ids.
    pub fn output_strings(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| self.output.get(i as usize).cloned().unwrap_or_else(|| "?".into()))
            .collect()
    }
}

fn lookup(sorted: &[String], t: &str) -> Option<usize> {
    sorted.binary_search_by(|s| s.as_str().cmp(t)).ok()
}

/// A padded batch: `batch` rows of `src_len` input ids and `tgt_len` decoder positions.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Examples.
    pub batch: usize,
    /// Padded input length.
    pub src_len: usize,
    /// Padded decoder length (longest output + 1).
    pub tgt_len: usize,
    /// `[batch, src_len]` input ids, PAD-padded.
    pub src: Vec<u32>,
    /// Real input length per example.
    pub src_lens: Vec<usize>,
    /// `[batch, tgt_len]` decoder inputs `[START, y1..yn]`, PAD-padded.
    pub dec_in: Vec<u32>,
    /// `[batch, tgt_len]` targets `[y1..yn, END]`, PAD-padded.
    pub dec_out: Vec<u32>,
    /// Real decoder length (n + 1) per example.
    pub tgt_lens: Vec<usize>,
}

impl Batch {
    /// Pads `examples` into one batch.
    pub fn new(examples: &[&Example]) -> Batch {
        let batch = examples.len();
        let src_len = examples.iter().map(|e| e.src.len()).max().unwrap_or(0).max(1);
        let tgt_len = examples.iter().map(|e| e.tgt.len() + 1).max().unwrap_or(1);
        let mut b = Batch {
            batch,
            src_len,
            tgt_len,
            src: vec![0; batch * src_len],
            src_lens: Vec::with_capacity(batch),
            dec_in: vec![0; batch * tgt_len],
            dec_out: vec![0; batch * tgt_len],
            tgt_lens: Vec::with_capacity(batch),
        };
        for (i, e) in examples.iter().enumerate() {
            b.src[i * src_len..i * src_len + e.src.len()].copy_from_slice(&e.src);
            b.src_lens.push(e.src.len().max(1));
            let row = i * tgt_len;
            b.dec_in[row] = START;
            b.dec_in[row + 1..row + 1 + e.tgt.len()].copy_from_slice(&e.tgt);
            b.dec_out[row..row + e.tgt.len()].copy_from_slice(&e.tgt);
            b.dec_out[row + e.tgt.len()] = END;
            b.tgt_lens.push(e.tgt.len() + 1);
        }
        b
    }
}

/// Groups examples into batches of similar length: sorted by (input length, output length, random
/// tie-break from `seed`), then cut into runs of `batch_size`. The batches stay fixed for the run;
/// only their order changes from epoch to epoch (see [`epoch_order`]).
pub fn make_batches(examples: &[Example], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut r = Rng::new(seed, rng::BATCHING, 0, 0);
    let mut keyed: Vec<(usize, usize, u64, usize)> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| (e.src.len(), e.tgt.len(), r.next_u64(), i))
        .collect();
    keyed.sort_unstable();
    keyed
        .chunks(batch_size.max(1))
        .map(|c| c.iter().map(|k| k.3).collect())
        .collect()
}

/// The order in which epoch `epoch` visits `n` batches: a shuffle derived from `(seed, epoch)`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed, rng::SHUFFLE, epoch, 0).shuffle(&mut order);
    order
}
