//! `picoformer plot` and the attention heat map write valid, readable PNGs; bad inputs give one-line
//! errors naming the file.

use picoformer_host_tools::plot;

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_picoformer");

/// A fresh empty directory under cargo's per-test temporary directory.
fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("plot_png-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Decodes an RGB(A) PNG: (width, height, RGB pixels).
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

fn count(px: &[[u8; 3]], colour: [u8; 3]) -> usize {
    let n = px.iter().filter(|p| **p == colour).count();
    eprintln!("{colour:?}: {n}");
    n
}

const HEADER: &str = "step,epoch,loss,lr,target_tokens_per_second,dev_exact_match,dev_token_error_rate\n";
const GREEN: [u8; 3] = [0, 140, 70];
const ORANGE: [u8; 3] = [230, 120, 0];

fn write_log(dir: &Path, with_dev: bool) {
    let mut s = String::from(HEADER);
    for step in (10..=400).step_by(10) {
        let loss = 1.0 + 3.0 * (-(step as f64) / 100.0).exp();
        let (em, ter) = if with_dev && step % 100 == 0 {
            (
                format!("{:.3}", step as f64 / 500.0),
                format!("{:.3}", 0.5 - step as f64 / 1000.0),
            )
        } else {
            (String::new(), String::new())
        };
        s.push_str(&format!(
            "{step},{:.2},{loss:.4},0.001,12000,{em},{ter}\n",
            step as f64 / 100.0
        ));
    }
    std::fs::write(dir.join("log.csv"), s).unwrap();
}

#[test]
fn plot_cli_draws_loss_and_dev_curves() {
    let dir = tmp_dir("curves");
    write_log(&dir, true);
    let out = Command::new(BIN).arg("plot").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("40 log rows, 4 dev evaluations"), "{stdout}");
    let png = dir.join("curves.png");
    let (w, h, px) = decode(&png);
    assert_eq!((w, h), (1000, 760));
    assert!(count(&px, GREEN) > 200, "exact-match curve missing");
    assert!(count(&px, ORANGE) > 200, "token-error curve missing");
    // Loss line (blue) present, and text was rendered (dark anti-aliased glyph pixels).
    assert!(count(&px, [0, 0, 255]) > 200, "loss curve missing");
    assert!(!dir.join("curves.png.tmp").exists());
}

#[test]
fn plot_without_dev_rows_draws_only_the_loss() {
    let dir = tmp_dir("nodev");
    write_log(&dir, false);
    let out_png = dir.join("x.png");
    let out = Command::new(BIN)
        .arg("plot")
        .arg(&dir)
        .arg("--out")
        .arg(&out_png)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, _, px) = decode(&out_png);
    assert_eq!(count(&px, GREEN), 0);
    assert_eq!(count(&px, ORANGE), 0);
    assert!(count(&px, [0, 0, 255]) > 200);
}

#[test]
fn parse_log_reads_fractions_percentages_and_empty_dev_columns() {
    let rows = plot::parse_log(
        "step,epoch,loss,lr,target_tokens_per_second,dev_exact_match,dev_token_error_rate\n\
         1,0.1,3.5,0.001,100,,\n2,0.2,3.0,0.001,100,45.5,12\n",
        "log.csv",
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].dev_exact_match, None);
    assert_eq!(rows[1].loss, Some(3.0));
    assert!((rows[1].dev_exact_match.unwrap() - 0.455).abs() < 1e-12);
    assert!((rows[1].dev_token_error_rate.unwrap() - 0.12).abs() < 1e-12);
    let e = plot::parse_log("step,loss\n1,abc\n", "run/log.csv").unwrap_err();
    assert_eq!(format!("{e:#}"), "run/log.csv:2: bad loss value `abc`");
}

#[test]
fn attention_map_colours_cells_by_weight() {
    let dir = tmp_dir("attention");
    let rows: Vec<String> = ["K", "AE", "T"].iter().map(|s| s.to_string()).collect();
    let cols: Vec<String> = ["c", "a", "t"].iter().map(|s| s.to_string()).collect();
    let dark = [8, 48, 107]; // the colour of weight 1.0
                             // A hard diagonal alignment: three cells at 1.0.
    let eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let p = dir.join("eye.png");
    plot::attention_map(&p, &rows, &cols, &eye, "cat").unwrap();
    let (w, h, px) = decode(&p);
    assert!(w >= 320 && h > 100, "{w}x{h}");
    let dark_eye = count(&px, dark);
    // Soft weights never reach 1.0: only the colour bar's top row is that dark.
    let soft = [0.5, 0.25, 0.25, 0.2, 0.6, 0.2, 0.1, 0.1, 0.8];
    let q = dir.join("soft.png");
    plot::attention_map(&q, &rows, &cols, &soft, "cat").unwrap();
    let (_, _, px2) = decode(&q);
    let dark_soft = count(&px2, dark);
    // Each cell is at least 14x14 pixels.
    assert!(dark_eye >= dark_soft + 3 * 14 * 14, "{dark_eye} vs {dark_soft}");
    assert!(dark_soft < 14 * 14);
}

#[test]
fn attention_map_handles_long_labels_and_checks_its_input() {
    let dir = tmp_dir("attention-long");
    let rows: Vec<String> = (0..12).map(|i| format!("tok{i}")).collect();
    let cols: Vec<String> = (0..20).map(|i| format!("word{i}")).collect();
    let weights: Vec<f32> = (0..240).map(|i| ((i * 7) % 20) as f32 / 19.0).collect();
    let p = dir.join("long.png");
    plot::attention_map(&p, &rows, &cols, &weights, "a longer example").unwrap();
    decode(&p);
    let e = plot::attention_map(&p, &rows, &cols, &weights[..10], "x").unwrap_err();
    assert!(
        format!("{e:#}").contains("10 weights for 12 rows x 20 columns"),
        "{e:#}"
    );
    let e = plot::attention_map(dir.join("no/such/dir/a.png"), &rows, &cols, &weights, "x").unwrap_err();
    assert!(format!("{e:#}").contains("no/such/dir/a.png.tmp"), "{e:#}");
}

#[test]
fn plot_errors_are_one_line_and_name_the_file() {
    let dir = tmp_dir("errors");
    let out = Command::new(BIN).arg("plot").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot read ") && err.contains("log.csv"),
        "{err}"
    );

    std::fs::write(dir.join("log.csv"), format!("{HEADER}5,0.1,oops,0.1,1,,\n")).unwrap();
    let out = Command::new(BIN).arg("plot").arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.csv:2: bad loss value `oops`"), "{err}");

    write_log(&dir, true);
    let bad_out = dir.join("missing-dir").join("c.png");
    let out = Command::new(BIN)
        .arg("plot")
        .arg(&dir)
        .arg("--out")
        .arg(&bad_out)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("missing-dir/c.png.tmp"), "{err}");
}
