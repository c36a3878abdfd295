//! Env values in manifests: a literal, `${HOST_VAR}` read from the host, or
//! `?prompt text` asked at launch without echo; and [`SecretRef`], the one
//! rule for every field that names a secret (`auth_token`,
//! `auth.token_ref`, pi's `api_key_env`, git-gate's `forge_token_env`).
//!
//! Resolved values travel as [`Redacted`]: they reach the container runtime
//! through its process environment, never a command line or a file, and no
//! `Debug`/`Display` of a plan can print one.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bb_egress::dlp::{Detector, DetectorSet, DlpEngine};

pub use bb_egress::redact::Redacted;

/// Whether `name` is a portable environment variable name.
#[must_use]
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Longest bare value taken for a variable name; anything longer is a
/// literal (no one names a variable with 129 characters, tokens are long).
pub const MAX_NAME_LEN: usize = 128;

/// Whether `value` has the shape of a well-known credential format (the
/// tokens of the big forges, model vendors and clouds), judged by the
/// egress proxy's own `token_patterns` detector.
#[must_use]
pub fn looks_like_credential(value: &str) -> bool {
    static ENGINE: OnceLock<Arc<DlpEngine>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| Arc::new(DlpEngine::without_secrets()));
    engine
        .scan(
            DetectorSet::of(&[Detector::TokenPatterns]),
            value.as_bytes(),
        )
        .is_some()
}

/// Whether a bare `value` is taken for the *name* of a variable: it has a
/// variable's shape, is not too long, and is not a known credential format
/// (`ghp_…` has a name's shape but is a token).
#[must_use]
pub fn is_variable_name(value: &str) -> bool {
    valid_env_name(value) && value.len() <= MAX_NAME_LEN && !looks_like_credential(value)
}

/// How a field that names a secret is written. One rule for
/// `agent_provider.auth_token`, `egress.routes[].auth.token_ref`, pi's
/// `settings.api_key_env` and git-gate's `key.forge_token_env`
/// (docs/manifest.md, "Naming a secret"):
///
/// - a bare variable name (`GITHUB_TOKEN`, the earlier bot-bottle's form):
///   the bottle's `env:` entry of that name when it has one, otherwise the
///   host variable of that name — never the name itself as the token;
/// - `${VAR}` (text around it allowed) or `?question`: as an env value;
/// - anything else is the secret itself, written into the manifest: it is
///   used, with a warning, and never printed.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A bare variable name.
    Name(String),
    /// `${VAR}`-interpolated or `?prompt`.
    Source(EnvSource),
    /// The secret itself.
    Literal(String),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => write!(f, "name `{n}`"),
            Self::Source(s) => write!(f, "{s:?}"),
            Self::Literal(l) => write!(f, "literal ({} chars)", l.chars().count()),
        }
    }
}

impl SecretRef {
    /// Classifies a manifest value. Errors never contain the value.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err(
                "empty: write the name of the variable that holds the secret (`MY_TOKEN` or `${MY_TOKEN}`)"
                    .into(),
            );
        }
        if value.starts_with('?') || value.contains("${") {
            return EnvSource::parse(value).map(Self::Source);
        }
        if is_variable_name(value) {
            return Ok(Self::Name(value.to_owned()));
        }
        Ok(Self::Literal(value.to_owned()))
    }

    /// Whether the secret is written into the manifest itself.
    #[must_use]
    pub fn is_literal(&self) -> bool {
        matches!(self, Self::Literal(_))
    }
}

/// One piece of an interpolated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text kept as written.
    Lit(String),
    /// `${NAME}`: the host's variable.
    Var(String),
}

/// Where an env value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// Written in the manifest.
    Literal(String),
    /// Contains `${HOST_VAR}` references.
    Interpolated(Vec<Part>),
    /// `?question`: asked on the terminal at launch.
    Prompt(String),
}

impl fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A literal may be a secret someone pasted into a manifest: it is
        // described, never shown.
        f.write_str(&self.describe())
    }
}

/// Resolving a value failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// `${VAR}` names a variable the host does not have.
    #[error("`{key}` reads host variable `{var}`, which is not set")]
    MissingHostVar {
        /// The env entry.
        key: String,
        /// The host variable.
        var: String,
    },
    /// `?prompt` with no terminal to ask on.
    #[error(
        "`{key}` is asked at launch (`?{question}`) but there is no terminal; run from a terminal or give it from a host variable (`${{VAR}}`)"
    )]
    NoTerminal {
        /// The env entry.
        key: String,
        /// The question.
        question: String,
    },
    /// The terminal could not be read.
    #[error("`{key}`: reading the answer failed: {message}")]
    Prompt {
        /// The env entry.
        key: String,
        /// What failed.
        message: String,
    },
}

