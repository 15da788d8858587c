//! `picoformer train` through the command line: error cases, and resume after a simulated interruption.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_picoformer"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pf-train-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reversal pairs over a small alphabet, deterministic.
fn write_reversal(path: &Path, n: usize, salt: u64) {
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ salt;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut text = String::new();
    for _ in 0..n {
        let len = 2 + (next() % 5) as usize;
        let s: String = (0..len).map(|_| (b'a' + (next() % 6) as u8) as char).collect();
        text.push_str(&format!("{s}\t{}\n", s.chars().rev().collect::<String>()));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn missing_file_is_a_one_line_error() {
    let d = tmp("missing");
    let o = bin()
        .args([
            "train",
            "--data",
            "/nonexistent/train.tsv",
            "--dev",
            "/nonexistent/dev.tsv",
            "--out",
        ])
        .arg(d.join("out"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("/nonexistent/train.tsv"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!d.join("out").exists(), "nothing may be written on error");
}

#[test]
fn line_without_tab_names_file_and_line() {
    let d = tmp("notab");
    let data = d.join("train.tsv");
    std::fs::write(&data, "ab\tba\nno tab here\n").unwrap();
    let o = bin()
        .args(["train", "--data"])
        .arg(&data)
        .arg("--dev")
        .arg(&data)
        .arg("--out")
        .arg(d.join("out"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("{}:2: no tab", data.display())), "{e}");
}

#[test]
fn resume_from_a_directory_that_is_not_a_checkpoint() {
    let d = tmp("badresume");
    let o = bin().args(["train", "--resume"]).arg(&d).output().unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&d.display().to_string()) && e.contains("not a picoformer checkpoint"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let o = bin().args(["train", "--resume"]).arg(d.join("nope")).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("nope"));
}

fn loss_rows(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "step,epoch,loss,lr,target_tokens_per_second,dev_exact_match,dev_token_error_rate"
    );
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| !f[2].is_empty())
        .map(|f| (f[0].to_string(), f[2].to_string()))
        .collect()
}

#[test]
fn resume_continues_the_same_loss_trajectory() {
    let d = tmp("resume");
    let (train, dev) = (d.join("train.tsv"), d.join("dev.tsv"));
    write_reversal(&train, 160, 1);
    write_reversal(&dev, 20, 2);
    let common = |out: &Path| {
        let mut c = bin();
        c.arg("train")
            .arg("--data")
            .arg(&train)
            .arg("--dev")
            .arg(&dev)
            .arg("--out")
            .arg(out);
        c.args([
            "--d-model",
            "16",
            "--heads",
            "2",
            "--d-ff",
            "24",
            "--encoder-layers",
            "1",
            "--decoder-layers",
            "1",
        ]);
        c.args([
            "--batch-size",
            "32",
            "--epochs",
            "3",
            "--log-every",
            "1",
            "--seed",
            "7",
            "--threads",
            "2",
        ]);
        c
    };
    let full = d.join("full");
    let o = common(&full).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let last = String::from_utf8_lossy(&o.stdout).lines().last().unwrap().to_string();
    let json: serde_json::Value = serde_json::from_str(&last).unwrap();
    for key in [
        "target_tokens_per_second",
        "steps",
        "epochs",
        "best_dev_exact_match",
        "peak_rss_bytes",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {last}");
    }
    assert_eq!(json["steps"], 15);

    let cut = d.join("cut");
    let o = common(&cut).args(["--stop-after-steps", "7"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 7);
    for f in [
        "config.json",
        "best.safetensors",
        "last.safetensors",
        "optimizer.safetensors",
        "state.json",
        "log.csv",
    ] {
        assert!(cut.join(f).exists(), "{f} missing");
    }
    let o = bin()
        .arg("train")
        .arg("--resume")
        .arg(&cut)
        .args(["--threads", "2", "--log-every", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let (a, b) = (loss_rows(&full), loss_rows(&cut));
    assert_eq!(a.len(), 15);
    assert_eq!(a, b, "loss trajectories differ after resume");
    let sa = std::fs::read(full.join("last.safetensors")).unwrap();
    let sb = std::fs::read(cut.join("last.safetensors")).unwrap();
    assert!(sa == sb, "final weights differ after resume");
}

/// Every tensor of a safetensors file, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn keep_last_snapshots_average_into_an_exportable_checkpoint() {
    // With the encoder convolution, so its `[d, k]` taps go through checkpoints and export too.
    let d = tmp("average");
    let (train, dev) = (d.join("train.tsv"), d.join("dev.tsv"));
    write_reversal(&train, 96, 3);
    write_reversal(&dev, 12, 4);
    let run = d.join("run");
    let o = bin()
        .arg("train")
        .arg("--data")
        .arg(&train)
        .arg("--dev")
        .arg(&dev)
        .arg("--out")
        .arg(&run)
        .args(["--d-model", "16", "--heads", "2", "--d-ff", "24"])
        .args(["--encoder-layers", "1", "--decoder-layers", "1", "--batch-size", "32"])
        .args([
            "--epochs",
            "5",
            "--keep-last",
            "3",
            "--threads",
            "1",
            "--conv-kernel",
            "3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut snaps: Vec<String> = std::fs::read_dir(run.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    // 3 batches per epoch, one evaluation per epoch: steps 9, 12 and 15 are the last three.
    assert_eq!(
        snaps,
        [
            "step-00000009.safetensors",
            "step-00000012.safetensors",
            "step-00000015.safetensors"
        ]
    );
    // The newest snapshot is the final weights.
    assert_eq!(
        std::fs::read(run.join("snapshots/step-00000015.safetensors")).unwrap(),
        std::fs::read(run.join("last.safetensors")).unwrap()
    );

    let avg = d.join("avg");
    let o = bin()
        .arg("average")
        .arg(&run)
        .args(["--last", "2", "--out"])
        .arg(&avg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let a = tensors(&run.join("snapshots/step-00000012.safetensors"));
    let b = tensors(&run.join("snapshots/step-00000015.safetensors"));
    let mean = tensors(&avg.join("best.safetensors"));
    assert_eq!(mean.len(), a.len());
    let mut differs = false;
    for ((ta, tb), tm) in a.iter().zip(&b).zip(&mean) {
        assert_eq!(ta.0, tm.0);
        for ((x, y), m) in ta.1.iter().zip(&tb.1).zip(&tm.1) {
            let want = ((f64::from(*x) + f64::from(*y)) / 2.0) as f32;
            assert_eq!(*m, want, "{}", ta.0);
            differs |= x != y;
        }
    }
    assert!(differs, "the two snapshots should differ");

    let blob = d.join("avg.pfb");
    let o = bin()
        .args(["export", "--checkpoint"])
        .arg(&avg)
        .args(["--quant", "int8", "--out"])
        .arg(&blob)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bin().args(["inspect", "--json"]).arg(&blob).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["config"]["conv_kernel"], 3);
    assert_eq!(info["format_version"], 2);

    let o = bin()
        .arg("average")
        .arg(&run)
        .args(["--last", "4", "--out"])
        .arg(d.join("x"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("holds 3 snapshot(s), fewer than --last 4"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}
