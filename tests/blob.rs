//! Blob format: round trip, and every corruption and truncation refused with an error.

mod common;

use common::*;
use picoformer::blob::writer::{write_blob, AlignedBytes, WriteError};
use picoformer::blob::{self, FORMAT_VERSION};
use picoformer::weights::Matrix;
use picoformer::{BlobError, Model, NormPlacement, Quant, Split, TensorId};

fn small() -> picoformer::Config {
    let mut cfg = config(NormPlacement::Pre, false, Quant::Int8);
    cfg.d_model = 8;
    cfg.heads = 2;
    cfg.d_ff = 8;
    cfg.encoder_layers = 1;
    cfg.decoder_layers = 1;
    cfg.input_vocab = 4;
    cfg.output_vocab = 5;
    cfg
}

#[test]
fn round_trip_f32_and_int8() {
    for quant in [Quant::F32, Quant::Int8] {
        for (norm, tied, conv) in [
            (NormPlacement::Post, false, 0),
            (NormPlacement::Pre, true, 0),
            (NormPlacement::Pre, false, 3),
        ] {
            let mut cfg = config(norm, tied, quant);
            cfg.input_split = Split::Space;
            cfg.conv_kernel = conv;
            let tensors = random_tensors(&cfg, 42, 0.0);
            let bytes = blob(&cfg, &tensors);
            // The lowest version that describes the model: 2 only with the convolution.
            let version = u16::from_le_bytes([bytes.as_bytes()[4], bytes.as_bytes()[5]]);
            assert_eq!(version, if conv > 0 { 2 } else { 1 });
            let model = Model::from_blob(bytes.as_bytes()).unwrap();
            assert_eq!(model.config(), &cfg);
            assert_eq!(model.blob_bytes(), bytes.as_bytes().len());
            let syms: Vec<_> = model.vocab().input_symbols().collect();
            assert_eq!(syms, INPUT_SYMBOLS);
            let toks: Vec<_> = model.vocab().output_tokens().collect();
            assert_eq!(toks, OUTPUT_TOKENS);
            let params: usize = TensorId::all(&cfg).map(|id| tensors[&id.to_string()].len()).sum();
            assert_eq!(model.param_count(), params);
            for (i, id) in TensorId::all(&cfg).enumerate() {
                let want = &tensors[&id.to_string()];
                if id.is_matrix() {
                    let (rows, cols) = id.shape(&cfg);
                    let mut row = vec![0.0; cols];
                    for r in 0..rows {
                        model.weights().matrix(i).row_into(r, &mut row);
                        let max = want[r * cols..(r + 1) * cols]
                            .iter()
                            .fold(0.0f32, |m, v| m.max(v.abs()));
                        for (a, b) in row.iter().zip(&want[r * cols..(r + 1) * cols]) {
                            match quant {
                                Quant::F32 => assert_eq!(a, b, "{id}"),
                                Quant::Int8 => assert!((a - b).abs() <= max / 254.0 + 1e-7, "{id}"),
                            }
                        }
                    }
                    let is_i8 = matches!(model.weights().matrix(i), Matrix::I8 { .. });
                    assert_eq!(is_i8, quant == Quant::Int8);
                } else {
                    assert_eq!(model.weights().vector(i), &want[..], "{id}");
                }
            }
        }
    }
}

