//! `picoformer data cmudict`: the exact split of issue 6, preparation spot checks, determinism,
//! `--source`, and errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");
const SPLITS: [&str; 3] = ["train", "dev", "test"];

/// A fresh empty directory under cargo's per-test temporary directory.
fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_cmudict-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cmudict(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .arg("data")
        .arg("cmudict")
        .args(args)
        .output()
        .unwrap()
}

fn run_ok(out_dir: &Path) -> String {
    let out = cmudict(&["--out".as_ref(), out_dir.as_os_str()]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Independent reimplementation of the split rule.
fn split_of(word: &str) -> usize {
    let hex: String = Sha256::digest(word.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match u64::from_str_radix(&hex, 16).unwrap() % 100 {
        0..=89 => 0,
        90..=94 => 1,
        _ => 2,
    }
}

#[test]
fn reference_split_counts_and_spot_checks() {
    let dir = tmp_dir("ref");
    let stdout = run_ok(&dir);
    let mut words = [0usize; 3];
    let mut lines = [0usize; 3];
    let mut phonemes = BTreeSet::new();
    let mut variants: HashMap<String, Vec<String>> = HashMap::new();
    let mut texts = Vec::new();
    for (s, name) in SPLITS.iter().enumerate() {
        let text = std::fs::read_to_string(dir.join(format!("{name}.tsv"))).unwrap();
        let mut seen = BTreeSet::new();
        let mut prev: Option<String> = None;
        for line in text.lines() {
            let (word, phones) = line.split_once('\t').unwrap();
            assert!(!word.is_empty() && !phones.is_empty(), "{line:?}");
            // Sorted by word; variants of a word are adjacent.
            if let Some(p) = &prev {
                assert!(p.as_str() <= word, "order: {p} before {word}");
                assert!(p == word || !seen.contains(word), "{word} not adjacent");
            }
            prev = Some(word.to_string());
            assert_eq!(split_of(word), s, "{word} in {name}");
            assert!(
                word.chars().all(|c| c.is_ascii_lowercase() || "'-.".contains(c)),
                "{word}"
            );
            for p in phones.split(' ') {
                assert!(!p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase()), "{line:?}");
                phonemes.insert(p.to_string());
            }
            seen.insert(word.to_string());
            variants.entry(word.to_string()).or_default().push(phones.to_string());
            lines[s] += 1;
        }
        words[s] = seen.len();
        texts.push(text);
    }
    assert_eq!(words, [113_444, 6_289, 6_319]);
    assert_eq!(lines, [121_632, 6_734, 6_800]);
    for (s, name) in SPLITS.iter().enumerate() {
        let row = format!("{name:<6} {:>8} {:>8}", words[s], lines[s]);
        assert!(stdout.contains(&row), "missing {row:?} in\n{stdout}");
    }
    assert!(
        stdout.contains("126052 words, 135166 pronunciations, 39 phonemes"),
        "{stdout}"
    );

    // The 39 ARPAbet phonemes, stress digits gone.
    let arpabet: BTreeSet<String> = "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P \
                                     R S SH T TH UH UW V W Y Z ZH"
        .split(' ')
        .map(String::from)
        .collect();
    assert_eq!(phonemes, arpabet);

    // Variants kept, in dictionary order, each word in one split only (the map above would have
    // merged a word split across files, and split_of was checked per line).
    assert_eq!(variants["read"], ["R EH D", "R IY D"]);
    assert_eq!(variants["tomato"], ["T AH M EY T OW", "T AH M AA T OW"]);
    assert_eq!(variants["a"], ["AH", "EY"]);
    assert_eq!(variants["abbott"], ["AE B AH T"]);
    // ` #` comments are dropped: "aalborg AO1 L B AO0 R G # place, danish".
    assert_eq!(variants["aalborg"], ["AO L B AO R G", "AA L B AO R G"]);
    // No word keeps a "(2)" marker.
    assert!(variants.keys().all(|w| !w.contains('(')));
    let multi = variants.values().filter(|v| v.len() > 1).count();
    assert!(multi > 8_000, "{multi} words with variants");
    assert!(!dir.join("train.tsv.tmp").exists());

    // Deterministic: a second run gives identical files.
    let dir2 = tmp_dir("ref2");
    run_ok(&dir2);
    for (s, name) in SPLITS.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(dir2.join(format!("{name}.tsv"))).unwrap(),
            texts[s]
        );
    }
}

#[test]
fn source_file_plain_or_gzip_is_prepared_by_the_same_rules() {
    let dir = tmp_dir("source");
    let dict = "b AH0 B # comment\nab EY1 B IY1\nAb(2) AE1 B\nzed Z EH1 D\n'em AH0 M\n";
    let plain = dir.join("small.dict");
    std::fs::write(&plain, dict).unwrap();
    let gz = dir.join("small.dict.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, dict.as_bytes()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();

    let mut results = Vec::new();
    for src in [&plain, &gz] {
        let out_dir = dir.join(format!("out-{}", src.extension().unwrap().to_str().unwrap()));
        let out = cmudict(&[
            "--out".as_ref(),
            out_dir.as_os_str(),
            "--source".as_ref(),
            src.as_os_str(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.contains("not cmudict 1.1.3"), "{stdout}");
        let mut all: BTreeMap<usize, String> = BTreeMap::new();
        for (s, name) in SPLITS.iter().enumerate() {
            all.insert(s, std::fs::read_to_string(out_dir.join(format!("{name}.tsv"))).unwrap());
        }
        results.push(all);
    }
    assert_eq!(results[0], results[1]);
    let mut lines: Vec<String> = results[0].values().flat_map(|t| t.lines().map(String::from)).collect();
    lines.sort();
    assert_eq!(
        lines,
        ["'em\tAH M", "ab\tAE B", "ab\tEY B IY", "b\tAH B", "zed\tZ EH D"]
    );
    // Both variants of "ab" are in the file of its split, in dictionary order.
    let ab = &results[0][&split_of("ab")];
    assert!(ab.contains("ab\tEY B IY\nab\tAE B\n"), "{ab:?}");
}

fn first_error_line(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = tmp_dir("errors");
    let missing = dir.join("missing.dict");
    let err = first_error_line(&cmudict(&[
        "--out".as_ref(),
        dir.as_os_str(),
        "--source".as_ref(),
        missing.as_os_str(),
    ]));
    assert!(
        err.starts_with("error: cannot read ") && err.contains("missing.dict"),
        "{err}"
    );

    let bad = dir.join("bad.dict");
    std::fs::write(&bad, "ok OW1 K EY1\nlonely\n").unwrap();
    let err = first_error_line(&cmudict(&[
        "--out".as_ref(),
        dir.as_os_str(),
        "--source".as_ref(),
        bad.as_os_str(),
    ]));
    assert!(
        err.contains("bad.dict") && err.contains("line 2") && err.contains("no phonemes"),
        "{err}"
    );

    // Output "directory" that is a file.
    let file = dir.join("plain-file");
    std::fs::write(&file, "").unwrap();
    let err = first_error_line(&cmudict(&["--out".as_ref(), file.as_os_str()]));
    assert!(
        err.contains("cannot create directory") && err.contains("plain-file"),
        "{err}"
    );
}
