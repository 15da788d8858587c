//! End-to-end tests: models built here run on every emulated board under QEMU and must answer
//! exactly as the host engine does; bad blobs and bad lines are reported without hangs; a long
//! session leaves the firmware responsive.
//!
//! Needs `qemu-system-arm` and the thumb targets; each board's release firmware is built once per
//! test run (sequentially, incrementally).

use picoformer_host_tools::qemu;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use picoformer::blob::writer::write_blob;
use picoformer::{Config, Model, NormPlacement, Quant, Split, TensorId};
use qemu::{Board, SessionOptions};

/// SplitMix64: small and deterministic.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const INPUT_SYMBOLS: [&str; 9] = ["<pad>", "a", "b", "c", "d", "e", "f", "g", "h"];
const OUTPUT_TOKENS: [&str; 10] = ["<pad>", "<s>", "</s>", "A", "B", "C", "D", "E", "F", "GH"];

/// A model small enough for the micro:bit's 10 KiB buffer, big enough to exercise every layer.
fn small_config(quant: Quant, norm: NormPlacement) -> Config {
    Config {
        d_model: 16,
        heads: 2,
        d_ff: 24,
        encoder_layers: 1,
        decoder_layers: 2,
        input_vocab: INPUT_SYMBOLS.len(),
        output_vocab: OUTPUT_TOKENS.len(),
        max_input_len: 12,
        max_output_len: 10,
        norm,
        tied_output: norm == NormPlacement::Pre,
        quant,
        kv_cache: Quant::F32,
        input_split: Split::Chars,
        output_split: Split::Space,
        layer_norm_eps: 1e-5,
        conv_kernel: 0,
    }
}

/// Writes a blob with random weights for `cfg` to a temporary file and returns its path.
fn write_random_blob(cfg: &Config, seed: u64, name: &str) -> PathBuf {
    let mut rng = Rng(seed);
    let mut tensors: HashMap<String, Vec<f32>> = HashMap::new();
    for id in TensorId::all(cfg) {
        let (rows, cols) = id.shape(cfg);
        let name = id.to_string();
        let scale = if id.is_matrix() {
            1.5 / (cols as f32).sqrt()
        } else {
            0.2
        };
        let mut v: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() * scale).collect();
        if name.contains("norm") && name.ends_with("weight") {
            v.iter_mut().for_each(|x| *x += 1.0);
        }
        if name == "out_proj.bias" {
            v[2] += 0.8; // END: outputs of varied lengths
        }
        tensors.insert(name, v);
    }
    let bytes = write_blob(
        cfg,
        &INPUT_SYMBOLS[..cfg.input_vocab],
        &OUTPUT_TOKENS[..cfg.output_vocab],
        &tensors,
    )
    .expect("write blob");
    let path = temp_dir().join(format!("{name}.pfb"));
    std::fs::write(&path, bytes).expect("write blob file");
    path
}

fn temp_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("picoformer-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
    .clone()
}

/// Builds each board's firmware once per test run, one build at a time.
fn firmware(board: Board) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<Board, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(board)
        .or_insert_with(|| qemu::build_firmware(board).unwrap_or_else(|e| panic!("{e:#}")))
        .clone()
}

/// A fixed input set: valid words of every length, plus inputs the model must refuse.
fn fixed_inputs() -> Vec<String> {
    let mut rng = Rng(7);
    let mut inputs: Vec<String> = (1..=12)
        .flat_map(|len| [len, len])
        .map(|len| (0..len).map(|_| (b'a' + rng.below(8) as u8) as char).collect())
        .collect();
    inputs.extend(["xyz", "", "abcdefghabcde", "ab cd", "!ab", "é"].map(String::from));
    inputs
}

/// Sends `lines` verbatim (a leading `!` is a command) and collects one answer per line.
fn raw_session(board: Board, blob: &std::path::Path, lines: &[String]) -> qemu::SessionOutput {
    let opts = SessionOptions {
        raw: true,
        ..Default::default()
    };
    qemu::run_session_with(board, &firmware(board), blob, lines, &opts).unwrap_or_else(|e| panic!("{e:#}"))
}

fn host(blob: &std::path::Path, inputs: &[String], beam: usize) -> Vec<String> {
    let bytes = picoformer_host_tools::engine::load_blob(blob).expect("read blob");
    qemu::host_outputs(bytes.as_bytes(), inputs, beam).expect("host outputs")
}

fn assert_same(board: Board, what: &str, mcu: &[String], host: &[String], inputs: &[String]) {
    assert_eq!(mcu.len(), host.len(), "{} {what}: answer count", board.name());
    for ((m, h), i) in mcu.iter().zip(host).zip(inputs) {
        assert_eq!(m, h, "{} {what}: input {i:?}", board.name());
    }
}

