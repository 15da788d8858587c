//! Input and output vocabularies, read in place from the blob.

use core::fmt;

use crate::config::{Split, FIRST_OUTPUT_TOKEN};

/// Length-prefixed UTF-8 entries (`u8 len, bytes`), validated at load time.
#[derive(Debug, Clone, Copy)]
struct Entries<'b> {
    bytes: &'b [u8],
}

impl<'b> Entries<'b> {
    fn iter(&self) -> impl Iterator<Item = &'b str> + 'b {
        let mut rest = self.bytes;
        core::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let (entry, tail) = tail.split_at_checked(usize::from(len))?;
            rest = tail;
            core::str::from_utf8(entry).ok()
        })
    }
}

/// Both vocabularies of a model and how its strings are split.
#[derive(Debug, Clone, Copy)]
pub struct Vocab<'b> {
    input: Entries<'b>,
    output: Entries<'b>,
    input_split: Split,
    output_split: Split,
}

impl<'b> Vocab<'b> {
    pub(crate) fn new(input: &'b [u8], output: &'b [u8], input_split: Split, output_split: Split) -> Self {
        Vocab {
            input: Entries { bytes: input },
            output: Entries { bytes: output },
            input_split,
            output_split,
        }
    }

    /// Input symbols in id order (id 0 is `<pad>`).
    pub fn input_symbols(&self) -> impl Iterator<Item = &'b str> + 'b {
        self.input.iter()
    }

    /// Output tokens in id order (ids 0..3 are `<pad>`, `<s>`, `</s>`).
    pub fn output_tokens(&self) -> impl Iterator<Item = &'b str> + 'b {
        self.output.iter()
    }

    /// The id of an input symbol (never 0, the padding id).
    pub fn input_id(&self, symbol: &str) -> Option<u16> {
        self.input
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, s)| *s == symbol)
            .map(|(i, _)| i as u16)
    }

    /// The text of an output token.
    pub fn output_token(&self, id: u16) -> Option<&'b str> {
        self.output.iter().nth(usize::from(id))
    }

    /// The text of an input symbol.
    pub fn input_symbol(&self, id: u16) -> Option<&'b str> {
        self.input.iter().nth(usize::from(id))
    }

    /// How inputs are split into symbols.
    pub fn input_split(&self) -> Split {
        self.input_split
    }

    /// Splits `text` into input symbols as the model was trained (characters or space-separated).
    pub fn split_input<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let space = self.input_split == Split::Space;
        let mut rest = text;
        core::iter::from_fn(move || {
            if space {
                rest = rest.trim_start_matches(' ');
                let end = rest.find(' ').unwrap_or(rest.len());
                let (tok, tail) = rest.split_at_checked(end)?;
                rest = tail;
                (!tok.is_empty()).then_some(tok)
            } else {
                let c = rest.chars().next()?;
                let (tok, tail) = rest.split_at_checked(c.len_utf8())?;
                rest = tail;
                Some(tok)
            }
        })
    }

    /// Writes output tokens as text: joined with spaces in `space` mode, concatenated otherwise.
    /// Special tokens (ids below 3) are skipped.
    pub fn write_output<W: fmt::Write>(&self, tokens: &[u16], out: &mut W) -> fmt::Result {
        let mut first = true;
        for &t in tokens.iter().filter(|&&t| t >= FIRST_OUTPUT_TOKEN) {
            if self.output_split == Split::Space && !first {
                out.write_char(' ')?;
            }
            first = false;
            out.write_str(self.output_token(t).unwrap_or("?"))?;
        }
        Ok(())
    }
}
