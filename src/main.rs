//! The `fnhost` binary: parse flags, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fnhost::cli::Cli::parse();
    match fnhost::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(fnhost::cli::exit_code(&error))
        }
    }
}