#[test]
fn every_board_gives_the_host_engines_outputs_in_f32_and_int8() {
    let inputs = fixed_inputs();
    for board in Board::ALL {
        let elf = firmware(board);
        for (quant, norm, kv_cache, conv, tag) in [
            (Quant::F32, NormPlacement::Post, Quant::F32, 0, "f32"),
            (Quant::Int8, NormPlacement::Pre, Quant::F32, 0, "int8"),
            (Quant::Int8, NormPlacement::Post, Quant::Int8, 0, "int8"),
            (Quant::Int8, NormPlacement::Pre, Quant::Int8, 5, "int8"),
        ] {
            let mut cfg = small_config(quant, norm);
            cfg.kv_cache = kv_cache;
            cfg.conv_kernel = conv;
            let kv = if kv_cache == Quant::Int8 { "-kv8" } else { "" };
            let conv_tag = if conv > 0 { "-conv" } else { "" };
            let blob = write_random_blob(&cfg, 42, &format!("{}-{tag}{kv}{conv_tag}", board.name()));
            let out = qemu::run_session(board, &elf, &blob, &inputs).unwrap_or_else(|e| panic!("{e:#}"));
            let expected = host(&blob, &inputs, 1);
            assert!(
                expected.iter().filter(|e| !e.starts_with("ERR")).count() >= 20,
                "too few valid inputs"
            );
            assert!(expected.iter().any(|e| e.starts_with("ERR")), "no refused inputs");
            assert_same(board, tag, &out.answers, &expected, &inputs);

            // What the firmware reports about itself agrees with the host's view of the board.
            let model_bytes = std::fs::read(&blob).unwrap();
            assert_eq!(out.info["board"], board.name());
            assert_eq!(out.info["quant"], tag);
            assert_eq!(
                out.info["blob"].split('@').next(),
                Some(model_bytes.len().to_string().as_str())
            );
            let (need, buffer) = out.info["workspace"].split_once('/').expect("workspace=NEED/BUFFER");
            assert_eq!(
                buffer.parse::<usize>().unwrap(),
                board.buffer_bytes(),
                "{}: buffer size drifted",
                board.name()
            );
            let aligned = picoformer::blob::writer::AlignedBytes::new(&model_bytes);
            let model = Model::from_blob(aligned.as_bytes()).unwrap();
            let max_beam: usize = out.info["max_beam"].parse().unwrap();
            assert_eq!(need.parse::<usize>().unwrap(), qemu::needed_bytes(&model, max_beam));

            // Deterministic instruction counts: every input was measured, refused ones cost little.
            assert_eq!(out.instructions.len(), inputs.len());
            let valid: Vec<u64> = out
                .instructions
                .iter()
                .zip(&expected)
                .filter(|(_, e)| !e.starts_with("ERR"))
                .map(|(n, _)| *n)
                .collect();
            let mean = valid.iter().sum::<u64>() / valid.len() as u64;
            assert!(
                valid.iter().all(|&n| n > 1000),
                "{}: implausible counts {valid:?}",
                board.name()
            );
            let peak = out.stack_peak.expect("stack");
            assert!(peak > 0 && peak < out.stack_size.unwrap());
            eprintln!(
                "{:<11} {tag:<4}{kv:<4}{conv_tag:<5} params={} blob={}B workspace={} instructions/input={mean} peak_stack={peak}B",
                board.name(),
                out.info["params"],
                model_bytes.len(),
                out.info["workspace"]
            );
        }
    }
}

#[test]
fn beam_search_matches_the_host_engine() {
    let inputs = fixed_inputs();
    for board in [Board::Mps2An386, Board::Microbit] {
        let elf = firmware(board);
        let cfg = small_config(Quant::Int8, NormPlacement::Post);
        let blob = write_random_blob(&cfg, 9, &format!("{}-beam", board.name()));
        let opts = SessionOptions {
            beam: 2,
            ..Default::default()
        };
        let out = qemu::run_session_with(board, &elf, &blob, &inputs, &opts).unwrap_or_else(|e| panic!("{e:#}"));
        assert_same(board, "beam 2", &out.answers, &host(&blob, &inputs, 2), &inputs);
    }
}

