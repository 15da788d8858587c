//! The picoformer host tools as a library: every `picoformer` subcommand's implementation, so that
//! the binary (`src/main.rs`) and the integration tests share one copy of the code.

/// `picoformer bench`: engine throughput on the host, instruction counts on emulated boards.
pub mod bench;
/// `picoformer data`: synthetic tasks and the CMU Pronouncing Dictionary.
pub mod data;
/// Running the no_std engine on the host (loading blobs, parallel decoding).
pub mod engine;
/// `picoformer eval`: accuracy of a blob on a TSV.
pub mod eval;
/// `picoformer export`: checkpoints to blobs, checked against the trainer.
pub mod export;
/// Atomic file writes.
pub mod fsutil;
/// `picoformer inspect`: what a blob holds and needs.
pub mod inspect;
/// Exact match, WER and token error rate with reference variants.
pub mod metrics;
/// `picoformer plot`: training curves; attention maps.
pub mod plot;
/// `picoformer predict`: outputs for given inputs.
pub mod predict;
/// `picoformer qemu`: blobs on emulated Cortex-M boards.
pub mod qemu;
/// `picoformer train`: the trainer.
pub mod train;
/// Reading `input<TAB>output` files.
pub mod tsv;
