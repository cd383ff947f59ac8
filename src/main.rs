//! The `meshleak` command. Exit status: 0 nothing bypasses, 1 something bypasses, 2 error,
//! 3 some verdict unknown, 4 something could not be read (`meshleak --help`).

mod agent;
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "meshleak: {}",
                meshleak_core::sanitize::sanitize(&format!("{e:#}"))
            );
            ExitCode::from(cli::status::ERROR)
        }
    }
}
