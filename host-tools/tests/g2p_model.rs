//! The shipped G2P model (`models/g2p-en.pfb`): on the CMUdict test split, the no_std engine's WER and
//! PER are no worse than the figures recorded in `models/g2p-en.json` (greedy and beam), and the
//! emulated Cortex-M4 gives exactly the host engine's pronunciations on a sample of test words and on
//! words outside the dictionary.

use std::path::PathBuf;
use std::process::Command;

use picoformer_host_tools::{engine, eval, qemu};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn shipped_g2p_model_keeps_its_recorded_accuracy_and_runs_identically_on_the_m4() {
    let blob_path = root().join("models/g2p-en.pfb");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("models/g2p-en.json")).unwrap()).unwrap();

    let data = std::env::temp_dir().join(format!("pf-g2p-test-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_picoformer"))
        .args(["data", "cmudict", "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let test = data.join("test.tsv");

    let bytes = engine::load_blob(&blob_path).unwrap();
    for (beam, key) in [(1, "test_greedy"), (3, "test_beam3")] {
        let ev = eval::evaluate(&bytes, &test, beam, 0).unwrap();
        let want = &recorded[key];
        let (wer, per) = (want["wer"].as_f64().unwrap(), want["per"].as_f64().unwrap());
        assert_eq!(ev.scores.examples, 6319, "test words");
        assert_eq!(ev.errors, 0);
        eprintln!(
            "beam {beam}: WER {:.4} (recorded {wer}), PER {:.4} (recorded {per})",
            ev.scores.wer, ev.scores.token_error_rate
        );
        assert!(
            ev.scores.wer <= wer + 1e-9,
            "beam {beam}: WER {} worse than recorded {wer}",
            ev.scores.wer
        );
        assert!(
            ev.scores.token_error_rate <= per + 1e-9,
            "beam {beam}: PER {} worse than recorded {per}",
            ev.scores.token_error_rate
        );
    }

    // A sample of test words (every 250th) and invented words, on the emulated Cortex-M4.
    let text = std::fs::read_to_string(&test).unwrap();
    let mut words: Vec<String> = text
        .lines()
        .step_by(250)
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    words.extend(["picoformer", "zorblat", "quibbleton", "microcontroller"].map(String::from));
    let board = qemu::Board::Mps2An386;
    let firmware = qemu::build_firmware(board).unwrap();
    let out = qemu::run_session(board, &firmware, &blob_path, &words).unwrap();
    let host = qemu::host_outputs(bytes.as_bytes(), &words, 1).unwrap();
    assert_eq!(out.answers, host, "the emulated M4 and the host engine disagree");
    assert!(host.iter().all(|h| !h.starts_with("ERR")), "{host:?}");
    let _ = std::fs::remove_dir_all(&data);
}
