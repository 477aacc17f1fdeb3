//! The `fnhost` binary: parse flags, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fnhost::cli::Cli::parse();
    match fnhost::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`fnhost logs --follow | head`) is how output ends, not a
        // failure: exit quietly, as ripgrep does.
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(fnhost::cli::exit_code(&error))
        }
    }
}
