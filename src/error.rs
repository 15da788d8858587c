//! Every way loading a blob or running a model can fail, each with a readable `Display`.

use core::fmt;

use crate::tensors::TensorId;

/// Longest symbol kept in an [`Error::UnknownSymbol`] report, in bytes.
pub const SYMBOL_REPORT_BYTES: usize = 16;

/// Why a blob was refused by [`crate::Model::from_blob`]. Each check has its own variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobError {
    /// Shorter than the fixed header plus checksum.
    TooShort {
        /// Bytes given.
        len: usize,
        /// Minimum for any blob.
        min: usize,
    },
    /// The first four bytes are not `PFMR`.
    BadMagic,
    /// A format version this engine does not read.
    UnsupportedVersion {
        /// Version in the blob.
        found: u16,
        /// Version this engine reads.
        supported: u16,
    },
    /// The header's size field disagrees with this version's header.
    BadHeaderSize {
        /// Header size in the blob.
        found: u16,
    },
    /// The length recorded in the header differs from the bytes given (truncated or padded blob).
    LengthMismatch {
        /// Length recorded in the header.
        header: usize,
        /// Bytes given.
        actual: usize,
    },
    /// CRC-32 over the blob does not match the stored one.
    ChecksumMismatch {
        /// Stored CRC.
        stored: u32,
        /// CRC of the bytes given.
        computed: u32,
    },
    /// The blob does not start at a 4-byte aligned address, so weights cannot be viewed in place.
    Misaligned {
        /// The blob's address.
        address: usize,
    },
    /// A header flag or field this version does not define is set.
    ReservedBits,
    /// The quantization code is unknown.
    UnknownQuant {
        /// The code found.
        code: u8,
    },
    /// A config field is zero or beyond what the engine supports.
    ConfigOutOfRange {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// `d_model` is not a multiple of the head count.
    HeadsDoNotDivide {
        /// Model width.
        d_model: u16,
        /// Head count.
        heads: u16,
    },
    /// `d_model` must be even for the sinusoidal encoding.
    OddModelWidth {
        /// Model width.
        d_model: u16,
    },
    /// The encoder convolution kernel width must be odd (centred on its position).
    EvenConvKernel {
        /// The width found.
        kernel: u16,
    },
    /// LayerNorm epsilon is not a positive finite number.
    BadEpsilon,
    /// A section's offset or length points outside the blob or is misaligned.
    SectionOutOfBounds {
        /// Which section.
        section: &'static str,
    },
    /// The vocabulary section ends before all entries were read, or has bytes left over.
    VocabTruncated,
    /// A vocabulary entry is not UTF-8.
    VocabNotUtf8 {
        /// 0 = input, 1 = output.
        side: u8,
        /// Entry index.
        index: u16,
    },
    /// An input symbol is empty or (in character mode) more than one character.
    BadInputSymbol {
        /// Entry index.
        index: u16,
    },
    /// The tensor count differs from what the config requires.
    TensorCount {
        /// Tensors the config requires.
        expected: u32,
        /// Tensors in the directory.
        found: u32,
    },
    /// A directory entry is not the tensor expected at its place.
    UnexpectedTensor {
        /// Position in the directory.
        index: u32,
        /// The tensor expected there.
        expected: TensorId,
    },
    /// A tensor's shape disagrees with the config.
    ShapeMismatch {
        /// The tensor.
        tensor: TensorId,
        /// (rows, cols) the config requires.
        expected: (u32, u32),
        /// (rows, cols) in the directory.
        found: (u32, u32),
    },
    /// A tensor is stored in the wrong element type for the blob's quantization.
    WrongDtype {
        /// The tensor.
        tensor: TensorId,
    },
    /// A tensor's data lies outside the data area or is not 16-byte aligned.
    TensorOutOfBounds {
        /// The tensor.
        tensor: TensorId,
    },
    /// A float in the blob (weight, scale, bias) is NaN or infinite.
    NonFiniteValue {
        /// The tensor.
        tensor: TensorId,
    },
}

/// Everything that can go wrong when loading or running a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The blob was refused.
    Blob(BlobError),
    /// The workspace buffer is smaller than [`crate::Model::workspace_bytes`].
    WorkspaceTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// The workspace buffer does not start at a 4-byte aligned address.
    WorkspaceMisaligned,
    /// A beam wider than the runner (or the engine) supports.
    BeamTooWide {
        /// Width asked for.
        requested: usize,
        /// Widest allowed.
        max: usize,
    },
    /// Beam width zero.
    ZeroBeam,
    /// An input symbol that is not in the model's input vocabulary.
    UnknownSymbol {
        /// 0-based position of the symbol in the input.
        position: usize,
        /// The symbol (cut to [`SYMBOL_REPORT_BYTES`]).
        symbol: heapless::String<SYMBOL_REPORT_BYTES>,
    },
    /// A token id outside the vocabulary.
    TokenOutOfRange {
        /// The id.
        token: u16,
        /// The vocabulary's size.
        vocab: usize,
    },
    /// More input symbols than the model takes.
    InputTooLong {
        /// Symbols given.
        len: usize,
        /// Most the model takes.
        max: usize,
    },
    /// No input symbols.
    EmptyInput,
    /// The output buffer cannot hold the longest output.
    OutputBufferTooSmall {
        /// Tokens needed.
        needed: usize,
        /// Tokens given.
        given: usize,
    },
    /// A decoder position beyond the model's maximum output length.
    OutputTooLong {
        /// Positions asked for.
        len: usize,
        /// Most the model has.
        max: usize,
    },
    /// The attention probe names a layer or head the model does not have.
    BadProbe,
}

