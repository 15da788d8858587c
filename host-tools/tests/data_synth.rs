//! `picoformer data synth`: correct outputs for every task, determinism for a seed, splits, and
//! one-line errors.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");

/// A fresh empty directory under cargo's per-test temporary directory.
fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_synth-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn synth(args: &[&str]) -> Output {
    Command::new(BIN).arg("data").arg("synth").args(args).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn pairs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap_or_else(|| panic!("no tab in {l:?}"));
            (a.to_string(), b.to_string())
        })
        .collect()
}

#[test]
fn each_task_computes_its_output() {
    let dir = tmp_dir("tasks");
    for task in ["reverse", "copy", "sort"] {
        let f = dir.join(format!("{task}.tsv"));
        let f_s = f.to_str().unwrap();
        ok(synth(&[
            "--task",
            task,
            "--n",
            "500",
            "--out",
            f_s,
            "--min-len",
            "2",
            "--max-len",
            "7",
            "--alphabet",
            "xyz01",
        ]));
        let p = pairs(&f);
        assert_eq!(p.len(), 500);
        let mut inputs = HashSet::new();
        let mut lengths = HashSet::new();
        for (i, o) in &p {
            assert!(inputs.insert(i.clone()), "duplicate input {i}");
            assert!(i.chars().all(|c| "xyz01".contains(c)), "{i}");
            lengths.insert(i.chars().count());
            let expected: String = match task {
                "reverse" => i.chars().rev().collect(),
                "copy" => i.clone(),
                _ => {
                    let mut c: Vec<char> = i.chars().collect();
                    c.sort();
                    c.into_iter().collect()
                }
            };
            assert_eq!(o, &expected, "{task} of {i}");
        }
        // Every length in 2..=7 occurs, none outside.
        assert_eq!(lengths, (2..=7).collect::<HashSet<_>>());
        assert!(!dir.join(format!("{task}.tsv.tmp")).exists());
    }
}

#[test]
fn same_seed_same_file_other_seed_other_file() {
    let dir = tmp_dir("seed");
    let run = |name: &str, seed: &str| {
        let f = dir.join(name);
        ok(synth(&[
            "--task",
            "reverse",
            "--n",
            "300",
            "--seed",
            seed,
            "--out",
            f.to_str().unwrap(),
        ]));
        std::fs::read(&f).unwrap()
    };
    let a = run("a.tsv", "7");
    let b = run("b.tsv", "7");
    let c = run("c.tsv", "8");
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Portable stream: ChaCha8 with our own sampling, so these lines never change.
    let text = String::from_utf8(a).unwrap();
    let p = pairs(&dir.join("a.tsv"));
    assert_eq!(p.len(), 300);
    assert_eq!(
        text.lines().take(2).collect::<Vec<_>>(),
        ["ycfhzv\tvzhfcy", "czajhlqfv\tvfqlhjazc"]
    );
}

#[test]
fn split_writes_train_dev_test_90_5_5_without_shared_inputs() {
    let dir = tmp_dir("split");
    let out = ok(synth(&[
        "--task",
        "sort",
        "--n",
        "2000",
        "--split",
        "--out",
        dir.join("sorted").to_str().unwrap(),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sizes: Vec<usize> = ["train", "dev", "test"]
        .iter()
        .map(|s| pairs(&dir.join("sorted").join(format!("{s}.tsv"))).len())
        .collect();
    assert_eq!(sizes, vec![1800, 100, 100], "{stdout}");
    let mut all = HashSet::new();
    for s in ["train", "dev", "test"] {
        for (i, _) in pairs(&dir.join("sorted").join(format!("{s}.tsv"))) {
            assert!(all.insert(i.clone()), "{i} in two splits");
        }
    }
    // The split is the unsplit file cut in order, so both interfaces agree.
    let whole = dir.join("whole.tsv");
    ok(synth(&[
        "--task",
        "sort",
        "--n",
        "2000",
        "--out",
        whole.to_str().unwrap(),
    ]));
    let joined: String = ["train", "dev", "test"]
        .iter()
        .map(|s| std::fs::read_to_string(dir.join("sorted").join(format!("{s}.tsv"))).unwrap())
        .collect();
    assert_eq!(joined, std::fs::read_to_string(whole).unwrap());
}

#[test]
fn small_spaces_are_exhausted_exactly_or_refused() {
    let dir = tmp_dir("space");
    // Exactly 2 + 4 = 6 strings of length 1..=2 over "ab": all of them.
    let f = dir.join("all.tsv");
    ok(synth(&[
        "--task",
        "copy",
        "--n",
        "6",
        "--min-len",
        "1",
        "--max-len",
        "2",
        "--alphabet",
        "ab",
        "--out",
        f.to_str().unwrap(),
    ]));
    let mut got: Vec<String> = pairs(&f).into_iter().map(|p| p.0).collect();
    got.sort();
    assert_eq!(got, ["a", "aa", "ab", "b", "ba", "bb"]);
    let out = synth(&[
        "--task",
        "copy",
        "--n",
        "7",
        "--min-len",
        "1",
        "--max-len",
        "2",
        "--alphabet",
        "ab",
        "--out",
        f.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--n 7 is more than the 6 distinct strings"), "{err}");
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.starts_with("error:"), "{err}");
    err.lines().next().unwrap().to_string()
}

#[test]
fn errors_name_the_value_or_file() {
    let dir = tmp_dir("errors");
    let f = dir.join("x.tsv");
    let f_s = f.to_str().unwrap();
    let line = one_line_error(&synth(&["--task", "shuffle", "--n", "5", "--out", f_s]));
    assert!(line.contains("'shuffle'") && line.contains("--task"), "{line}");

    let bad = dir.join("no-such-dir").join("x.tsv");
    let out = synth(&["--task", "copy", "--n", "5", "--out", bad.to_str().unwrap()]);
    let line = one_line_error(&out);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end().lines().count(), 1);
    assert!(line.contains("no-such-dir/x.tsv.tmp"), "{line}");

    let line = one_line_error(&synth(&[
        "--task",
        "copy",
        "--n",
        "5",
        "--out",
        f_s,
        "--alphabet",
        "aba",
    ]));
    assert!(line.contains("repeats 'a'"), "{line}");
    let line = one_line_error(&synth(&[
        "--task",
        "copy",
        "--n",
        "5",
        "--out",
        f_s,
        "--min-len",
        "5",
        "--max-len",
        "4",
    ]));
    assert!(line.contains("--min-len 5 is greater than --max-len 4"), "{line}");
    // A file where the split directory should be.
    std::fs::write(&f, "").unwrap();
    let out = synth(&["--task", "copy", "--n", "50", "--split", "--out", f_s]);
    let line = one_line_error(&out);
    assert!(
        line.contains("cannot create directory") && line.contains("x.tsv"),
        "{line}"
    );
}
