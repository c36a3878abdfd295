//! The `bb-egress` command. Thin: parse arguments, call [`run`], map the
//! outcome to an exit code.
//!
//! Today it has one subcommand, `check ROUTES.yaml`, which validates a routes
//! file and prints every error with its location. The proxy server joins it
//! with the server feature.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use bb_egress::policy::Policy;

/// Exit code for bad configuration (sysexits `EX_CONFIG` is 78; the project
/// uses `EX_USAGE`, 64, for every configuration and usage error).
const EXIT_CONFIG: u8 = 64;

const USAGE: &str = "usage: bb-egress check ROUTES.yaml\n\n\
    check   validate a routes file; print every error with its location (exit 64 on error)\n";

fn main() -> ExitCode {
    match run(&std::env::args_os().skip(1).collect::<Vec<_>>()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bb-egress: error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(args: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().context("arguments must be UTF-8"))
        .collect::<anyhow::Result<_>>()?;
    match args.as_slice() {
        ["check", file] => check(Path::new(file)),
        ["-h" | "--help" | "help"] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!("{USAGE}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match Policy::from_yaml(&text) {
        Ok(policy) => {
            println!(
                "{}: ok ({} routes)",
                file.display(),
                policy.config().routes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            for e in &errors.0 {
                writeln!(err, "{}: {e}", file.display())?;
            }
            writeln!(err, "{}: {} error(s)", file.display(), errors.0.len())?;
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}
