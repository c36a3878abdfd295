//! The compiled-in daemon table: what each name runs, with which arguments,
//! and which environment it may see.
//!
//! The table is data ([`SPECS`]) so that what the sidecar runs is readable in
//! one place and nothing on the command line can change a daemon's argv: the
//! orchestrator picks *which* daemons run, never *how*. Paths hang off a root
//! (`/` in the image, a temporary directory in tests).
//!
//! # Why the egress tokens go to egress alone
//!
//! `EGRESS_TOKEN_*` variables hold the real credentials the egress proxy
//! injects into allowed requests; the agent only ever sees placeholders. The
//! git gate and the supervise server handle agent-controlled input (pushes,
//! proposals), so they are the likeliest to be tricked into echoing their
//! environment. Giving them no secrets means a compromise of either leaks
//! none: each daemon gets the least it needs, and only egress needs tokens.
//! Values are never printed by `bb-init`, not even in errors.
//!
//! # How the git gate still knows them
//!
//! The gate must *recognise* the tokens (its `known_secrets` scan refuses a
//! push that carries one) without holding them where agent-triggered code
//! could echo them. So it gets the values, never the variables: `bb-init`
//! writes `NAME=VALUE` records, each ended by a NUL, into the gate's stdin
//! pipe and closes it ([`secret_records`]); the gate (`--secrets-stdin`)
//! reads them once, before it binds a port, into its DLP engine. Nothing
//! lands in the gate's argv or environment (readable through `/proc` by
//! any process of the same user) or in a file, and supervise gets nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::UsageError;

/// Prefix of the environment variables holding egress's injected secrets
/// (`bb_egress::env_vars::EGRESS_TOKEN_PREFIX`, repeated here because the
/// bundle's PID 1 links nothing but `std` and `nix`).
pub(crate) const EGRESS_TOKEN_PREFIX: &str = "EGRESS_TOKEN_";

/// A daemon `bb-init` knows how to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Daemon {
    /// The TLS-bumping egress proxy, `bb-egress`.
    Egress,
    /// The git gate that secret-scans pushes, `bb-gitgate`.
    GitGate,
    /// The supervise server (MCP and proposal queue), `bb-supervise`.
    Supervise,
}

