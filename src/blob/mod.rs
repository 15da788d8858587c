//! Blob format v1 and v2: reading and validating (and, with `std`, writing) model blobs.
//!
//! The format is documented field by field in `docs/blob-format.md`. All fields are little-endian.
//! [`parse`] checks everything once; afterwards the weights are viewed in place, never copied.

#[cfg(feature = "std")]
pub mod writer;

use crate::config::{Config, NormPlacement, Quant, Split};
use crate::error::BlobError;
use crate::tensors::TensorId;

/// The four bytes every blob starts with.
pub const MAGIC: [u8; 4] = *b"PFMR";
/// The newest format version this engine reads and writes. Version 2 adds the encoder
/// convolution (header field `conv_kernel`); a blob without it is written as version 1, so engines
/// that know only version 1 still read it.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this engine reads.
pub const OLDEST_VERSION: u16 = 1;

/// The lowest format version that can describe `cfg`.
pub fn version_for(cfg: &Config) -> u16 {
    if cfg.conv_kernel > 0 {
        2
    } else {
        1
    }
}
/// Bytes in the fixed header.
pub const HEADER_BYTES: usize = 64;
/// Bytes in one tensor directory entry.
pub const DIR_ENTRY_BYTES: usize = 24;
/// Alignment of the directory and of every tensor's data.
pub const ALIGN: usize = 16;
/// Bytes of the CRC-32 trailer.
pub const CRC_BYTES: usize = 4;

/// Byte ranges of the header fields (smoltcp-style: named once, used everywhere).
pub mod field {
    use core::ops::Range;
    /// `b"PFMR"`.
    pub const MAGIC: Range<usize> = 0..4;
    /// u16 format version.
    pub const VERSION: Range<usize> = 4..6;
    /// u16 header size (64).
    pub const HEADER_BYTES: Range<usize> = 6..8;
    /// u32 total blob length, CRC included.
    pub const TOTAL_BYTES: Range<usize> = 8..12;
    /// u32 flags, see `FLAG_*`.
    pub const FLAGS: Range<usize> = 12..16;
    /// u8 quantization: 0 f32, 1 int8.
    pub const QUANT: usize = 16;
    /// u8 + u16 reserved, zero.
    pub const RESERVED0: Range<usize> = 17..20;
    /// u16 d_model.
    pub const D_MODEL: Range<usize> = 20..22;
    /// u16 heads.
    pub const HEADS: Range<usize> = 22..24;
    /// u16 d_ff.
    pub const D_FF: Range<usize> = 24..26;
    /// u16 encoder layers.
    pub const ENCODER_LAYERS: Range<usize> = 26..28;
    /// u16 decoder layers.
    pub const DECODER_LAYERS: Range<usize> = 28..30;
    /// u16 input vocabulary size.
    pub const INPUT_VOCAB: Range<usize> = 30..32;
    /// u16 output vocabulary size.
    pub const OUTPUT_VOCAB: Range<usize> = 32..34;
    /// u16 maximum input length.
    pub const MAX_INPUT_LEN: Range<usize> = 34..36;
    /// u16 maximum output length.
    pub const MAX_OUTPUT_LEN: Range<usize> = 36..38;
    /// u16 encoder convolution kernel width, 0 for none (version 2; zero in version 1).
    pub const CONV_KERNEL: Range<usize> = 38..40;
    /// f32 LayerNorm epsilon.
    pub const LAYER_NORM_EPS: Range<usize> = 40..44;
    /// u32 offset of the vocabulary section.
    pub const VOCAB_OFFSET: Range<usize> = 44..48;
    /// u32 length of the vocabulary section.
    pub const VOCAB_BYTES: Range<usize> = 48..52;
    /// u32 offset of the tensor directory (16-aligned).
    pub const DIR_OFFSET: Range<usize> = 52..56;
    /// u32 number of directory entries.
    pub const TENSOR_COUNT: Range<usize> = 56..60;
    /// u32 reserved, zero.
    pub const RESERVED2: Range<usize> = 60..64;
}

