//! The CLI end to end on the host: data -> train -> export (f32, int8) -> inspect -> eval -> predict,
//! and the bad-input cases of the commands that read blobs, TSVs and checkpoints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_picoformer"))
        .args(args)
        .output()
        .expect("run picoformer")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail, and returns its one-line error.
fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should have failed");
    let err = String::from_utf8(o.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    err.trim_end().to_string()
}

fn last_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().rev().find(|l| l.starts_with('{')).expect("a JSON line")).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pf-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn data_train_export_inspect_eval_predict_round_trip() {
    let d = tmp("roundtrip");
    let data = d.join("data");
    ok(&[
        "data",
        "synth",
        "--task",
        "copy",
        "--n",
        "600",
        "--max-len",
        "6",
        "--split",
        "--out",
        s(&data),
    ]);
    let ck = d.join("ck");
    let train = ok(&[
        "train",
        "--data",
        s(&data.join("train.tsv")),
        "--dev",
        s(&data.join("dev.tsv")),
        "--out",
        s(&ck),
        "--d-model",
        "16",
        "--heads",
        "2",
        "--d-ff",
        "32",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--epochs",
        "2",
        "--json",
    ]);
    let t = last_json(&train);
    for key in [
        "target_tokens_per_second",
        "steps",
        "epochs",
        "best_dev_exact_match",
        "peak_rss_bytes",
    ] {
        assert!(t.get(key).is_some(), "train --json lacks {key}: {t}");
    }
    for (quant, file) in [("f32", "m32.pfb"), ("int8", "m8.pfb")] {
        let blob = d.join(file);
        let e = last_json(&ok(&[
            "export",
            "--checkpoint",
            s(&ck),
            "--quant",
            quant,
            "--out",
            s(&blob),
            "--json",
        ]));
        assert_eq!(e["quant"], quant);
        let check = &e["check"];
        assert!(check["compared"].as_u64().unwrap() > 0);
        if quant == "f32" {
            assert_eq!(
                check["identical"], check["compared"],
                "f32 export must match the trainer exactly"
            );
        }
        let i = last_json(&ok(&["inspect", s(&blob), "--json"]));
        for key in ["format_version", "params", "flash_bytes", "workspace_bytes", "quant"] {
            assert!(i.get(key).is_some(), "inspect --json lacks {key}");
        }
        assert_eq!(i["quant"], quant);
        assert_eq!(
            i["flash_bytes"].as_u64().unwrap(),
            std::fs::metadata(&blob).unwrap().len()
        );
        assert_eq!(i["params"], e["params"]);
        let preds = d.join(format!("{quant}.tsv"));
        let v = last_json(&ok(&[
            "eval",
            "--model",
            s(&blob),
            "--data",
            s(&data.join("test.tsv")),
            "--predictions",
            s(&preds),
            "--json",
        ]));
        for key in [
            "examples",
            "exact_match",
            "wer",
            "token_error_rate",
            "examples_per_second",
        ] {
            assert!(v.get(key).is_some(), "eval --json lacks {key}");
        }
        let em = v["exact_match"].as_f64().unwrap();
        assert!((v["wer"].as_f64().unwrap() - (1.0 - em)).abs() < 1e-9);
        let lines = std::fs::read_to_string(&preds).unwrap();
        assert_eq!(lines.lines().count() as u64, v["examples"].as_u64().unwrap());
        // predict gives, line for line, what eval wrote.
        let (input, prediction) = lines.lines().next().unwrap().split_once('\t').unwrap();
        assert_eq!(ok(&["predict", "--model", s(&blob), input]).trim_end(), prediction);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let d = tmp("errors");
    // A blob from the future: a valid blob with its version field bumped (and its CRC fixed).
    let cfg = picoformer::Config {
        d_model: 8,
        heads: 2,
        d_ff: 8,
        encoder_layers: 1,
        decoder_layers: 1,
        input_vocab: 3,
        output_vocab: 4,
        max_input_len: 4,
        max_output_len: 4,
        norm: picoformer::NormPlacement::Post,
        tied_output: false,
        quant: picoformer::Quant::F32,
        kv_cache: picoformer::Quant::F32,
        input_split: picoformer::Split::Chars,
        output_split: picoformer::Split::Chars,
        layer_norm_eps: 1e-5,
        conv_kernel: 0,
    };
    let tensors: std::collections::HashMap<String, Vec<f32>> = picoformer::TensorId::all(&cfg)
        .map(|id| {
            let (r, c) = id.shape(&cfg);
            (id.to_string(), vec![0.1; r * c])
        })
        .collect();
    let mut bytes =
        picoformer::blob::writer::write_blob(&cfg, &["<pad>", "a", "b"], &["<pad>", "<s>", "</s>", "x"], &tensors)
            .unwrap();
    let good = d.join("good.pfb");
    std::fs::write(&good, &bytes).unwrap();
    bytes[4] = 3;
    let n = bytes.len() - 4;
    let crc = picoformer::blob::crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    let future = d.join("future.pfb");
    std::fs::write(&future, &bytes).unwrap();
    let e = fails(&["inspect", s(&future)]);
    assert!(
        e.contains("version 3 is not supported; this engine reads versions 1 to 2"),
        "{e}"
    );
    assert!(e.contains("future.pfb"), "{e}");
    let e = fails(&["eval", "--model", s(&future), "--data", s(&good)]);
    assert!(e.contains("version 3"), "{e}");

    // A truncated blob.
    let cut = d.join("cut.pfb");
    std::fs::write(&cut, &std::fs::read(&good).unwrap()[..100]).unwrap();
    assert!(fails(&["predict", "--model", s(&cut), "ab"]).contains("truncated"));

    // Missing files name the file.
    let e = fails(&["inspect", "/nonexistent/model.pfb"]);
    assert!(e.contains("/nonexistent/model.pfb"), "{e}");

    // TSV problems name file and line.
    let tsv = d.join("bad.tsv");
    std::fs::write(&tsv, "ab\tx\na\t\n").unwrap();
    let e = fails(&["eval", "--model", s(&good), "--data", s(&tsv)]);
    assert!(e.contains("bad.tsv:2: empty output"), "{e}");
    std::fs::write(&tsv, format!("ab\tx\n{}\tx\n", "a".repeat(5000))).unwrap();
    assert!(fails(&["eval", "--model", s(&good), "--data", s(&tsv)]).contains("bad.tsv:2: line is"));

    // An unknown flag value is one line naming the value, exit code 2.
    let o = run(&[
        "export",
        "--checkpoint",
        s(&d),
        "--quant",
        "int4",
        "--out",
        s(&d.join("x.pfb")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8(o.stderr).unwrap();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("int4"), "{e}");

    // A directory that is not a checkpoint; nothing is written.
    let out = d.join("never.pfb");
    let e = fails(&["export", "--checkpoint", s(&d), "--out", s(&out)]);
    assert!(e.contains(s(&d)), "{e}");
    assert!(!out.exists());

    // Input the model cannot take: predict reports it and fails, without a panic.
    let o = run(&["predict", "--model", s(&good), "abz"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("symbol \"z\" at position 2 is not in the input vocabulary"));
    let _ = std::fs::remove_dir_all(&d);
}