#[test]
fn layout_is_aligned_and_documented_fields_hold() {
    let cfg = small();
    let bytes = blob(&cfg, &random_tensors(&cfg, 1, 0.0));
    let b = bytes.as_bytes();
    assert_eq!(&b[0..4], b"PFMR");
    assert_eq!(u16::from_le_bytes([b[4], b[5]]), blob::version_for(&cfg));
    assert!(blob::version_for(&cfg) <= FORMAT_VERSION);
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize, b.len());
    assert_eq!(blob::peek_len(b).unwrap(), b.len());
    let parsed = blob::parse(b).unwrap();
    for e in parsed.dir {
        assert_eq!(e.offset % 16, 0);
        assert_eq!(e.scales % 16, 0);
    }
    assert_eq!(blob::crc32(b"123456789"), 0xCBF4_3926, "CRC-32/ISO-HDLC check value");
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let cfg = small();
    let bytes = blob(&cfg, &random_tensors(&cfg, 2, 0.0)).as_bytes().to_vec();
    assert!(bytes.len() < 20_000, "keep this test fast: {} bytes", bytes.len());
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut c = bytes.clone();
            c[i] ^= 1 << bit;
            let aligned = AlignedBytes::new(&c);
            let err = Model::from_blob(aligned.as_bytes()).err();
            assert!(err.is_some(), "flip of byte {i} bit {bit} accepted");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    let cfg = small();
    let bytes = blob(&cfg, &random_tensors(&cfg, 3, 0.0)).as_bytes().to_vec();
    for len in 0..bytes.len() {
        let aligned = AlignedBytes::new(&bytes[..len]);
        let err = Model::from_blob(aligned.as_bytes()).unwrap_err();
        if len >= 68 {
            assert_eq!(
                err,
                BlobError::LengthMismatch {
                    header: bytes.len(),
                    actual: len
                }
            );
        }
        // The message is readable.
        assert!(!err.to_string().is_empty());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let aligned = AlignedBytes::new(&longer);
    assert!(matches!(
        Model::from_blob(aligned.as_bytes()),
        Err(BlobError::LengthMismatch { .. })
    ));
}

/// Rewrites header bytes and fixes the CRC, to reach the checks behind the checksum.
fn patched(bytes: &[u8], at: usize, new: &[u8]) -> AlignedBytes {
    let mut c = bytes.to_vec();
    c[at..at + new.len()].copy_from_slice(new);
    let n = c.len() - 4;
    let crc = blob::crc32(&c[..n]);
    c[n..].copy_from_slice(&crc.to_le_bytes());
    AlignedBytes::new(&c)
}

