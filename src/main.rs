//! The `meshleak` command. Exit status: 0 nothing bypasses, 1 something bypasses, 2 error.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "meshleak: {}",
                meshleak::sanitize::sanitize(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}