impl EnvSource {
    /// Parses a manifest value. `$` not followed by `{` is literal.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Some(question) = value.strip_prefix('?') {
            let question = question.trim();
            if question.is_empty() {
                return Err("`?` must be followed by the question to ask".into());
            }
            return Ok(Self::Prompt(question.to_owned()));
        }
        let mut parts = Vec::new();
        let mut rest = value;
        let mut lit = String::new();
        while let Some(at) = rest.find("${") {
            lit.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                return Err("unclosed `${`: write `${NAME}`".into());
            };
            let var = &after[..end];
            // What is between the braces is never shown: it may be a value
            // pasted where a name belongs.
            if !valid_env_name(var) {
                return Err("`${…}` does not name a host variable ([A-Za-z_][A-Za-z0-9_]*)".into());
            }
            if looks_like_credential(var) {
                return Err(
                    "`${…}` holds what looks like a credential, not the name of a variable: put the secret in a host variable and write its name"
                        .into(),
                );
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var.to_owned()));
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if parts.is_empty() {
            return Ok(Self::Literal(lit));
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self::Interpolated(parts))
    }

    /// A description that never contains a value: `literal (N chars)`,
    /// `${A}`, `asked at launch: <question>`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Literal(v) => format!("literal ({} chars)", v.chars().count()),
            Self::Interpolated(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Lit(s) => format!("literal({} chars)", s.chars().count()),
                    Part::Var(v) => format!("${{{v}}}"),
                })
                .collect::<Vec<_>>()
                .join(" + "),
            Self::Prompt(q) => format!("asked at launch: {q}"),
        }
    }

    /// Host variables this value reads.
    pub fn host_vars(&self) -> impl Iterator<Item = &str> {
        let parts: &[Part] = match self {
            Self::Interpolated(p) => p,
            _ => &[],
        };
        parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Resolves the value for entry `key`.
    pub fn resolve(
        &self,
        key: &str,
        host: &dyn Fn(&str) -> Option<String>,
        prompter: &mut dyn Prompter,
    ) -> Result<Redacted<String>, EnvError> {
        match self {
            Self::Literal(v) => Ok(Redacted::new(v.clone())),
            Self::Interpolated(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        Part::Lit(s) => out.push_str(s),
                        Part::Var(v) => {
                            out.push_str(&host(v).ok_or_else(|| EnvError::MissingHostVar {
                                key: key.to_owned(),
                                var: v.clone(),
                            })?);
                        }
                    }
                }
                Ok(Redacted::new(out))
            }
            Self::Prompt(q) => prompter.ask(key, q),
        }
    }
}

/// Asks the operator for `?prompt` values.
pub trait Prompter {
    /// Asks `question` for entry `key`, without echo.
    fn ask(&mut self, key: &str, question: &str) -> Result<Redacted<String>, EnvError>;
}

/// Asks on the controlling terminal; refuses when stdin is not one.
#[derive(Debug, Default)]
pub struct TtyPrompter;

impl Prompter for TtyPrompter {
    fn ask(&mut self, key: &str, question: &str) -> Result<Redacted<String>, EnvError> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return Err(EnvError::NoTerminal {
                key: key.to_owned(),
                question: question.to_owned(),
            });
        }
        rpassword::prompt_password(format!("{key} — {question}: "))
            .map(Redacted::new)
            .map_err(|e| EnvError::Prompt {
                key: key.to_owned(),
                message: e.to_string(),
            })
    }
}

/// Checks without asking: with a terminal a `?prompt` would be asked at
/// launch, so it stands in with a placeholder; without one it is the same
/// error a launch would meet. Dry runs and the preflight check use it.
#[derive(Debug)]
pub struct WouldAsk {
    /// Whether a terminal is there to ask on.
    pub interactive: bool,
}

impl Prompter for WouldAsk {
    fn ask(&mut self, key: &str, question: &str) -> Result<Redacted<String>, EnvError> {
        if self.interactive {
            Ok(Redacted::new("asked at launch".to_owned()))
        } else {
            NoTty.ask(key, question)
        }
    }
}