/// Flag: pre-LN (otherwise post-LN).
pub const FLAG_PRE_LN: u32 = 1 << 0;
/// Flag: output projection tied to the output embedding.
pub const FLAG_TIED_OUTPUT: u32 = 1 << 1;
/// Flag: input symbols are space-separated tokens (otherwise characters).
pub const FLAG_INPUT_SPACE: u32 = 1 << 2;
/// Flag: output tokens are joined with spaces (otherwise concatenated).
pub const FLAG_OUTPUT_SPACE: u32 = 1 << 3;
/// Flag: int8 matrices are stored in 4-row panels (see `kernels::panel`), the layout the DSP
/// kernel reads; only valid with int8 quantization.
pub const FLAG_I8_PANELS: u32 = 1 << 4;
/// Flag: attention key/value caches are int8 with a scale per row and head (else f32).
pub const FLAG_KV_INT8: u32 = 1 << 5;
const KNOWN_FLAGS: u32 =
    FLAG_PRE_LN | FLAG_TIED_OUTPUT | FLAG_INPUT_SPACE | FLAG_OUTPUT_SPACE | FLAG_I8_PANELS | FLAG_KV_INT8;

/// Element type code of f32 tensors.
pub const DTYPE_F32: u8 = 0;
/// Element type code of int8 tensors.
pub const DTYPE_I8: u8 = 1;

/// Largest value of the size fields the engine accepts (keeps every size product far from overflow).
pub const MAX_DIM: u32 = 4096;
/// Most blocks per stack.
pub const MAX_LAYERS: u32 = 32;
/// Widest encoder convolution kernel.
pub const MAX_CONV_KERNEL: u32 = 31;

/// One tensor directory entry, viewed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct DirEntry {
    /// [`TensorId::code`].
    pub code: u16,
    /// Block index within its stack.
    pub layer: u16,
    /// [`DTYPE_F32`] or [`DTYPE_I8`].
    pub dtype: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// Rows (1 for vectors).
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Offset of the data from the blob's start (16-aligned).
    pub offset: u32,
    /// Offset of the per-row f32 scales (int8 only; 0 for f32).
    pub scales: u32,
}

/// The parts of a validated blob.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'b> {
    /// The model's hyper-parameters.
    pub config: Config,
    /// Input vocabulary entries (`u8 length, bytes` each).
    pub input_vocab: &'b [u8],
    /// Output vocabulary entries.
    pub output_vocab: &'b [u8],
    /// The tensor directory, in [`TensorId::all`] order.
    pub dir: &'b [DirEntry],
    /// Order of the int8 matrices' values.
    pub i8_layout: crate::weights::I8Layout,
}

fn u16_at(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    b.get(r)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0)
}

