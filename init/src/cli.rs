//! Command-line parsing: `bb-init [--root DIR] DAEMON...`.
//!
//! Parsed by hand rather than with clap: the grammar is one optional flag and
//! a list of names, and the bundle binary keeps its dependencies to `std` and
//! `nix`. Every mistake is a [`UsageError`], printed on one line and turned
//! into exit code 64 (`EX_USAGE`) before anything is started.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use crate::daemon::Daemon;

/// Exit code for bad usage or configuration (`EX_USAGE` from `sysexits.h`).
pub(crate) const EXIT_USAGE: u8 = 64;

/// `--help` output.
pub(crate) const HELP: &str = "\
bb-init: PID 1 of the bot-bottle sidecar bundle

usage: bb-init [--root DIR] DAEMON...

Starts each DAEMON, prefixes its output lines with [DAEMON], forwards
SIGTERM and SIGINT to all of them and SIGHUP (reload) to egress, and reaps
every zombie. When one
daemon exits the others are stopped (SIGTERM, then SIGKILL after 10 s) and
bb-init exits with that daemon's code.

DAEMON is one of:
  egress     /bb/bb-egress   (gets the EGRESS_TOKEN_* variables)
  git-gate   /bb/bb-gitgate  (gets their values on stdin, for its secret scan)
  supervise  /bb/bb-supervise

options:
  --root DIR   look for bb/ under DIR instead of / (tests)
  -h, --help   print this help
  -V, --version

internal: bb-init --exec PROGRAM ARG... clears the signal mask and
executes PROGRAM; bb-init starts each daemon this way.

bottle network (see the bot-bottle docs, trust boundaries):
  bb-init hold [--keep-routes]
      PID 1 of a bottle's network holder: removes the default routes,
      answers DNS on 127.0.0.1:53 (NXDOMAIN for all but the probe zone),
      drops to nobody and waits for SIGTERM. --keep-routes (tests only)
      leaves the routes in place.
  bb-init probe [--host ADDR]... [--dns-ours ADDR:PORT] [--dns-silent ADDR:PORT]...
      The isolation probe: one `isolation ok|FAIL CHECK: DETAIL` line per
      check, exit 1 when any failed.
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `--help`: print [`HELP`] and exit 0.
    Help,
    /// `--version`: print the version and exit 0.
    Version,
    /// Start and supervise daemons.
    Run(Run),
    /// `hold`: PID 1 of a bottle's network holder ([`crate::netns`]).
    Hold {
        /// Leave the default routes (tests break isolation on purpose).
        keep_routes: bool,
    },
    /// `probe`: the isolation probe ([`crate::probe`]).
    Probe(crate::probe::Opts),
    /// `--exec PROGRAM ARG...`: internal, how each daemon is started (see
    /// [`crate::exec`]).
    Exec {
        /// The daemon binary.
        program: OsString,
        /// Its arguments.
        args: Vec<OsString>,
    },
}

/// A validated daemon list and the root their paths hang off.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// The directory holding `bb/`; `/` in the image.
    pub(crate) root: PathBuf,
    /// The daemons to start, in command-line order, each at most once.
    pub(crate) daemons: Vec<Daemon>,
}

/// A usage or configuration mistake; its message is one line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut root = PathBuf::from("/");
    let mut daemons: Vec<Daemon> = Vec::new();
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|first| first == crate::exec::FLAG) {
        args.next();
        let program = args
            .next()
            .ok_or_else(|| UsageError(format!("{} needs a program", crate::exec::FLAG)))?;
        return Ok(Command::Exec {
            program,
            args: args.collect(),
        });
    }
    match args.peek().and_then(|a| a.to_str()) {
        Some("hold") => {
            args.next();
            let mut keep_routes = false;
            for a in args {
                match a.to_str() {
                    Some("--keep-routes") => keep_routes = true,
                    _ => {
                        return Err(UsageError(format!(
                            "hold: unknown argument {:?} (usage: bb-init hold [--keep-routes])",
                            a.to_string_lossy()
                        )));
                    }
                }
            }
            return Ok(Command::Hold { keep_routes });
        }
        Some("probe") => {
            args.next();
            return parse_probe(args).map(Command::Probe);
        }
        _ => {}
    }
    let mut flags_done = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if !flags_done && text.starts_with('-') {
            match &*text {
                "--" => flags_done = true,
                "-h" | "--help" => return Ok(Command::Help),
                "-V" | "--version" => return Ok(Command::Version),
                "--root" => {
                    root = args
                        .next()
                        .map(PathBuf::from)
                        .ok_or_else(|| UsageError("--root needs a directory".to_owned()))?;
                }
                _ => {
                    if let Some(dir) = arg.as_bytes().strip_prefix(b"--root=") {
                        if dir.is_empty() {
                            return Err(UsageError("--root needs a directory".to_owned()));
                        }
                        root = PathBuf::from(OsStr::from_bytes(dir));
                    } else {
                        return Err(UsageError(format!(
                            "unknown option {text:?} (usage: bb-init [--root DIR] DAEMON...)"
                        )));
                    }
                }
            }
            continue;
        }
        let daemon = Daemon::from_name(&text).ok_or_else(|| {
            UsageError(format!(
                "unknown daemon {text:?} (known: {})",
                Daemon::known_names()
            ))
        })?;
        if daemons.contains(&daemon) {
            return Err(UsageError(format!(
                "daemon {:?} is named twice",
                daemon.name()
            )));
        }
        daemons.push(daemon);
    }
    if daemons.is_empty() {
        return Err(UsageError(format!(
            "no daemon named (usage: bb-init [--root DIR] DAEMON..., DAEMON one of {})",
            Daemon::known_names()
        )));
    }
    Ok(Command::Run(Run { root, daemons }))
}