impl From<BlobError> for Error {
    fn from(e: BlobError) -> Self {
        Error::Blob(e)
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BlobError::*;
        match *self {
            TooShort { len, min } => write!(f, "blob is {len} bytes, shorter than the minimum {min}"),
            BadMagic => write!(f, "not a picoformer blob (bad magic)"),
            UnsupportedVersion { found, supported } => write!(
                f,
                "blob format version {found} is not supported; this engine reads versions {} to {supported}",
                crate::blob::OLDEST_VERSION
            ),
            BadHeaderSize { found } => write!(
                f,
                "header size {found} does not match the format's {}",
                crate::blob::HEADER_BYTES
            ),
            LengthMismatch { header, actual } => write!(
                f,
                "blob length {actual} differs from the {header} bytes its header records (truncated or padded)"
            ),
            ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch: stored CRC-32 {stored:#010x}, computed {computed:#010x} (corrupt blob)"
            ),
            Misaligned { address } => {
                write!(f, "blob at address {address:#x} is not 4-byte aligned")
            }
            ReservedBits => write!(f, "reserved header bits are set"),
            UnknownQuant { code } => write!(f, "unknown quantization code {code}"),
            ConfigOutOfRange { field, value, min, max } => {
                write!(f, "config {field} = {value} is outside {min}..={max}")
            }
            HeadsDoNotDivide { d_model, heads } => {
                write!(f, "d_model {d_model} is not a multiple of heads {heads}")
            }
            OddModelWidth { d_model } => write!(f, "d_model {d_model} must be even"),
            EvenConvKernel { kernel } => write!(f, "conv_kernel {kernel} must be odd"),
            BadEpsilon => write!(f, "layer_norm_eps must be positive and finite"),
            SectionOutOfBounds { section } => write!(f, "{section} section is out of bounds or misaligned"),
            VocabTruncated => write!(f, "vocabulary section has the wrong length"),
            VocabNotUtf8 { side, index } => write!(
                f,
                "{} vocabulary entry {index} is not UTF-8",
                if side == 0 { "input" } else { "output" }
            ),
            BadInputSymbol { index } => write!(f, "input vocabulary entry {index} is not a valid symbol"),
            TensorCount { expected, found } => {
                write!(
                    f,
                    "tensor directory has {found} entries, the config requires {expected}"
                )
            }
            UnexpectedTensor { index, expected } => {
                write!(f, "tensor directory entry {index} is not {expected}")
            }
            ShapeMismatch {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor {tensor} has shape [{}, {}], the config requires [{}, {}]",
                found.0, found.1, expected.0, expected.1
            ),
            WrongDtype { tensor } => write!(f, "tensor {tensor} has the wrong element type"),
            TensorOutOfBounds { tensor } => write!(f, "tensor {tensor} lies outside the blob or is misaligned"),
            NonFiniteValue { tensor } => write!(f, "tensor {tensor} holds a NaN or infinite value"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match self {
            Blob(e) => write!(f, "invalid blob: {e}"),
            WorkspaceTooSmall { needed, given } => {
                write!(f, "workspace of {given} bytes is too small; the model needs {needed}")
            }
            WorkspaceMisaligned => write!(f, "workspace buffer is not 4-byte aligned"),
            BeamTooWide { requested, max } => {
                write!(f, "beam width {requested} exceeds the maximum {max}")
            }
            ZeroBeam => write!(f, "beam width must be at least 1"),
            UnknownSymbol { position, symbol } => {
                write!(
                    f,
                    "symbol {symbol:?} at position {position} is not in the input vocabulary"
                )
            }
            TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside the vocabulary of {vocab}")
            }
            InputTooLong { len, max } => {
                write!(f, "input has {len} symbols, the model takes at most {max}")
            }
            EmptyInput => write!(f, "input is empty"),
            OutputBufferTooSmall { needed, given } => {
                write!(f, "output buffer holds {given} tokens, {needed} are needed")
            }
            OutputTooLong { len, max } => {
                write!(f, "{len} decoder positions asked for, the model has {max}")
            }
            BadProbe => write!(f, "attention probe names a layer or head the model does not have"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BlobError {}
#[cfg(feature = "std")]
impl std::error::Error for Error {}

#[cfg(feature = "defmt")]
impl defmt::Format for BlobError {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}", defmt::Display2Format(self))
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Error {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}", defmt::Display2Format(self))
    }
}