#[test]
fn corrupt_or_missing_blobs_are_reported_and_qemu_exits_nonzero() {
    let cfg = small_config(Quant::F32, NormPlacement::Post);
    let good = std::fs::read(write_random_blob(&cfg, 5, "corrupt-src")).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let mut bad_version = good.clone();
    bad_version[4] = 9;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("flipped", flipped, "checksum mismatch"),
        ("truncated", good[..good.len() - 100].to_vec(), "invalid blob"),
        ("version", bad_version, "version 9 is not supported"),
        ("garbage", vec![0x55; 300], "bad magic"),
    ];
    for board in [Board::Mps2An386, Board::Mps2An505, Board::Microbit] {
        let elf = firmware(board);
        for (name, bytes, message) in &cases {
            let path = temp_dir().join(format!("{}-{name}.pfb", board.name()));
            std::fs::write(&path, bytes).unwrap();
            let started = std::time::Instant::now();
            let err = qemu::run_session(board, &elf, &path, &["abc".to_string()]).expect_err("a bad blob must fail");
            let msg = format!("{err:#}");
            assert!(msg.contains("did not start: ERR "), "{}/{name}: {msg}", board.name());
            assert!(msg.contains(message), "{}/{name}: {msg}", board.name());
            assert!(msg.contains("exit code Some(2)"), "{}/{name}: {msg}", board.name());
            assert!(
                started.elapsed().as_secs() < 20,
                "{}/{name}: took {:?}",
                board.name(),
                started.elapsed()
            );
        }
    }
}

#[test]
fn a_model_too_big_for_the_microbit_is_refused_plainly() {
    let mut cfg = small_config(Quant::Int8, NormPlacement::Post);
    cfg.d_model = 32;
    cfg.d_ff = 64;
    cfg.max_input_len = 32;
    cfg.max_output_len = 32;
    let blob = write_random_blob(&cfg, 3, "too-big");
    let bytes = picoformer_host_tools::engine::load_blob(&blob).unwrap();
    let model = Model::from_blob(bytes.as_bytes()).unwrap();
    // The host refuses before starting QEMU...
    let err = qemu::check_fits(Board::Microbit, &model).expect_err("must not fit");
    assert!(format!("{err}").contains("does not fit microbit"), "{err}");
    qemu::check_fits(Board::Mps2An386, &model).expect("fits the MPS2 boards");
    // ...and the firmware, run anyway, says so too and exits with code 3.
    let err = qemu::run_session(Board::Microbit, &firmware(Board::Microbit), &blob, &[]).expect_err("must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("ERR model does not fit") && msg.contains("exit code Some(3)"),
        "{msg}"
    );
}

#[test]
fn bad_lines_get_err_and_the_next_line_is_answered() {
    let board = Board::Mps2An386;
    let cfg = small_config(Quant::F32, NormPlacement::Post);
    let blob = write_random_blob(&cfg, 11, "bad-lines");
    let lines: Vec<String> = [
        "abc",
        "!bogus",
        "!beam 99",
        "!beam x",
        &"a".repeat(300),
        "zzz",
        "",
        "!!abc",
        "!beam 2",
        "abc",
        "!beam 1",
        "abc",
        "!icount",
        "!info",
    ]
    .map(String::from)
    .to_vec();
    let out = raw_session(board, &blob, &lines);
    let a = &out.answers;
    let host = host(
        &blob,
        &["abc".to_string(), "zzz".to_string(), String::new(), "!abc".to_string()],
        1,
    );
    let beam2 = self::host(&blob, &["abc".to_string()], 2);
    assert_eq!(a[0], host[0]);
    assert!(a[1].starts_with("ERR unknown command"), "{}", a[1]);
    assert!(a[2].starts_with("ERR beam width 99"), "{}", a[2]);
    assert_eq!(a[3], "ERR usage: !beam N");
    assert_eq!(a[4], "ERR line of 300 bytes is longer than the 256-byte limit");
    assert_eq!(a[5], host[1]);
    assert!(a[5].starts_with("ERR symbol \"z\""), "{}", a[5]);
    assert_eq!(a[6], host[2]);
    assert_eq!(a[7], host[3]);
    assert_eq!(a[8], "OK beam=2");
    assert_eq!(a[9], beam2[0]);
    assert_eq!(a[10], "OK beam=1");
    assert_eq!(a[11], host[0]);
    assert!(a[12].starts_with("ICOUNT instructions="), "{}", a[12]);
    assert!(a[13].starts_with("INFO board=mps2-an386 format=1 "), "{}", a[13]);
}

