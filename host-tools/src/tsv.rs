//! Reading `input<TAB>output` TSV files, with errors that name the file and line.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Longest line accepted, in bytes: anything longer is almost certainly not a seq2seq example.
pub const MAX_LINE_BYTES: usize = 4096;

/// One example: an input string and its expected output, with the 1-based line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Left of the tab.
    pub input: String,
    /// Right of the tab.
    pub output: String,
    /// 1-based line number in the source file.
    pub line: usize,
}

/// How one side of a pair is split into tokens.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Every Unicode character is a token.
    Chars,
    /// Tokens are separated by spaces (e.g. phonemes `HH AH L OW`).
    Space,
}

impl Split {
    /// Splits `s` into tokens.
    pub fn tokens<'a>(&self, s: &'a str) -> Vec<&'a str> {
        match self {
            Split::Chars => s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect(),
            Split::Space => s.split(' ').filter(|t| !t.is_empty()).collect(),
        }
    }
}

/// Reads every non-empty line of `path` as a [`Pair`].
///
/// A line without a tab, with more than one tab, with an empty side, or longer than
/// [`MAX_LINE_BYTES`] is an error naming `path:line`. Empty lines are skipped; a trailing `\r` is removed.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(text).map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))?;
    parse_pairs(&text, &path.display().to_string())
}

/// Parses TSV text; `name` is used in error messages.
pub fn parse_pairs(text: &str, name: &str) -> Result<Vec<Pair>> {
    let mut pairs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        if raw.len() > MAX_LINE_BYTES {
            bail!(
                "{name}:{line}: line is {} bytes long, the limit is {MAX_LINE_BYTES}",
                raw.len()
            );
        }
        let Some((input, output)) = raw.split_once('\t') else {
            bail!("{name}:{line}: no tab; expected `input<TAB>output`");
        };
        if output.contains('\t') {
            bail!("{name}:{line}: more than one tab; expected `input<TAB>output`");
        }
        if input.is_empty() {
            bail!("{name}:{line}: empty input (left of the tab)");
        }
        if output.trim().is_empty() {
            bail!("{name}:{line}: empty output (right of the tab)");
        }
        pairs.push(Pair {
            input: input.to_string(),
            output: output.to_string(),
            line,
        });
    }
    if pairs.is_empty() {
        bail!("{name}: no examples");
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_line_numbers() {
        let ok = parse_pairs("ab\tba\n\ncd\tdc\r\n", "t.tsv").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            ok[1],
            Pair {
                input: "cd".into(),
                output: "dc".into(),
                line: 3
            }
        );
        let err = parse_pairs("ab\tba\nxyz\n", "t.tsv").unwrap_err().to_string();
        assert_eq!(err, "t.tsv:2: no tab; expected `input<TAB>output`");
        assert!(parse_pairs("\tx\n", "t")
            .unwrap_err()
            .to_string()
            .contains("t:1: empty input"));
        assert!(parse_pairs("x\t \n", "t")
            .unwrap_err()
            .to_string()
            .contains("t:1: empty output"));
        assert!(parse_pairs("a\tb\tc\n", "t")
            .unwrap_err()
            .to_string()
            .contains("more than one tab"));
        let long = format!("{}\tx", "a".repeat(MAX_LINE_BYTES));
        assert!(parse_pairs(&long, "t")
            .unwrap_err()
            .to_string()
            .contains("t:1: line is"));
    }

    #[test]
    fn splits_tokens() {
        assert_eq!(Split::Chars.tokens("héllo"), ["h", "é", "l", "l", "o"]);
        assert_eq!(Split::Space.tokens("HH  AH L"), ["HH", "AH", "L"]);
    }
}
