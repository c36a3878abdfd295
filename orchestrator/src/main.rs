//! The `bot-bottle` binary: parses flags and hands over to [`bot_bottle::commands::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bot_bottle::commands::Cli::parse();
    match bot_bottle::commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bot-bottle: {e:#}");
            // Configuration errors (manifests, providers, the plan) exit 64
            // like bb-egress's; anything else 1.
            let config = e.chain().any(|c| {
                c.is::<bot_bottle::manifest::ManifestError>()
                    || c.is::<bot_bottle::plan::PlanError>()
                    || c.is::<bot_bottle::provider::ProviderError>()
            });
            ExitCode::from(if config { 64 } else { 1 })
        }
    }
}