fn u32_at(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    b.get(r)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

/// CRC-32 (ISO-HDLC, as in zlib and PNG) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

/// Reads the total length from a blob's header after checking its magic and version: lets a
/// firmware find a blob's end in flash before validating it.
pub fn peek_len(header: &[u8]) -> Result<usize, BlobError> {
    if header.len() < HEADER_BYTES {
        return Err(BlobError::TooShort {
            len: header.len(),
            min: HEADER_BYTES + CRC_BYTES,
        });
    }
    if header.get(field::MAGIC) != Some(&MAGIC[..]) {
        return Err(BlobError::BadMagic);
    }
    let version = u16_at(header, field::VERSION);
    if !(OLDEST_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(BlobError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(u32_at(header, field::TOTAL_BYTES) as usize)
}

fn range_check(field_name: &'static str, value: u16, min: u32, max: u32) -> Result<usize, BlobError> {
    let v = u32::from(value);
    if v < min || v > max {
        return Err(BlobError::ConfigOutOfRange {
            field: field_name,
            value: v,
            min,
            max,
        });
    }
    Ok(v as usize)
}

fn parse_config(b: &[u8]) -> Result<Config, BlobError> {
    let flags = u32_at(b, field::FLAGS);
    let conv_raw = u16_at(b, field::CONV_KERNEL);
    let reserved = b.get(field::RESERVED0).is_some_and(|r| r.iter().any(|&x| x != 0))
        || (u16_at(b, field::VERSION) < 2 && conv_raw != 0)
        || u32_at(b, field::RESERVED2) != 0;
    if flags & !KNOWN_FLAGS != 0 || reserved {
        return Err(BlobError::ReservedBits);
    }
    let quant = match b.get(field::QUANT).copied().unwrap_or(u8::MAX) {
        0 => Quant::F32,
        1 => Quant::Int8,
        code => return Err(BlobError::UnknownQuant { code }),
    };
    if flags & FLAG_I8_PANELS != 0 && quant != Quant::Int8 {
        return Err(BlobError::ReservedBits);
    }
    let d_model_raw = u16_at(b, field::D_MODEL);
    let heads_raw = u16_at(b, field::HEADS);
    let d_model = range_check("d_model", d_model_raw, 2, MAX_DIM)?;
    let heads = range_check("heads", heads_raw, 1, 64)?;
    if d_model % heads != 0 {
        return Err(BlobError::HeadsDoNotDivide {
            d_model: d_model_raw,
            heads: heads_raw,
        });
    }
    if d_model % 2 != 0 {
        return Err(BlobError::OddModelWidth { d_model: d_model_raw });
    }
    let conv_kernel = match conv_raw {
        0 => 0,
        k => range_check("conv_kernel", k, 1, MAX_CONV_KERNEL)?,
    };
    if conv_kernel % 2 == 0 && conv_kernel != 0 {
        return Err(BlobError::EvenConvKernel { kernel: conv_raw });
    }
    let eps = f32::from_le_bytes(u32_at(b, field::LAYER_NORM_EPS).to_le_bytes());
    if !(eps.is_finite() && eps > 0.0) {
        return Err(BlobError::BadEpsilon);
    }
    let split = |flag| {
        if flags & flag != 0 {
            Split::Space
        } else {
            Split::Chars
        }
    };
    Ok(Config {
        d_model,
        heads,
        d_ff: range_check("d_ff", u16_at(b, field::D_FF), 1, 4 * MAX_DIM)?,
        encoder_layers: range_check("encoder_layers", u16_at(b, field::ENCODER_LAYERS), 1, MAX_LAYERS)?,
        decoder_layers: range_check("decoder_layers", u16_at(b, field::DECODER_LAYERS), 1, MAX_LAYERS)?,
        input_vocab: range_check("input_vocab", u16_at(b, field::INPUT_VOCAB), 2, u16::MAX.into())?,
        output_vocab: range_check("output_vocab", u16_at(b, field::OUTPUT_VOCAB), 4, u16::MAX.into())?,
        max_input_len: range_check("max_input_len", u16_at(b, field::MAX_INPUT_LEN), 1, MAX_DIM)?,
        max_output_len: range_check("max_output_len", u16_at(b, field::MAX_OUTPUT_LEN), 1, MAX_DIM)?,
        norm: if flags & FLAG_PRE_LN != 0 {
            NormPlacement::Pre
        } else {
            NormPlacement::Post
        },
        tied_output: flags & FLAG_TIED_OUTPUT != 0,
        quant,
        kv_cache: if flags & FLAG_KV_INT8 != 0 {
            Quant::Int8
        } else {
            Quant::F32
        },
        input_split: split(FLAG_INPUT_SPACE),
        output_split: split(FLAG_OUTPUT_SPACE),
        layer_norm_eps: eps,
        conv_kernel,
    })
}

/// Walks `count` length-prefixed UTF-8 entries from the start of `bytes`; returns the bytes they span.
fn vocab_entries(bytes: &[u8], count: usize, side: u8, single_chars: bool) -> Result<&[u8], BlobError> {
    let mut at = 0usize;
    for index in 0..count {
        let len = usize::from(*bytes.get(at).ok_or(BlobError::VocabTruncated)?);
        let entry = bytes.get(at + 1..at + 1 + len).ok_or(BlobError::VocabTruncated)?;
        let text = core::str::from_utf8(entry).map_err(|_| BlobError::VocabNotUtf8 {
            side,
            index: index as u16,
        })?;
        if side == 0 && index > 0 {
            let chars = text.chars().count();
            let bad = chars == 0 || (single_chars && chars != 1) || text.contains(' ');
            if bad {
                return Err(BlobError::BadInputSymbol { index: index as u16 });
            }
        }
        at += 1 + len;
    }
    bytes.get(..at).ok_or(BlobError::VocabTruncated)
}

fn check_tensor(blob: &[u8], cfg: &Config, id: TensorId, e: &DirEntry, data_end: usize) -> Result<(), BlobError> {
    let (rows, cols) = id.shape(cfg);
    if (e.rows as usize, e.cols as usize) != (rows, cols) {
        return Err(BlobError::ShapeMismatch {
            tensor: id,
            expected: (rows as u32, cols as u32),
            found: (e.rows, e.cols),
        });
    }
    let int8 = cfg.quant == Quant::Int8 && id.is_matrix();
    let want = if int8 { DTYPE_I8 } else { DTYPE_F32 };
    if e.dtype != want || e.reserved != [0; 3] || (!int8 && e.scales != 0) {
        return Err(BlobError::WrongDtype { tensor: id });
    }
    let oob = BlobError::TensorOutOfBounds { tensor: id };
    let n = rows * cols;
    let span = |offset: u32, bytes: usize| -> Result<&[u8], BlobError> {
        let start = offset as usize;
        let end = start.saturating_add(bytes);
        if !start.is_multiple_of(ALIGN) || start < HEADER_BYTES || end > data_end {
            return Err(oob);
        }
        blob.get(start..end).ok_or(oob)
    };
    let finite = |bytes: &[u8]| -> Result<(), BlobError> {
        let floats: &[f32] = bytemuck::try_cast_slice(bytes).map_err(|_| oob)?;
        if floats.iter().all(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(BlobError::NonFiniteValue { tensor: id })
        }
    };
    if int8 {
        span(e.offset, n)?;
        finite(span(e.scales, 4 * rows)?)
    } else {
        finite(span(e.offset, 4 * n)?)
    }
}

/// Validates a whole blob: length, checksum, magic, version, config, vocabularies, and every tensor's
/// identity, shape, type, bounds, alignment and finiteness. Nothing is checked again at run time.
pub fn parse(blob: &[u8]) -> Result<Parsed<'_>, BlobError> {
    let min = HEADER_BYTES + CRC_BYTES;
    if blob.len() < min {
        return Err(BlobError::TooShort { len: blob.len(), min });
    }
    let total = peek_len(blob)?;
    if u16_at(blob, field::HEADER_BYTES) as usize != HEADER_BYTES {
        return Err(BlobError::BadHeaderSize {
            found: u16_at(blob, field::HEADER_BYTES),
        });
    }
    if total != blob.len() {
        return Err(BlobError::LengthMismatch {
            header: total,
            actual: blob.len(),
        });
    }
    let body_len = total - CRC_BYTES;
    let stored = u32_at(blob, body_len..total);
    let computed = crc32(blob.get(..body_len).unwrap_or(&[]));
    if stored != computed {
        return Err(BlobError::ChecksumMismatch { stored, computed });
    }
    let address = blob.as_ptr() as usize;
    if !address.is_multiple_of(4) {
        return Err(BlobError::Misaligned { address });
    }
    let config = parse_config(blob)?;

    let vocab_off = u32_at(blob, field::VOCAB_OFFSET) as usize;
    let vocab_len = u32_at(blob, field::VOCAB_BYTES) as usize;
    let vocab_oob = BlobError::SectionOutOfBounds { section: "vocabulary" };
    if vocab_off < HEADER_BYTES {
        return Err(vocab_oob);
    }
    let vocab = blob
        .get(vocab_off..vocab_off.saturating_add(vocab_len))
        .ok_or(vocab_oob)?;
    let chars = config.input_split == Split::Chars;
    let input_vocab = vocab_entries(vocab, config.input_vocab, 0, chars)?;
    let rest = vocab.get(input_vocab.len()..).ok_or(BlobError::VocabTruncated)?;
    let output_vocab = vocab_entries(rest, config.output_vocab, 1, false)?;
    if input_vocab.len() + output_vocab.len() != vocab.len() {
        return Err(BlobError::VocabTruncated);
    }

    let count = u32_at(blob, field::TENSOR_COUNT);
    let expected = crate::tensors::Layout::of(&config).count as u32;
    if count != expected {
        return Err(BlobError::TensorCount { expected, found: count });
    }
    let dir_off = u32_at(blob, field::DIR_OFFSET) as usize;
    let dir_bytes = count as usize * DIR_ENTRY_BYTES;
    let dir_oob = BlobError::SectionOutOfBounds {
        section: "tensor directory",
    };
    if !dir_off.is_multiple_of(ALIGN) || dir_off < HEADER_BYTES {
        return Err(dir_oob);
    }
    let dir_end = dir_off.saturating_add(dir_bytes);
    let raw = blob
        .get(dir_off..dir_end)
        .filter(|_| dir_end <= body_len)
        .ok_or(dir_oob)?;
    let dir: &[DirEntry] = bytemuck::try_cast_slice(raw).map_err(|_| dir_oob)?;
    for (index, (id, e)) in TensorId::all(&config).zip(dir).enumerate() {
        if e.code != id.code() || e.layer != id.layer {
            return Err(BlobError::UnexpectedTensor {
                index: index as u32,
                expected: id,
            });
        }
        check_tensor(blob, &config, id, e, body_len)?;
    }
    let i8_layout = if u32_at(blob, field::FLAGS) & FLAG_I8_PANELS != 0 {
        crate::weights::I8Layout::Panels
    } else {
        crate::weights::I8Layout::RowMajor
    };
    Ok(Parsed {
        config,
        input_vocab,
        output_vocab,
        dir,
        i8_layout,
    })
}
