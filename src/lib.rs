//! # picoformer
//!
//! A `no_std`, allocation-free encoder-decoder Transformer ("Attention Is All You Need") that runs
//! a trained model from a checksummed blob in place (in flash on a microcontroller), with f32 or
//! int8 weights, greedy or beam decoding, and every buffer sized from the model's config.
//!
//! ```no_run
//! # fn demo(blob: &[u8]) -> Result<(), picoformer::Error> {
//! use picoformer::{DecodeOptions, Model, Runner};
//! let model = Model::from_blob(blob)?;
//! let mut buf = vec![0u32; model.workspace_bytes(1) / 4 + 1]; // any 4-byte aligned buffer
//! let mut runner = Runner::new(&model, bytemuck::cast_slice_mut(&mut buf), 1)?;
//! let mut out = [0u16; 64];
//! let decoded = runner.translate("hello", &DecodeOptions::greedy(), &mut out)?;
//! let mut text = String::new();
//! model.vocab().write_output(&out[..decoded.len], &mut text).ok();
//! # Ok(()) }
//! ```
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("picoformer views little-endian blobs in place and supports little-endian targets only");

#[cfg(feature = "std")]
extern crate std;

pub mod attention;
pub mod blob;
pub mod config;
pub mod error;
pub mod kernels;
pub mod math;
pub mod model;
pub mod profile;
pub mod quant;
pub mod runner;
pub mod tensors;
pub mod vocab;
pub mod weights;
pub mod workspace;

pub use blob::FORMAT_VERSION;
pub use config::{Config, NormPlacement, Quant, Split};
pub use error::{BlobError, Error};
pub use model::Model;
pub use runner::{AttentionProbe, DecodeOptions, Decoded, ProbeSpec, Runner, MAX_BEAM};
pub use tensors::{Site, TensorId};
pub use vocab::Vocab;
pub use workspace::WorkspaceLayout;
