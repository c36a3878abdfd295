//! The `bot-bottle` binary: parses flags and hands over to [`bot_bottle::commands::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bot_bottle::commands::Cli::parse();
    match bot_bottle::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bot-bottle: {e:#}");
            ExitCode::from(1)
        }
    }
}
