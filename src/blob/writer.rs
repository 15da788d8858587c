//! The blob writer: the mirror image of [`super::parse`], used by the exporter and by tests.

// Host-only code (behind `std`), not the inference path: indexing into buffers it just sized is fine.
#![allow(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use super::*;
use crate::config::{Config, NormPlacement, Quant, Split};
use crate::kernels::panel::to_panels;
use crate::quant::quantize_row;
use crate::tensors::{Layout, TensorId};
pub use crate::weights::I8Layout;

/// Why a blob could not be written.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// A tensor the config requires was not supplied.
    MissingTensor(String),
    /// A tensor has the wrong number of elements.
    WrongLength {
        /// Tensor name.
        name: String,
        /// Elements the config requires.
        expected: usize,
        /// Elements supplied.
        found: usize,
    },
    /// A tensor holds NaN or infinity.
    NonFinite(String),
    /// A vocabulary's size differs from the config's.
    VocabSize {
        /// "input" or "output".
        side: &'static str,
        /// Size in the config.
        expected: usize,
        /// Entries supplied.
        found: usize,
    },
    /// A vocabulary entry longer than 255 bytes, or an input symbol that is not one character in
    /// character mode, or contains a space.
    BadEntry {
        /// "input" or "output".
        side: &'static str,
        /// The entry.
        entry: String,
    },
    /// A config value does not fit the format's fields.
    ConfigOutOfRange(&'static str),
    /// The blob would exceed 4 GiB.
    TooLarge,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::MissingTensor(n) => write!(f, "tensor {n} is missing"),
            WriteError::WrongLength { name, expected, found } => {
                write!(f, "tensor {name} has {found} elements, the config requires {expected}")
            }
            WriteError::NonFinite(n) => write!(f, "tensor {n} holds NaN or infinity"),
            WriteError::VocabSize { side, expected, found } => {
                write!(f, "{side} vocabulary has {found} entries, the config says {expected}")
            }
            WriteError::BadEntry { side, entry } => {
                write!(f, "{side} vocabulary entry {entry:?} is not valid")
            }
            WriteError::ConfigOutOfRange(field) => {
                write!(f, "config field {field} does not fit the blob format")
            }
            WriteError::TooLarge => write!(f, "blob would exceed 4 GiB"),
        }
    }
}

impl std::error::Error for WriteError {}

/// Where the writer finds each tensor's f32 values (row-major, PyTorch `[out, in]`).
pub trait TensorSource {
    /// The values of the tensor called `name` (see [`TensorId`]'s `Display`).
    fn tensor(&self, name: &str) -> Option<&[f32]>;
}

impl TensorSource for HashMap<String, Vec<f32>> {
    fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.get(name).map(Vec::as_slice)
    }
}

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

fn put_u16(buf: &mut [u8], r: core::ops::Range<usize>, v: usize, name: &'static str) -> Result<(), WriteError> {
    let v = u16::try_from(v).map_err(|_| WriteError::ConfigOutOfRange(name))?;
    buf[r].copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn put_u32(buf: &mut [u8], r: core::ops::Range<usize>, v: usize) -> Result<(), WriteError> {
    let v = u32::try_from(v).map_err(|_| WriteError::TooLarge)?;
    buf[r].copy_from_slice(&v.to_le_bytes());
    Ok(())
}

fn write_vocab(
    buf: &mut Vec<u8>,
    entries: &[&str],
    side: &'static str,
    expected: usize,
    chars: bool,
) -> Result<(), WriteError> {
    if entries.len() != expected {
        return Err(WriteError::VocabSize {
            side,
            expected,
            found: entries.len(),
        });
    }
    for (i, e) in entries.iter().enumerate() {
        let bad_input =
            side == "input" && i > 0 && (e.is_empty() || e.contains(' ') || (chars && e.chars().count() != 1));
        if e.len() > 255 || bad_input {
            return Err(WriteError::BadEntry {
                side,
                entry: e.to_string(),
            });
        }
        buf.push(e.len() as u8);
        buf.extend_from_slice(e.as_bytes());
    }
    Ok(())
}

/// Choices of [`write_blob_with`] that do not change what the model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Order of int8 matrices: [`I8Layout::Panels`] (the default, flag [`FLAG_I8_PANELS`], what
    /// the DSP kernel reads) or [`I8Layout::RowMajor`]. Ignored for f32 blobs.
    pub i8_layout: I8Layout,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            i8_layout: I8Layout::Panels,
        }
    }
}

/// Writes a blob for `cfg` (f32 or int8 per `cfg.quant`) from vocabularies and f32 tensors, with
/// the default [`WriteOptions`] (int8 matrices in 4-row panels).
///
/// Int8 quantizes every matrix (embeddings included) per row with [`quantize_row`]; vectors stay f32.
pub fn write_blob(
    cfg: &Config,
    input_vocab: &[&str],
    output_vocab: &[&str],
    tensors: &dyn TensorSource,
) -> Result<Vec<u8>, WriteError> {
    write_blob_with(cfg, input_vocab, output_vocab, tensors, &WriteOptions::default())
}