/// One argument of a daemon's argv.
#[derive(Debug)]
enum Arg {
    /// Passed as is.
    Lit(&'static str),
    /// A path under the root.
    Path(&'static str),
    /// `flag path` (path under the root), passed only when that file exists
    /// when the daemon starts.
    IfFile(&'static str, &'static str),
}

/// How to run one daemon.
#[derive(Debug)]
struct Spec {
    daemon: Daemon,
    /// The name on the command line and in output prefixes.
    name: &'static str,
    /// The binary, under the root.
    binary: &'static str,
    args: &'static [Arg],
    /// Whether the `EGRESS_TOKEN_*` variables are passed on.
    egress_tokens: bool,
    /// Whether their values are written to the daemon's stdin instead
    /// (see the module docs).
    secrets_stdin: bool,
}

/// The table. Listen addresses are fixed: the agent container reaches the
/// sidecar on these ports and nothing else.
const SPECS: [Spec; 3] = [
    Spec {
        daemon: Daemon::Egress,
        name: "egress",
        binary: "bb/bb-egress",
        args: &[
            Arg::Lit("--routes"),
            Arg::Path("bb/config/routes.yaml"),
            Arg::Lit("--ca"),
            Arg::Path("bb/ca"),
            Arg::Lit("--listen"),
            Arg::Lit("0.0.0.0:9099"),
            Arg::IfFile("--upstream-ca", "bb/config/upstream-ca.pem"),
        ],
        egress_tokens: true,
        secrets_stdin: false,
    },
    Spec {
        daemon: Daemon::GitGate,
        name: "git-gate",
        binary: "bb/bb-gitgate",
        args: &[
            Arg::Lit("--config"),
            Arg::Path("bb/config/gitgate.yaml"),
            Arg::Lit("--listen"),
            Arg::Lit("0.0.0.0:9418"),
            // Smart HTTP, where the agent's gitconfig points (SPEC §1).
            Arg::Lit("--http-listen"),
            Arg::Lit("0.0.0.0:9420"),
            // The egress tokens' values, for the known_secrets scan.
            Arg::Lit("--secrets-stdin"),
        ],
        egress_tokens: false,
        secrets_stdin: true,
    },
    Spec {
        daemon: Daemon::Supervise,
        name: "supervise",
        binary: "bb/bb-supervise",
        // `bb/state` is the bundle's view of the bottle's state folder:
        // its `queue/` (read-write) and its live `routes.yaml` (read-only),
        // nothing else of it. The slug comes from `BB_SUPERVISE_SLUG`, set
        // on the bundle by the orchestrator. Egress shares the bundle's
        // network namespace, so its allowlist is asked on loopback.
        args: &[
            Arg::Lit("--state"),
            Arg::Path("bb/state"),
            Arg::Lit("--listen"),
            Arg::Lit("0.0.0.0:9100"),
            Arg::Lit("--egress-proxy"),
            Arg::Lit("http://127.0.0.1:9099"),
        ],
        egress_tokens: false,
        secrets_stdin: false,
    },
];

impl Daemon {
    fn spec(self) -> &'static Spec {
        match self {
            Daemon::Egress => &SPECS[0],
            Daemon::GitGate => &SPECS[1],
            Daemon::Supervise => &SPECS[2],
        }
    }

    /// Looks a daemon up by its command-line name.
    pub(crate) fn from_name(name: &str) -> Option<Daemon> {
        SPECS
            .iter()
            .find(|spec| spec.name == name)
            .map(|spec| spec.daemon)
    }

    /// The known names, comma-separated, for error messages.
    pub(crate) fn known_names() -> String {
        SPECS
            .iter()
            .map(|spec| spec.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The command-line name, also the output prefix.
    pub(crate) fn name(self) -> &'static str {
        self.spec().name
    }

    /// The daemon's binary under `root`.
    pub(crate) fn binary(self, root: &Path) -> PathBuf {
        root.join(self.spec().binary)
    }

    /// The arguments after the program name. Optional files are looked at
    /// now, so call this when starting the daemon.
    pub(crate) fn args(self, root: &Path) -> Vec<OsString> {
        let mut argv = Vec::new();
        for arg in self.spec().args {
            match *arg {
                Arg::Lit(text) => argv.push(text.into()),
                Arg::Path(path) => argv.push(root.join(path).into()),
                Arg::IfFile(flag, path) => {
                    let path = root.join(path);
                    if path.is_file() {
                        argv.push(flag.into());
                        argv.push(path.into());
                    }
                }
            }
        }
        argv
    }

    /// Whether the daemon reloads on `SIGHUP` and so is sent it. Only
    /// egress does (its routes.yaml, after an approved supervise
    /// proposal); to the others SIGHUP's default action is death, which
    /// would take the whole bundle down.
    pub(crate) fn reloads_on_hup(self) -> bool {
        matches!(self, Daemon::Egress)
    }

    /// Whether the daemon may see the `EGRESS_TOKEN_*` variables.
    pub(crate) fn gets_egress_tokens(self) -> bool {
        self.spec().egress_tokens
    }

    /// Whether the daemon reads the tokens' values from its stdin.
    pub(crate) fn gets_secrets_on_stdin(self) -> bool {
        self.spec().secrets_stdin
    }

    /// The command that starts the daemon through the `--exec` trampoline
    /// (`launcher` is `bb-init` itself): its argv, a filtered environment,
    /// stdin closed (piped, for a daemon that reads [`secret_records`]),
    /// stdout and stderr piped back to `bb-init`.
    ///
    /// Each daemon leads its own process group, so a terminal's Ctrl-C
    /// reaches it once, forwarded by `bb-init`, rather than twice.
    pub(crate) fn command(self, launcher: &Path, root: &Path) -> Command {
        let mut command = Command::new(launcher);
        command
            .arg(crate::exec::FLAG)
            .arg(self.binary(root))
            .args(self.args(root))
            .stdin(if self.gets_secrets_on_stdin() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if !self.gets_egress_tokens() {
            for (name, _) in std::env::vars_os() {
                if is_egress_token(&name) {
                    command.env_remove(name);
                }
            }
        }
        command
    }
}

/// The `EGRESS_TOKEN_*` variables of `vars` as NUL-ended `NAME=VALUE`
/// records, for a daemon's stdin. Never logged.
pub(crate) fn secret_records(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in vars {
        if is_egress_token(&name) {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        }
    }
    out
}

/// Whether an environment variable name is one of egress's secrets.
pub(crate) fn is_egress_token(name: &std::ffi::OsStr) -> bool {
    name.as_bytes().starts_with(EGRESS_TOKEN_PREFIX.as_bytes())
}

/// Checks that `daemon`'s binary exists and is an executable file, so a
/// missing one is reported before anything is started.
pub(crate) fn check_binary(daemon: Daemon, root: &Path) -> Result<(), UsageError> {
    let path = daemon.binary(root);
    let problem = match std::fs::metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "not found".to_owned(),
        Err(error) => format!("unreadable: {error}"),
        Ok(meta) if !meta.is_file() => "not a file".to_owned(),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => "not executable".to_owned(),
        Ok(_) => return Ok(()),
    };
    Err(UsageError(format!(
        "daemon {:?}: binary {} {problem}",
        daemon.name(),
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for spec in &SPECS {
            assert_eq!(Daemon::from_name(spec.name), Some(spec.daemon));
            assert_eq!(spec.daemon.name(), spec.name);
        }
        assert_eq!(Daemon::from_name("Egress"), None);
        assert_eq!(Daemon::known_names(), "egress, git-gate, supervise");
    }

    #[test]
    fn argv_hangs_off_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            Daemon::Supervise.binary(root),
            Path::new("/r/bb/bb-supervise")
        );
        let args: Vec<OsString> = [
            "--config",
            "/r/bb/config/gitgate.yaml",
            "--listen",
            "0.0.0.0:9418",
            "--http-listen",
            "0.0.0.0:9420",
            "--secrets-stdin",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        assert_eq!(Daemon::GitGate.args(root), args);
        assert_eq!(
            Daemon::Egress.binary(Path::new("/")),
            Path::new("/bb/bb-egress")
        );
    }

    #[test]
    fn supervise_serves_the_state_folder_and_asks_egress_on_loopback() {
        let args: Vec<OsString> = [
            "--state",
            "/r/bb/state",
            "--listen",
            "0.0.0.0:9100",
            "--egress-proxy",
            "http://127.0.0.1:9099",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        assert_eq!(Daemon::Supervise.args(Path::new("/r")), args);
    }

    #[test]
    fn only_egress_gets_tokens() {
        assert!(Daemon::Egress.gets_egress_tokens());
        assert!(!Daemon::GitGate.gets_egress_tokens());
        assert!(!Daemon::Supervise.gets_egress_tokens());
        assert!(Daemon::GitGate.gets_secrets_on_stdin());
        assert!(!Daemon::Supervise.gets_secrets_on_stdin());
        assert!(!Daemon::Egress.gets_secrets_on_stdin());
        let records = secret_records([
            ("EGRESS_TOKEN_A".into(), "one".into()),
            ("HOME".into(), "/root".into()),
            ("EGRESS_TOKEN_B".into(), "two".into()),
        ]);
        assert_eq!(records, b"EGRESS_TOKEN_A=one\0EGRESS_TOKEN_B=two\0");
        assert!(is_egress_token("EGRESS_TOKEN_GITEA".as_ref()));
        assert!(!is_egress_token("MY_EGRESS_TOKEN_X".as_ref()));
        assert!(!is_egress_token("EGRESS_TOKEN".as_ref()));
    }
}
