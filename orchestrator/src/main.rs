//! The `bot-bottle` binary: parses flags and hands over to [`bot_bottle::commands::run`].
//! Exit statuses follow one table (`bot_bottle::commands::exit`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    use bot_bottle::commands::{Cli, exit, exit_code, run};
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are not errors; a bad flag is a usage
            // error like any other (64, not clap's 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::CONFIG
            } else {
                exit::OK
            });
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bot-bottle: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