#[test]
fn each_rejection_has_its_own_error() {
    let cfg = small();
    let good = blob(&cfg, &random_tensors(&cfg, 4, 0.0)).as_bytes().to_vec();
    let err = |b: AlignedBytes| Model::from_blob(b.as_bytes()).unwrap_err();

    let e = err(patched(&good, 4, &3u16.to_le_bytes()));
    assert_eq!(e, BlobError::UnsupportedVersion { found: 3, supported: 2 });
    assert_eq!(
        e.to_string(),
        "blob format version 3 is not supported; this engine reads versions 1 to 2"
    );
    assert_eq!(
        err(patched(&good, 4, &0u16.to_le_bytes())),
        BlobError::UnsupportedVersion { found: 0, supported: 2 }
    );
    // A version-1 blob cannot carry a convolution kernel width.
    assert_eq!(err(patched(&good, 38, &3u16.to_le_bytes())), BlobError::ReservedBits);
    // A version-2 blob's kernel width must be odd and in range.
    let mut conv_cfg = small();
    conv_cfg.conv_kernel = 3;
    let conv = blob(&conv_cfg, &random_tensors(&conv_cfg, 4, 0.0)).as_bytes().to_vec();
    assert!(Model::from_blob(AlignedBytes::new(&conv).as_bytes()).is_ok());
    let e = err(patched(&conv, 38, &4u16.to_le_bytes()));
    assert_eq!(e, BlobError::EvenConvKernel { kernel: 4 });
    assert_eq!(e.to_string(), "conv_kernel 4 must be odd");
    assert!(matches!(
        err(patched(&conv, 38, &33u16.to_le_bytes())),
        BlobError::ConfigOutOfRange {
            field: "conv_kernel",
            ..
        }
    ));
    // A kernel width that disagrees with the stored taps is caught by the tensor checks.
    assert!(matches!(
        err(patched(&conv, 38, &5u16.to_le_bytes())),
        BlobError::ShapeMismatch { .. }
    ));
    assert_eq!(err(patched(&good, 0, b"XXXX")), BlobError::BadMagic);
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xFF;
    assert!(matches!(
        err(AlignedBytes::new(&bad_crc)),
        BlobError::ChecksumMismatch { .. }
    ));
    assert_eq!(
        err(patched(&good, 22, &3u16.to_le_bytes())),
        BlobError::HeadsDoNotDivide { d_model: 8, heads: 3 }
    );
    assert!(matches!(
        err(patched(&good, 20, &0u16.to_le_bytes())),
        BlobError::ConfigOutOfRange { field: "d_model", .. }
    ));
    assert_eq!(err(patched(&good, 12, &[0, 0, 0, 0x80])), BlobError::ReservedBits);
    assert_eq!(err(patched(&good, 16, &[7])), BlobError::UnknownQuant { code: 7 });
    assert_eq!(err(patched(&good, 40, &(-1.0f32).to_le_bytes())), BlobError::BadEpsilon);
    // One more encoder layer than the directory holds.
    assert!(matches!(
        err(patched(&good, 26, &2u16.to_le_bytes())),
        BlobError::TensorCount { .. }
    ));
    // Flip post/pre-LN: the directory no longer matches the config's tensor list.
    assert!(matches!(
        err(patched(&good, 12, &[0, 0, 0, 0])),
        BlobError::TensorCount { .. }
    ));
    // A wrong vocabulary size misreads the vocabulary section: the output's "<pad>" becomes input
    // symbol 4, which is not one character.
    assert_eq!(
        err(patched(&good, 30, &5u16.to_le_bytes())),
        BlobError::BadInputSymbol { index: 4 }
    );
    assert_eq!(err(patched(&good, 48, &1u32.to_le_bytes())), BlobError::VocabTruncated);
    // Directory entry 0 (src_emb) claims another shape.
    let parsed = blob::parse(&good).unwrap();
    let dir_off = u32::from_le_bytes(good[52..56].try_into().unwrap()) as usize;
    assert!(!parsed.dir.is_empty());
    let e = err(patched(&good, dir_off + 8, &5u32.to_le_bytes()));
    assert!(
        matches!(
            e,
            BlobError::ShapeMismatch {
                expected: (4, 8),
                found: (5, 8),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "tensor src_emb.weight has shape [5, 8], the config requires [4, 8]"
    );
    let e = err(patched(&good, dir_off + 16, &(good.len() as u32 & !15).to_le_bytes()));
    assert!(matches!(e, BlobError::TensorOutOfBounds { .. }), "{e:?}");
    let e = err(patched(&good, dir_off + 4, &[0]));
    assert!(matches!(e, BlobError::WrongDtype { .. }), "{e:?}");
    let e = err(patched(&good, dir_off, &0x0200u16.to_le_bytes()));
    assert!(matches!(e, BlobError::UnexpectedTensor { index: 0, .. }), "{e:?}");
    // A NaN scale.
    let scales = parsed.dir[0].scales as usize;
    let e = err(patched(&good, scales, &f32::NAN.to_le_bytes()));
    assert!(matches!(e, BlobError::NonFiniteValue { .. }), "{e:?}");
    // Misaligned start.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&good);
    let holder = AlignedBytes::new(&shifted);
    assert!(matches!(
        Model::from_blob(&holder.as_bytes()[1..]),
        Err(BlobError::Misaligned { .. })
    ));
}

#[test]
fn writer_refuses_bad_input() {
    let cfg = small();
    let mut tensors = random_tensors(&cfg, 5, 0.0);
    let ins = &INPUT_SYMBOLS[..4];
    let outs = &OUTPUT_TOKENS[..5];
    assert!(matches!(
        write_blob(&cfg, &ins[..3], outs, &tensors),
        Err(WriteError::VocabSize { .. })
    ));
    assert!(matches!(
        write_blob(&cfg, &["<pad>", "ab", "c", "d"], outs, &tensors),
        Err(WriteError::BadEntry { .. })
    ));
    tensors.get_mut("tgt_emb.weight").unwrap()[0] = f32::NAN;
    assert_eq!(
        write_blob(&cfg, ins, outs, &tensors).unwrap_err(),
        WriteError::NonFinite("tgt_emb.weight".into())
    );
    tensors.get_mut("tgt_emb.weight").unwrap().pop();
    assert!(matches!(
        write_blob(&cfg, ins, outs, &tensors),
        Err(WriteError::WrongLength { .. })
    ));
    tensors.remove("tgt_emb.weight");
    assert_eq!(
        write_blob(&cfg, ins, outs, &tensors).unwrap_err(),
        WriteError::MissingTensor("tgt_emb.weight".into())
    );
}
