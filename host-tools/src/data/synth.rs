//! `picoformer data synth`: synthetic string tasks for smoke tests and demos.
//!
//! Each example is a random string over an alphabet (length uniform in `min_len..=max_len`, then
//! each character uniform) and its transformation. Inputs are distinct, so no input appears in
//! two splits. Randomness is ChaCha8 seeded from `--seed`, with our own unbiased integer sampling,
//! so a seed gives the same file on every platform and with every version of `rand`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{create_dir, write_atomic};

/// A synthetic task: how the output is computed from the input.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// The input reversed (`abc` -> `cba`).
    Reverse,
    /// The input unchanged (`abc` -> `abc`).
    Copy,
    /// The input's characters sorted (`cab` -> `abc`).
    Sort,
}

impl Task {
    /// The output for `input`.
    pub fn apply(self, input: &str) -> String {
        match self {
            Task::Reverse => input.chars().rev().collect(),
            Task::Copy => input.to_string(),
            Task::Sort => {
                let mut c: Vec<char> = input.chars().collect();
                c.sort_unstable();
                c.into_iter().collect()
            }
        }
    }
}

/// Arguments of `picoformer data synth`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    picoformer data synth --task reverse --n 1000 --out reverse.tsv\n  \
    picoformer data synth --task sort --n 20000 --split --out data/sort   \
    # data/sort/{train,dev,test}.tsv")]
pub struct SynthArgs {
    /// The task: the output is the input reversed, copied, or with its characters sorted.
    #[arg(long, value_enum)]
    pub task: Task,
    /// Number of examples (distinct inputs) in total.
    #[arg(long)]
    pub n: usize,
    /// Output TSV file; with --split, a directory that receives train.tsv, dev.tsv and test.tsv.
    #[arg(long)]
    pub out: PathBuf,
    /// Split the N examples 90% / 5% / 5% into OUT/train.tsv, OUT/dev.tsv, OUT/test.tsv
    /// (dev and test get at least one example each).
    #[arg(long)]
    pub split: bool,
    /// Random seed: the same seed and options always give the same files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Shortest input, in characters.
    #[arg(long, default_value_t = 3)]
    pub min_len: usize,
    /// Longest input, in characters.
    #[arg(long, default_value_t = 10)]
    pub max_len: usize,
    /// The characters inputs are drawn from (distinct, no whitespace).
    #[arg(long, default_value = "abcdefghijklmnopqrstuvwxyz")]
    pub alphabet: String,
}

/// Runs `picoformer data synth`.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let alphabet = check_alphabet(&args.alphabet)?;
    let inputs = generate_inputs(args.n, args.min_len, args.max_len, &alphabet, args.seed)?;
    let lines: Vec<String> = inputs
        .iter()
        .map(|i| format!("{i}\t{}\n", args.task.apply(i)))
        .collect();
    if args.split {
        let n = lines.len();
        if n < 3 {
            anyhow::bail!("--split needs --n of at least 3 (one example per split), got {n}");
        }
        let dev = (n * 5 / 100).max(1);
        let test = dev;
        let train = n - dev - test;
        create_dir(&args.out)?;
        let parts = [
            ("train.tsv", &lines[..train]),
            ("dev.tsv", &lines[train..train + dev]),
            ("test.tsv", &lines[train + dev..]),
        ];
        for (name, part) in parts {
            let path = args.out.join(name);
            write_atomic(&path, part.concat().as_bytes())?;
            println!("{:>8} lines -> {}", part.len(), path.display());
        }
    } else {
        write_atomic(&args.out, lines.concat().as_bytes())?;
        println!("{:>8} lines -> {}", lines.len(), args.out.display());
    }
    Ok(())
}

/// The alphabet's characters, after checking it is non-empty, distinct and free of whitespace.
fn check_alphabet(alphabet: &str) -> anyhow::Result<Vec<char>> {
    let chars: Vec<char> = alphabet.chars().collect();
    if chars.is_empty() {
        anyhow::bail!("--alphabet is empty");
    }
    if let Some(c) = chars.iter().find(|c| c.is_whitespace() || c.is_control()) {
        anyhow::bail!("--alphabet {alphabet:?} contains whitespace or a control character {c:?}");
    }
    let mut seen = HashSet::new();
    if let Some(c) = chars.iter().find(|c| !seen.insert(**c)) {
        anyhow::bail!("--alphabet {alphabet:?} repeats {c:?}");
    }
    Ok(chars)
}

/// `n` distinct random strings over `alphabet` with lengths in `min_len..=max_len`, in the order
/// drawn from ChaCha8 seeded with `seed`.
pub fn generate_inputs(
    n: usize,
    min_len: usize,
    max_len: usize,
    alphabet: &[char],
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    if n == 0 {
        anyhow::bail!("--n must be at least 1");
    }
    if min_len == 0 {
        anyhow::bail!("--min-len must be at least 1 (an empty input is not a valid TSV line)");
    }
    if min_len > max_len {
        anyhow::bail!("--min-len {min_len} is greater than --max-len {max_len}");
    }
    // How many distinct strings exist (saturating): refuse an impossible request up front.
    let k = alphabet.len() as u128;
    let mut possible: u128 = 0;
    let mut pow: u128 = 1;
    for len in 0..=max_len {
        if len >= min_len {
            possible = possible.saturating_add(pow);
        }
        pow = pow.saturating_mul(k);
    }
    if possible < n as u128 {
        anyhow::bail!(
            "--n {n} is more than the {possible} distinct strings of length {min_len}..={max_len} \
             over {} characters",
            alphabet.len()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let span = u32::try_from(max_len - min_len + 1).map_err(|_| anyhow::anyhow!("--max-len too large"))?;
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut draws: u64 = 0;
    let max_draws = 1_000_000u64.saturating_add(200u64.saturating_mul(n as u64));
    while out.len() < n {
        draws += 1;
        if draws > max_draws {
            anyhow::bail!(
                "could not draw {n} distinct inputs in {max_draws} tries: widen --min-len/--max-len or \
                 --alphabet, or lower --n"
            );
        }
        let len = min_len + uniform(&mut rng, span) as usize;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            let _ = s.write_char(alphabet[uniform(&mut rng, alphabet.len() as u32) as usize]);
        }
        if seen.insert(s.clone()) {
            out.push(s);
        }
    }
    Ok(out)
}

/// A uniform integer in `0..n` (`n >= 1`), by rejection sampling so there is no modulo bias.
fn uniform(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    let limit = u32::MAX - u32::MAX % n;
    loop {
        let x = rng.next_u32();
        if x < limit {
            return x % n;
        }
    }
}
