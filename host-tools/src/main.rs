//! `picoformer`: train small sequence-to-sequence Transformers on a PC and run them on Cortex-M.

use clap::{Parser, Subcommand};
use picoformer_host_tools::{bench, data, eval, export, inspect, plot, predict, qemu, train};

/// Train small encoder-decoder Transformers on CPU and run them, bit for bit, on Cortex-M microcontrollers.
#[derive(Parser, Debug)]
#[command(name = "picoformer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make or prepare datasets (synthetic tasks, the CMU Pronouncing Dictionary).
    Data(data::DataArgs),
    /// Train a model on a TSV of `input<TAB>output` lines.
    Train(Box<train::TrainArgs>),
    /// Average the last snapshots of a training run into one checkpoint.
    Average(train::AverageArgs),
    /// Export a checkpoint to a blob (.pfb) in f32 or int8.
    Export(export::ExportArgs),
    /// Show a blob's format version, config, vocabularies and memory needs.
    Inspect(inspect::InspectArgs),
    /// Evaluate a blob on a TSV with the no_std engine (exact match, WER, token error rate).
    Eval(eval::EvalArgs),
    /// Print a blob's predictions for inputs given as arguments or on stdin.
    Predict(predict::PredictArgs),
    /// Measure the engine's host throughput.
    Bench(bench::BenchArgs),
    /// Draw loss and dev-accuracy curves of a training run to PNG.
    Plot(plot::PlotArgs),
    /// Run a blob on an emulated Cortex-M board under QEMU.
    Qemu(qemu::QemuArgs),
}

/// Parses the command line; usage errors become one line (`error: ...`) with exit code 2.
fn parse_cli() -> Result<Cli, std::process::ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .map(|l| l.strip_prefix("error: ").unwrap_or(l))
                .collect();
            eprintln!("error: {} (see --help)", parts.join("; "));
            Err(std::process::ExitCode::from(2))
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Data(a) => data::run(a),
        Command::Train(a) => train::run(*a),
        Command::Average(a) => train::average(a),
        Command::Export(a) => export::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Qemu(a) => qemu::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