/// [`write_blob`] with explicit [`WriteOptions`].
pub fn write_blob_with(
    cfg: &Config,
    input_vocab: &[&str],
    output_vocab: &[&str],
    tensors: &dyn TensorSource,
    opts: &WriteOptions,
) -> Result<Vec<u8>, WriteError> {
    let panels = cfg.quant == Quant::Int8 && opts.i8_layout == I8Layout::Panels;
    let mut buf = vec![0u8; HEADER_BYTES];
    write_vocab(
        &mut buf,
        input_vocab,
        "input",
        cfg.input_vocab,
        cfg.input_split == Split::Chars,
    )?;
    write_vocab(&mut buf, output_vocab, "output", cfg.output_vocab, false)?;
    let vocab_bytes = buf.len() - HEADER_BYTES;
    pad_to(&mut buf, ALIGN);
    let dir_offset = buf.len();
    let layout = Layout::of(cfg);
    buf.resize(dir_offset + layout.count * DIR_ENTRY_BYTES, 0);
    pad_to(&mut buf, ALIGN);

    let mut entries = Vec::with_capacity(layout.count);
    for id in TensorId::all(cfg) {
        let name = id.to_string();
        let values = tensors
            .tensor(&name)
            .ok_or_else(|| WriteError::MissingTensor(name.clone()))?;
        let (rows, cols) = id.shape(cfg);
        if values.len() != rows * cols {
            return Err(WriteError::WrongLength {
                name,
                expected: rows * cols,
                found: values.len(),
            });
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(WriteError::NonFinite(name));
        }
        let offset = buf.len();
        let int8 = cfg.quant == Quant::Int8 && id.is_matrix();
        let (dtype, scales) = if int8 {
            let mut q = vec![0i8; rows * cols];
            let mut s = Vec::with_capacity(rows);
            for (row, out) in values.chunks_exact(cols).zip(q.chunks_exact_mut(cols)) {
                s.push(quantize_row(row, out));
            }
            if panels {
                let mut p = vec![0i8; rows * cols];
                to_panels(&q, cols, &mut p);
                q = p;
            }
            buf.extend(q.iter().map(|&v| v as u8));
            pad_to(&mut buf, ALIGN);
            let scales_offset = buf.len();
            s.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
            (DTYPE_I8, scales_offset)
        } else {
            values.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
            (DTYPE_F32, 0)
        };
        pad_to(&mut buf, ALIGN);
        entries.push(DirEntry {
            code: id.code(),
            layer: id.layer,
            dtype,
            reserved: [0; 3],
            rows: rows as u32,
            cols: cols as u32,
            offset: u32::try_from(offset).map_err(|_| WriteError::TooLarge)?,
            scales: u32::try_from(scales).map_err(|_| WriteError::TooLarge)?,
        });
    }
    let dir: &[u8] = bytemuck::cast_slice(&entries);
    buf[dir_offset..dir_offset + dir.len()].copy_from_slice(dir);

    let total = buf.len() + CRC_BYTES;
    let mut flags = 0;
    if cfg.norm == NormPlacement::Pre {
        flags |= FLAG_PRE_LN;
    }
    if cfg.tied_output {
        flags |= FLAG_TIED_OUTPUT;
    }
    if cfg.input_split == Split::Space {
        flags |= FLAG_INPUT_SPACE;
    }
    if cfg.output_split == Split::Space {
        flags |= FLAG_OUTPUT_SPACE;
    }
    if panels {
        flags |= FLAG_I8_PANELS;
    }
    if cfg.kv_cache == Quant::Int8 {
        flags |= FLAG_KV_INT8;
    }
    let h = &mut buf[..HEADER_BYTES];
    h[field::MAGIC].copy_from_slice(&MAGIC);
    h[field::VERSION].copy_from_slice(&super::version_for(cfg).to_le_bytes());
    h[field::HEADER_BYTES].copy_from_slice(&(HEADER_BYTES as u16).to_le_bytes());
    put_u32(h, field::TOTAL_BYTES, total)?;
    put_u32(h, field::FLAGS, flags as usize)?;
    h[field::QUANT] = match cfg.quant {
        Quant::F32 => 0,
        Quant::Int8 => 1,
    };
    put_u16(h, field::D_MODEL, cfg.d_model, "d_model")?;
    put_u16(h, field::HEADS, cfg.heads, "heads")?;
    put_u16(h, field::D_FF, cfg.d_ff, "d_ff")?;
    put_u16(h, field::ENCODER_LAYERS, cfg.encoder_layers, "encoder_layers")?;
    put_u16(h, field::DECODER_LAYERS, cfg.decoder_layers, "decoder_layers")?;
    put_u16(h, field::INPUT_VOCAB, cfg.input_vocab, "input_vocab")?;
    put_u16(h, field::OUTPUT_VOCAB, cfg.output_vocab, "output_vocab")?;
    put_u16(h, field::MAX_INPUT_LEN, cfg.max_input_len, "max_input_len")?;
    put_u16(h, field::MAX_OUTPUT_LEN, cfg.max_output_len, "max_output_len")?;
    put_u16(h, field::CONV_KERNEL, cfg.conv_kernel, "conv_kernel")?;
    h[field::LAYER_NORM_EPS].copy_from_slice(&cfg.layer_norm_eps.to_le_bytes());
    put_u32(h, field::VOCAB_OFFSET, HEADER_BYTES)?;
    put_u32(h, field::VOCAB_BYTES, vocab_bytes)?;
    put_u32(h, field::DIR_OFFSET, dir_offset)?;
    put_u32(h, field::TENSOR_COUNT, layout.count)?;
    let crc = crc32(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Bytes held at a 16-byte aligned address, as the engine wants a blob in memory.
#[derive(Clone)]
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        dst[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBytes({} bytes)", self.len)
    }
}

/// A zeroed, 16-byte aligned workspace of at least `bytes` bytes.
pub fn workspace(bytes: usize) -> AlignedBytes {
    AlignedBytes {
        words: vec![0u128; bytes.div_ceil(16)],
        len: bytes,
    }
}

impl AlignedBytes {
    /// The bytes, mutably.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut bytemuck::cast_slice_mut(&mut self.words)[..len]
    }
}