/// `!profile` runs the input with the engine's per-phase profile: the phases and the rest add up
/// to the inference's instructions, which are those of the same input unprofiled plus a little.
#[test]
fn the_profile_accounts_for_every_instruction_of_an_inference() {
    let board = Board::Mps2An386;
    let mut cfg = small_config(Quant::Int8, NormPlacement::Pre);
    cfg.kv_cache = Quant::Int8;
    let blob = write_random_blob(&cfg, 12, "profile");
    let lines: Vec<String> = ["abcdef", "!icount", "!profile abcdef", "!profile zzz"]
        .map(String::from)
        .to_vec();
    let out = raw_session(board, &blob, &lines);
    let a = &out.answers;
    let plain: u64 = qemu::parse_fields(a[1].trim_start_matches("ICOUNT "))["instructions"]
        .parse()
        .unwrap();
    let rest = a[2].strip_prefix("PROFILE ").unwrap_or_else(|| panic!("{}", a[2]));
    let f = qemu::parse_fields(rest);
    let instr = |k: &str| -> u64 { f[k].split('/').next().unwrap().parse().unwrap() };
    let calls = |k: &str| -> u64 { f[k].split_once('/').unwrap().1.parse().unwrap() };
    let total = instr("instructions");
    let phases = [
        "matvec",
        "quantize",
        "attention",
        "softmax",
        "layernorm",
        "cache",
        "embed",
        "output",
    ];
    let sum: u64 = phases.iter().map(|p| instr(p)).sum::<u64>() + instr("conv") + instr("other");
    // Each field is rounded down on its own: the parts may fall short of the total by one each.
    assert!(sum <= total && total - sum <= 9, "{sum} vs {total}: {}", a[2]);
    assert!(
        total >= plain && total <= plain + plain / 10,
        "profiled {total} vs plain {plain}"
    );
    let tokens: u64 = f["tokens"].parse().unwrap();
    let host = host(&blob, &["abcdef".to_string()], 1);
    assert_eq!(tokens as usize, host[0].split_whitespace().count() + 1);
    assert_eq!(calls("output"), tokens);
    assert_eq!(calls("embed"), 6 + tokens);
    for p in phases {
        assert!(instr(p) > 0 && calls(p) > 0, "{p}: {}", a[2]);
    }
    assert!(a[3].starts_with("ERR symbol \"z\""), "{}", a[3]);
}

#[test]
fn a_thousand_random_lines_leave_the_firmware_responsive() {
    let alphabet: Vec<char> = "abcdefgh abcdefghxyz!é".chars().collect();
    let mut rng = Rng(2024);
    let lines: Vec<String> = (0..1000)
        .map(|_| {
            (0..rng.below(16))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        })
        .collect();
    for board in [Board::Mps2An386, Board::Microbit] {
        let cfg = small_config(Quant::Int8, NormPlacement::Pre);
        let blob = write_random_blob(&cfg, 77, &format!("{}-random", board.name()));
        let mut inputs = lines.clone();
        inputs.push("abc".to_string());
        let started = std::time::Instant::now();
        let out = qemu::run_session_with(board, &firmware(board), &blob, &inputs, &SessionOptions::default())
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_same(board, "random lines", &out.answers, &host(&blob, &inputs, 1), &inputs);
        let (peak, size) = (out.stack_peak.unwrap(), out.stack_size.unwrap());
        assert!(peak > 256 && peak < size, "{}: stack {peak}/{size}", board.name());
        eprintln!(
            "{}: 1001 lines in {:.1} s, peak stack {peak} of {size} bytes",
            board.name(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Every shipped model (`models/*.pfb`) answers on every board it fits exactly as the host engine
/// does; a board it does not fit refuses it plainly before QEMU starts.
#[test]
fn shipped_models_give_the_host_engines_outputs_on_every_board() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut blobs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("models/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pfb"))
        .collect();
    blobs.sort();
    assert!(!blobs.is_empty(), "no shipped models in {}", dir.display());
    for blob in &blobs {
        let bytes = picoformer_host_tools::engine::load_blob(blob).unwrap();
        let model = Model::from_blob(bytes.as_bytes()).unwrap();
        // Inputs from the model's own vocabulary, plus one it cannot take.
        let symbols: Vec<&str> = model.vocab().input_symbols().skip(1).collect();
        let sep = if model.config().input_split == Split::Space {
            " "
        } else {
            ""
        };
        let mut rng = Rng(7);
        let mut inputs: Vec<String> = (0..24)
            .map(|_| {
                let len = 1 + rng.below(model.config().max_input_len.min(10));
                (0..len)
                    .map(|_| symbols[rng.below(symbols.len())])
                    .collect::<Vec<_>>()
                    .join(sep)
            })
            .collect();
        inputs.push("\u{263a}".to_string());
        let expected = host(blob, &inputs, 1);
        for board in Board::ALL {
            if let Err(e) = qemu::check_fits(board, &model) {
                assert!(e.to_string().contains(board.name()), "{e}");
                eprintln!("{:<11} {}: does not fit: {e}", board.name(), blob.display());
                continue;
            }
            let out = qemu::run_session(board, &firmware(board), blob, &inputs).unwrap_or_else(|e| panic!("{e:#}"));
            assert_same(board, &blob.display().to_string(), &out.answers, &expected, &inputs);
            let n = out.instructions.len().max(1) as u64;
            eprintln!(
                "{:<11} {}: identical to host, {} instructions/input",
                board.name(),
                blob.display(),
                out.instructions.iter().sum::<u64>() / n
            );
        }
    }
}