/// Never asks: every `?prompt` is an error (no terminal).
#[derive(Debug, Default)]
pub struct NoTty;

impl Prompter for NoTty {
    fn ask(&mut self, key: &str, question: &str) -> Result<Redacted<String>, EnvError> {
        Err(EnvError::NoTerminal {
            key: key.to_owned(),
            question: question.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{EnvError, EnvSource, NoTty, Part, Prompter, Redacted};

    struct Answer(&'static str);
    impl Prompter for Answer {
        fn ask(&mut self, _key: &str, _q: &str) -> Result<Redacted<String>, EnvError> {
            Ok(Redacted::new(self.0.to_owned()))
        }
    }

    fn host(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t-value".to_owned())
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            EnvSource::parse("plain $x").expect("lit"),
            EnvSource::Literal("plain $x".into())
        );
        assert_eq!(
            EnvSource::parse("Bearer ${TOKEN}!").expect("interp"),
            EnvSource::Interpolated(vec![
                Part::Lit("Bearer ".into()),
                Part::Var("TOKEN".into()),
                Part::Lit("!".into())
            ])
        );
        assert_eq!(
            EnvSource::parse("?GitHub token").expect("prompt"),
            EnvSource::Prompt("GitHub token".into())
        );
        assert!(
            EnvSource::parse("${NOPE")
                .expect_err("unclosed")
                .contains("unclosed")
        );
        let e = EnvSource::parse("${1X}").expect_err("bad");
        assert!(
            e.contains("does not name a host variable") && !e.contains("1X"),
            "{e}"
        );
        let e = EnvSource::parse("${ghp_0123456789abcdefghijABCDEFGHIJ012345}").expect_err("token");
        assert!(
            e.contains("looks like a credential") && !e.contains("ghp_"),
            "{e}"
        );
        assert!(EnvSource::parse("?").is_err());
    }

    #[test]
    fn resolves_and_never_prints_values() {
        let v = EnvSource::parse("x-${TOKEN}").expect("parse");
        let r = v.resolve("API", &host, &mut NoTty).expect("resolves");
        assert_eq!(r.expose(), "x-s3cr3t-value");
        assert!(!format!("{r:?} {r} {v:?}").contains("s3cr3t"));
        let lit = EnvSource::parse("literal-secret-123").expect("parse");
        assert!(!format!("{lit:?}").contains("literal-secret"));
        let missing = EnvSource::parse("${ABSENT}")
            .expect("parse")
            .resolve("API", &host, &mut NoTty);
        assert_eq!(
            missing.expect_err("missing").to_string(),
            "`API` reads host variable `ABSENT`, which is not set"
        );
    }

    #[test]
    fn one_rule_names_every_secret() {
        use super::SecretRef;
        // A bare name is a name: an env entry or a host variable, never the
        // token itself.
        assert_eq!(
            SecretRef::parse("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN").expect("name"),
            SecretRef::Name("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN".into())
        );
        assert_eq!(
            SecretRef::parse("${GITEA_TOKEN}").expect("var"),
            SecretRef::Source(EnvSource::Interpolated(vec![Part::Var(
                "GITEA_TOKEN".into()
            )]))
        );
        assert_eq!(
            SecretRef::parse("?Forge token").expect("prompt"),
            SecretRef::Source(EnvSource::Prompt("Forge token".into()))
        );
        // Anything else is the secret itself; so is a token that has a
        // name's shape (a GitHub token matches [A-Za-z_][A-Za-z0-9_]*).
        for literal in [
            "glpat-0123456789abcdefghij",
            "sk-ant-api03-abc",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            &"A".repeat(129),
        ] {
            let r = SecretRef::parse(literal).expect("literal");
            assert!(r.is_literal(), "{literal}");
            assert!(!format!("{r:?}").contains(literal), "{r:?}");
        }
        let e = SecretRef::parse("").expect_err("empty");
        assert!(e.contains("empty"), "{e}");
        assert!(SecretRef::parse("${ghp_0123456789abcdefghijABCDEFGHIJ012345}").is_err());
    }

    #[test]
    fn prompts_only_with_a_terminal() {
        let p = EnvSource::parse("?Your token").expect("parse");
        let e = p.resolve("TOK", &host, &mut NoTty).expect_err("no tty");
        assert!(e.to_string().contains("no terminal"), "{e}");
        assert_eq!(
            p.resolve("TOK", &host, &mut Answer("typed"))
                .expect("answer")
                .expose(),
            "typed"
        );
    }
}