/// `probe` flags.
fn parse_probe(args: impl Iterator<Item = OsString>) -> Result<crate::probe::Opts, UsageError> {
    let mut opts = crate::probe::Opts::default();
    let mut args = args.map(|a| a.to_string_lossy().into_owned());
    while let Some(flag) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .ok_or_else(|| UsageError(format!("probe: {flag} needs {what}")))
        };
        match flag.as_str() {
            "--host" => {
                let v = value("an address")?;
                opts.hosts.push(v.parse().map_err(|_| {
                    UsageError(format!("probe: --host {v:?} is not an IP address"))
                })?);
            }
            "--dns-ours" | "--dns-silent" => {
                let v = value("ADDR:PORT")?;
                let addr = v
                    .parse()
                    .map_err(|_| UsageError(format!("probe: {flag} {v:?} is not ADDR:PORT")))?;
                if flag == "--dns-ours" {
                    opts.dns_ours = Some(addr);
                } else {
                    opts.dns_silent.push(addr);
                }
            }
            "--proc" => opts.proc_root = Some(PathBuf::from(value("a folder")?)),
            _ => {
                return Err(UsageError(format!(
                    "probe: unknown argument {flag:?} (usage: bb-init probe [--host ADDR]... [--dns-ours ADDR:PORT] [--dns-silent ADDR:PORT]...)"
                )));
            }
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn root_defaults_to_slash_and_order_is_kept() {
        assert_eq!(
            parse_strs(&["supervise", "egress"]),
            Ok(Command::Run(Run {
                root: PathBuf::from("/"),
                daemons: vec![Daemon::Supervise, Daemon::Egress],
            }))
        );
    }

    #[test]
    fn root_in_both_spellings() {
        for args in [
            &["--root", "/tmp/r", "git-gate"][..],
            &["--root=/tmp/r", "git-gate"],
        ] {
            assert_eq!(
                parse_strs(args),
                Ok(Command::Run(Run {
                    root: PathBuf::from("/tmp/r"),
                    daemons: vec![Daemon::GitGate],
                }))
            );
        }
    }

    #[test]
    fn mistakes_are_usage_errors_naming_the_culprit() {
        let err = |args: &[&str]| match parse_strs(args) {
            Err(UsageError(message)) => message,
            other => panic!("expected an error for {args:?}, got {other:?}"),
        };
        assert!(err(&["egress", "nope"]).contains("unknown daemon \"nope\""));
        assert!(err(&["egress", "egress"]).contains("\"egress\" is named twice"));
        assert!(err(&[]).starts_with("no daemon named"));
        assert!(err(&["--root"]).contains("--root needs a directory"));
        assert!(err(&["--root="]).contains("--root needs a directory"));
        assert!(err(&["--frobnicate", "egress"]).contains("unknown option \"--frobnicate\""));
    }

    #[test]
    fn exec_takes_everything_after_the_program() {
        assert_eq!(
            parse_strs(&["--exec", "/bb/bb-egress", "--root", "x", "--help"]),
            Ok(Command::Exec {
                program: "/bb/bb-egress".into(),
                args: vec!["--root".into(), "x".into(), "--help".into()],
            })
        );
        assert!(parse_strs(&["--exec"]).is_err());
        // Only as the first argument.
        assert!(parse_strs(&["egress", "--exec", "x"]).is_err());
    }

    #[test]
    fn hold_and_probe_take_their_flags() {
        assert_eq!(
            parse_strs(&["hold"]),
            Ok(Command::Hold { keep_routes: false })
        );
        assert_eq!(
            parse_strs(&["hold", "--keep-routes"]),
            Ok(Command::Hold { keep_routes: true })
        );
        assert!(parse_strs(&["hold", "egress"]).is_err());
        let Ok(Command::Probe(o)) = parse_strs(&[
            "probe",
            "--host",
            "172.17.0.1",
            "--host",
            "fd00::2",
            "--dns-ours",
            "127.0.0.1:53",
            "--dns-silent",
            "127.0.0.11:53",
        ]) else {
            panic!("probe did not parse")
        };
        assert_eq!(o.hosts.len(), 2);
        assert_eq!(o.dns_silent.len(), 1);
        assert!(parse_strs(&["probe", "--host", "nope"]).is_err());
        assert!(parse_strs(&["probe", "--host"]).is_err());
        assert!(parse_strs(&["probe", "--bogus"]).is_err());
    }

    #[test]
    fn help_and_double_dash() {
        assert_eq!(parse_strs(&["egress", "--help"]), Ok(Command::Help));
        assert!(matches!(
            parse_strs(&["--", "--help"]),
            Err(UsageError(message)) if message.contains("unknown daemon \"--help\"")
        ));
    }
}
