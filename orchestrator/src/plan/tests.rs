//! Launch plans from temp-dir fixtures: routes.yaml loads back through the
//! proxy's own parser, secrets resolve at launch and are never printed, and
//! each provider's share (claude, codex with host login, pi, a plugin).

#![allow(clippy::expect_used, reason = "tests")]

use std::fs;

use bb_egress::policy::{AuthScheme, LogLevel};

use proptest::prelude::*;

use super::*;
use crate::env::NoTty;
use crate::manifest::Loader;
use crate::provider::SUPERVISE_PROMPT;
use crate::test_support::write;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

struct Fx {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = tmp.path().join("home");
        let cwd = tmp.path().join("cwd");
        fs::create_dir_all(&cwd).expect("mkdir");
        fs::create_dir_all(&home).expect("mkdir");
        Self {
            _tmp: tmp,
            home,
            cwd,
        }
    }

    fn paths(&self) -> Paths {
        Paths::new(&self.home, &self.cwd)
    }

    /// A bottle; `yaml` is the frontmatter, lines as written.
    fn bottle(&self, name: &str, yaml: &str) -> PathBuf {
        write(
            &self.paths().bottles_dir().join(format!("{name}.md")),
            &format!("---\n{yaml}---\n"),
        )
    }

    fn agent(&self, name: &str, yaml: &str, prompt: &str) -> PathBuf {
        write(
            &self.paths().home_agents_dir().join(format!("{name}.md")),
            &format!("---\n{yaml}---\n{prompt}"),
        )
    }

    /// A one-bottle setup: agent `a` in bottle `b`.
    fn single(&self, bottle_yaml: &str) {
        self.bottle("b", bottle_yaml);
        self.agent("a", "bottle: b\n", "Do the task.\n");
    }

    fn plan_opts(&self, agent: &str, opts: &PlanOptions) -> Result<LaunchPlan, String> {
        let paths = self.paths();
        let loaded = Loader::new(paths.clone())
            .load(agent)
            .map_err(|e| e.to_string())?;
        let provider = crate::provider::find(&paths, &loaded.bottle.provider.template)
            .map_err(|e| e.to_string())?;
        LaunchPlan::new(&paths, &loaded, &provider, opts).map_err(|e| e.to_string())
    }

    fn plan(&self, agent: &str) -> LaunchPlan {
        self.plan_opts(agent, &fixed())
            .unwrap_or_else(|e| panic!("plans: {e}"))
    }

    fn plan_err(&self, agent: &str) -> String {
        self.plan_opts(agent, &fixed())
            .expect_err("expected an error")
    }
}

fn fixed() -> PlanOptions {
    PlanOptions {
        slug: Some("test-slug".into()),
        ..PlanOptions::default()
    }
}

/// The routes.yaml of `plan`, loaded by the proxy's parser.
fn routes(plan: &LaunchPlan) -> RoutesConfig {
    RoutesConfig::from_yaml(&plan.routes_yaml)
        .unwrap_or_else(|e| panic!("routes.yaml does not load:\n{e}\n{}", plan.routes_yaml))
}

/// `(host, token_env)` per route, in order.
fn wire(plan: &LaunchPlan) -> Vec<(String, Option<String>)> {
    routes(plan)
        .routes
        .into_iter()
        .map(|r| (r.host, r.token_env))
        .collect()
}

fn w(host: &str, token: Option<&str>) -> (String, Option<String>) {
    (host.to_owned(), token.map(str::to_owned))
}

fn token_names(plan: &LaunchPlan) -> Vec<&str> {
    plan.token_env.iter().map(|t| t.name.as_str()).collect()
}

fn fixed_env(plan: &LaunchPlan, key: &str) -> String {
    match plan.agent_env.get(key) {
        Some(AgentEnvValue::Fixed(v)) => v.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn agent_file<'a>(plan: &'a LaunchPlan, path: &str) -> &'a AgentFile {
    plan.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path}: {:?}", plan.files))
}

fn content(f: &AgentFile) -> &str {
    std::str::from_utf8(&f.content).expect("utf-8")
}

#[track_caller]
fn contains_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{text:?} does not contain {n:?}");
    }
}

/// A host environment from pairs.
fn host_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn exposed(pairs: &[(String, Redacted<String>)]) -> BTreeMap<&str, &str> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose().as_str()))
        .collect()
}

/// Answers every `?prompt` with a fixed value.
struct Answer(&'static str);

impl Prompter for Answer {
    fn ask(&mut self, _key: &str, _question: &str) -> Result<Redacted<String>, EnvError> {
        Ok(Redacted::new(self.0.to_owned()))
    }
}

const BASE: &str = "\
agent_provider:
  template: claude
  auth_token: ${CLAUDE_CODE_OAUTH_TOKEN}
env:
  TZ: UTC
git-gate:
  user:
    name: Dev Bot
    email: dev-bot@example.com
egress:
  log: 2
  routes:
    - host: registry.npmjs.org
      matches:
        - methods: [GET, HEAD]
    - host: pypi.org
";

const DEV: &str = "\
extends: base
env:
  GITHUB_TOKEN: ${GITHUB_TOKEN}
git-gate:
  repos:
    app:
      url: git@github.com:example/app.git
      key:
        provider: static
        path: ~/.ssh/app_deploy_key
      host_key: 'github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'
egress:
  routes:
    - host: api.github.com
      auth:
        scheme: token
        token_ref: GITHUB_TOKEN
      matches:
        - methods: [GET]
          paths:
            - {type: prefix, value: /repos/example/}
";

/// The worked example: base <- dev, agent `dev` overriding the user name.
fn dev_fixture() -> Fx {
    let fx = Fx::new();
    fx.bottle("base", BASE);
    fx.bottle("dev", DEV);
    fx.agent(
        "dev",
        "bottle: dev\ngit-gate:\n  user:\n    name: Dev Bot (app)\n",
        "Run the tests before every push.\n",
    );
    fx
}

// ---------------------------------------------------------------------------
// The whole plan
// ---------------------------------------------------------------------------

#[test]
fn the_rendered_routes_yaml_loads_through_the_proxys_parser() {
    let fx = dev_fixture();
    let plan = fx.plan("dev");
    assert!(
        plan.routes_yaml
            .starts_with("# routes.yaml for bottle test-slug (agent dev, bottle dev)"),
        "{}",
        plan.routes_yaml
    );
    let cfg = routes(&plan);
    assert_eq!(cfg.log, LogLevel::All);
    // Manifest routes root first, then the provider's.
    assert_eq!(
        wire(&plan),
        [
            w("registry.npmjs.org", None),
            w("pypi.org", None),
            w("api.github.com", Some("EGRESS_TOKEN_GITHUB_TOKEN")),
            w("api.anthropic.com", Some("EGRESS_TOKEN_AGENT_PROVIDER")),
        ]
    );
    let github = &cfg.routes[2];
    assert_eq!(github.auth().map(|a| a.scheme), Some(AuthScheme::Token));
    let m = github.matches.as_ref().expect("matches kept");
    assert_eq!(m[0].methods, ["GET"]);
    assert_eq!(
        cfg.routes[3].auth().map(|a| a.scheme),
        Some(AuthScheme::Bearer)
    );
    assert_eq!(
        token_names(&plan),
        ["EGRESS_TOKEN_GITHUB_TOKEN", "EGRESS_TOKEN_AGENT_PROVIDER"]
    );
    assert_eq!(
        plan.token_env[0].source,
        SecretSource::Env {
            key: "GITHUB_TOKEN".into(),
            source: EnvSource::parse("${GITHUB_TOKEN}").expect("parse"),
        }
    );
    assert_eq!(
        plan.token_env[1].source,
        SecretSource::Field {
            field: "agent_provider.auth_token".into(),
            source: EnvSource::parse("${CLAUDE_CODE_OAUTH_TOKEN}").expect("parse"),
        }
    );
}

#[test]
fn the_plan_holds_the_agent_environment_git_and_files() {
    let fx = dev_fixture();
    let plan = fx.plan("dev");
    assert_eq!((plan.agent.as_str(), plan.bottle.as_str()), ("dev", "dev"));
    assert_eq!((plan.label.as_str(), plan.color.as_str()), ("dev", "blue"));
    assert_eq!(
        plan.files_read
            .iter()
            .map(|f| (f.path.clone(), f.target.clone()))
            .collect::<Vec<_>>(),
        [
            (fx.paths().home_agents_dir().join("dev.md"), None),
            (fx.paths().bottles_dir().join("dev.md"), None),
            (fx.paths().bottles_dir().join("base.md"), None),
        ]
    );
    assert_eq!(plan.state.root, fx.home.join(".bot-bottle/state/test-slug"));
    assert_eq!(plan.image.provider, "claude");
    assert!(matches!(
        plan.image.dockerfile,
        DockerfileSource::Embedded(_)
    ));

    // Secrets the agent uses go to egress; the agent sees placeholders.
    assert_eq!(fixed_env(&plan, "GITHUB_TOKEN"), PLACEHOLDER);
    assert_eq!(fixed_env(&plan, "CLAUDE_CODE_OAUTH_TOKEN"), PLACEHOLDER);
    assert_eq!(
        plan.agent_env["TZ"],
        AgentEnvValue::Manifest(EnvSource::Literal("UTC".into()))
    );
    for k in [
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "ALL_PROXY",
    ] {
        assert_eq!(fixed_env(&plan, k), "http://egress:9099", "{k}");
    }
    assert_eq!(fixed_env(&plan, "NODE_EXTRA_CA_CERTS"), AGENT_CA_PATH);
    assert_eq!(fixed_env(&plan, "SSL_CERT_FILE"), AGENT_TRUST_BUNDLE);
    assert_eq!(fixed_env(&plan, "REQUESTS_CA_BUNDLE"), AGENT_TRUST_BUNDLE);
    assert_eq!(fixed_env(&plan, "BOT_BOTTLE_SLUG"), "test-slug");
    contains_all(&fixed_env(&plan, "NO_PROXY"), &["git-gate", "supervise"]);

    assert_eq!(
        plan.daemons,
        [Daemon::Egress, Daemon::GitGate, Daemon::Supervise]
    );
    assert_eq!(plan.git_upstreams.len(), 1);
    let up = &plan.git_upstreams[0];
    assert_eq!(up.name, "app");
    assert_eq!(up.url, "git@github.com:example/app.git");
    assert_eq!(
        up.host_key.line,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    );
    assert_eq!(up.host_key_origin, HostKeyOrigin::Manifest);
    assert_eq!(
        up.key,
        PushKey::Static {
            path: fx.home.join(".ssh/app_deploy_key")
        }
    );
    assert_eq!(up.key_file(), fx.home.join(".ssh/app_deploy_key"));
    // The agent's user name overlays the bottle's; the email is inherited.
    assert_eq!(
        plan.gitconfig,
        format!(
            "[user]\n\tname = \"Dev Bot (app)\"\n\temail = \"dev-bot@example.com\"\n\
             [url \"{}\"]\n\tinsteadOf = \"git@github.com:example/app.git\"\n",
            up.gate_url
        )
    );
    assert_eq!(
        content(agent_file(&plan, "/home/node/.gitconfig")),
        plan.gitconfig
    );
    let prompt = agent_file(&plan, "/home/node/.bot-bottle-prompt.txt");
    assert_eq!(prompt.mode, 0o600);
    let want = format!("Run the tests before every push.\n\n{SUPERVISE_PROMPT}"); // supervise on
    assert_eq!(content(prompt), want);
    assert_eq!(
        plan.command,
        [
            "claude",
            "--dangerously-skip-permissions",
            "--append-system-prompt-file",
            "/home/node/.bot-bottle-prompt.txt"
        ]
    );
    assert_eq!(plan.user.as_deref(), Some("node"));
    assert_eq!(plan.workdir, "/home/node/workspace");
    // The static key does not exist in the temp home yet.
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    contains_all(
        &plan.warnings[0],
        &[
            "git-gate.repos.app.key.path",
            &fx.home.join(".ssh/app_deploy_key").display().to_string(),
            "does not exist yet",
        ],
    );
    fs::create_dir_all(fx.home.join(".ssh")).expect("mkdir");
    fs::write(fx.home.join(".ssh/app_deploy_key"), "key").expect("write");
    assert!(fx.plan("dev").warnings.is_empty());
}

#[test]
fn the_gate_yaml_names_each_repo_with_bundle_paths() {
    let plan = dev_fixture().plan("dev");
    let yaml = plan.gate_yaml().expect("the dev bottle declares a repo");
    let doc: serde_norway::Value = serde_norway::from_str(&yaml).expect("valid YAML");
    let app = &doc["repos"]["app"];
    // scp-like as written: the path git would send, home-relative.
    assert_eq!(app["url"].as_str(), Some("git@github.com:example/app.git"));
    assert_eq!(app["key_file"].as_str(), Some("/bb/config/git-keys/app"));
    assert_eq!(
        app["host_key"].as_str(),
        Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
    );
    assert_eq!(doc["supervise_queue"].as_str(), Some("/bb/state/queue"));
    assert_eq!(doc["state_dir"].as_str(), Some("/bb/gitgate-state"));
    assert_eq!(doc["bottle_slug"].as_str(), Some(plan.slug.as_str()));
    assert_eq!(plan.state.gate_file(), plan.state.root.join("gitgate.yaml"));
}

#[test]
fn gate_urls_use_the_smart_http_port() {
    let plan = dev_fixture().plan("dev");
    assert_eq!(
        plan.git_upstreams[0].gate_url,
        "http://git-gate:9420/app.git"
    );
}

#[test]
fn the_display_summarises_the_plan() {
    let plan = dev_fixture().plan("dev");
    let shown = plan.to_string();
    contains_all(
        &shown,
        &[
            "bottle test-slug — agent `dev` in bottle `dev`",
            "agent image: built-in `claude` Dockerfile",
            "sidecar daemons: egress, git-gate, supervise",
            "egress allowlist (4 routes):",
            "- host: api.github.com",
            "token_env: EGRESS_TOKEN_GITHUB_TOKEN",
            "EGRESS_TOKEN_GITHUB_TOKEN <- env `GITHUB_TOKEN` = ${GITHUB_TOKEN}",
            "EGRESS_TOKEN_AGENT_PROVIDER <- agent_provider.auth_token = ${CLAUDE_CODE_OAUTH_TOKEN}",
            "TZ <- literal (3 chars)",
            "GITHUB_TOKEN=egress-placeholder",
            "-> git@github.com:example/app.git\n      push key: file ",
            "host key ssh-ed25519 from the bottle",
            "/home/node/.bot-bottle-prompt.txt (600,",
            "warning: git-gate.repos.app.key.path",
        ],
    );
}

// ---------------------------------------------------------------------------
// Secrets: resolved at launch, never printed
// ---------------------------------------------------------------------------

const GH: &str = "ghp_SECRETgithubTOKEN0123456789abcdef";
const CLAUDE: &str = "sk-ant-oat01-SECRETclaudeTOKEN-zzzz";
const LITERAL: &str = "literal-SECRET-in-the-manifest-9876";
const ASKED: &str = "typed-SECRET-at-the-prompt-5555";
const MIXED_PART: &str = "mixedSECRETpart4242";

fn secret_fixture() -> Fx {
    let fx = dev_fixture();
    // A child of dev with a literal secret, a prompted one and a mixed one.
    fx.bottle(
        "secretive",
        &format!(
            "extends: dev\nenv:\n  PASTED: {LITERAL}\n  ASKED: \"?Your deploy password\"\n  \
             MIXED: \"user:${{MIXED_VAR}}@host\"\n"
        ),
    );
    fx.agent("sec", "bottle: secretive\n", "hi\n");
    fx
}

#[test]
fn secrets_resolve_to_the_host_values() {
    let fx = secret_fixture();
    let plan = fx.plan("sec");
    let host = host_env(&[
        ("GITHUB_TOKEN", GH),
        ("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE),
        ("MIXED_VAR", MIXED_PART),
    ]);
    let secrets = plan
        .resolve_secrets(&host, &mut Answer(ASKED))
        .expect("resolves");
    assert_eq!(
        exposed(&secrets.tokens),
        BTreeMap::from([
            ("EGRESS_TOKEN_AGENT_PROVIDER", CLAUDE),
            ("EGRESS_TOKEN_GITHUB_TOKEN", GH),
        ])
    );
    let env = exposed(&secrets.agent_env);
    assert_eq!(env["PASTED"], LITERAL);
    assert_eq!(env["ASKED"], ASKED);
    assert_eq!(env["MIXED"], format!("user:{MIXED_PART}@host"));
    assert_eq!(env["TZ"], "UTC");
    assert_eq!(
        env["GITHUB_TOKEN"], PLACEHOLDER,
        "the agent gets the placeholder"
    );
    assert_eq!(env["CLAUDE_CODE_OAUTH_TOKEN"], PLACEHOLDER);
    assert_eq!(env["HTTPS_PROXY"], "http://egress:9099");
    // Every agent variable is resolved; no token goes to the agent.
    assert_eq!(env.len(), plan.agent_env.len());
    for v in env.values() {
        assert!(*v != GH && *v != CLAUDE, "a token reached the agent env");
    }
}

#[test]
fn no_secret_is_ever_printed() {
    let fx = secret_fixture();
    let plan = fx.plan("sec");
    let host = host_env(&[
        ("GITHUB_TOKEN", GH),
        ("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE),
        ("MIXED_VAR", MIXED_PART),
    ]);
    let secrets = plan
        .resolve_secrets(&host, &mut Answer(ASKED))
        .expect("resolves");
    let loaded = Loader::new(fx.paths()).load("sec").expect("loads");
    let outputs = [
        ("plan Debug", format!("{plan:?}")),
        ("plan Display", format!("{plan}")),
        ("secrets Debug", format!("{secrets:?}")),
        ("token_env Debug", format!("{:?}", plan.token_env)),
        ("agent_env Debug", format!("{:?}", plan.agent_env)),
        ("routes.yaml", plan.routes_yaml.clone()),
    ];
    for (what, text) in &outputs {
        for secret in [GH, CLAUDE, LITERAL, ASKED, MIXED_PART] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
        // Not even a recognisable part of the literal.
        assert!(!text.contains("SECRET"), "{what}:\n{text}");
    }
    // What is shown instead.
    contains_all(
        &outputs[1].1,
        &[
            &format!("PASTED <- literal ({} chars)", LITERAL.len()),
            "ASKED <- asked at launch: Your deploy password",
            "MIXED <- literal(5 chars) + ${MIXED_VAR} + literal(5 chars)",
        ],
    );
    // Files written into the agent hold no secret either.
    for f in &plan.files {
        for secret in [GH, CLAUDE, LITERAL, ASKED, MIXED_PART] {
            assert!(!content(f).contains(secret), "{}", f.path);
        }
    }
    assert!(loaded.warnings.is_empty());
}

#[test]
fn a_missing_host_variable_names_it() {
    let fx = dev_fixture();
    let plan = fx.plan("dev");
    let e = plan
        .resolve_secrets(
            &host_env(&[("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE)]),
            &mut NoTty,
        )
        .expect_err("GITHUB_TOKEN unset");
    assert!(
        matches!(e, ResolveError::Env(EnvError::MissingHostVar { .. })),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "`GITHUB_TOKEN` reads host variable `GITHUB_TOKEN`, which is not set"
    );
    let e = plan
        .resolve_secrets(&host_env(&[("GITHUB_TOKEN", GH)]), &mut NoTty)
        .expect_err("claude token unset");
    assert_eq!(
        e.to_string(),
        "`agent_provider.auth_token` reads host variable `CLAUDE_CODE_OAUTH_TOKEN`, which is not set"
    );
    // An empty credential is refused without showing anything.
    let e = plan
        .resolve_secrets(
            &host_env(&[("GITHUB_TOKEN", ""), ("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE)]),
            &mut NoTty,
        )
        .expect_err("empty");
    assert_eq!(
        e.to_string(),
        "env `GITHUB_TOKEN` = ${GITHUB_TOKEN} is empty"
    );
}

#[test]
fn a_prompt_without_a_terminal_is_refused() {
    let fx = secret_fixture();
    let plan = fx.plan("sec");
    let host = host_env(&[
        ("GITHUB_TOKEN", GH),
        ("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE),
        ("MIXED_VAR", MIXED_PART),
    ]);
    let e = plan.resolve_secrets(&host, &mut NoTty).expect_err("no tty");
    assert!(
        matches!(e, ResolveError::Env(EnvError::NoTerminal { .. })),
        "{e:?}"
    );
    contains_all(
        &e.to_string(),
        &[
            "`ASKED`",
            "?Your deploy password",
            "there is no terminal",
            "${VAR}",
        ],
    );
    // A prompted route token too.
    let fx = Fx::new();
    fx.single(
        "env:\n  TOK: \"?API token\"\negress:\n  routes:\n    - host: a.example\n      \
         auth: {scheme: Bearer, token_ref: TOK}\n",
    );
    let plan = fx.plan("a");
    let e = plan
        .resolve_secrets(&host_env(&[]), &mut NoTty)
        .expect_err("no tty");
    contains_all(&e.to_string(), &["`TOK`", "no terminal"]);
    let s = plan
        .resolve_secrets(&host_env(&[]), &mut Answer("typed"))
        .expect("answered");
    assert_eq!(
        exposed(&s.tokens),
        BTreeMap::from([("EGRESS_TOKEN_TOK", "typed")])
    );
}

// ---------------------------------------------------------------------------
// Providers in a plan
// ---------------------------------------------------------------------------

#[test]
fn codex_forwards_the_host_login_from_the_operators_home() {
    let fx = Fx::new();
    fx.single("agent_provider: {template: codex, forward_host_credentials: true}\n");
    let auth = fx.home.join(".codex").join("auth.json");
    write(
        &auth,
        r#"{"tokens": {"access_token": "codex-host-LOGIN-token-777", "refresh_token": "r"}}"#,
    );
    let plan = fx.plan("a");
    assert_eq!(
        wire(&plan),
        [
            w("api.openai.com", Some("EGRESS_TOKEN_HOST_LOGIN")),
            w("chatgpt.com", Some("EGRESS_TOKEN_HOST_LOGIN")),
        ]
    );
    assert_eq!(
        plan.token_env,
        [TokenEnv {
            name: "EGRESS_TOKEN_HOST_LOGIN".into(),
            source: SecretSource::HostFile {
                path: auth.clone(),
                pointer: "/tokens/access_token".into(),
            },
        }]
    );
    assert_eq!(fixed_env(&plan, "OPENAI_API_KEY"), PLACEHOLDER);
    let s = plan
        .resolve_secrets(&host_env(&[]), &mut NoTty)
        .expect("resolves");
    assert_eq!(
        exposed(&s.tokens),
        BTreeMap::from([("EGRESS_TOKEN_HOST_LOGIN", "codex-host-LOGIN-token-777")])
    );
    assert!(!format!("{plan}{plan:?}{s:?}").contains("LOGIN-token"));
    contains_all(
        &plan.to_string(),
        &[&format!(
            "EGRESS_TOKEN_HOST_LOGIN <- host login {}",
            auth.display()
        )],
    );

    // No login on the host: the error names the file, not a token.
    write(&auth, r#"{"tokens": {}}"#);
    let e = plan
        .resolve_secrets(&host_env(&[]), &mut NoTty)
        .expect_err("no token");
    contains_all(
        &e.to_string(),
        &[
            &auth.display().to_string(),
            "no string at /tokens/access_token",
        ],
    );
    write(&auth, "not json");
    let e = plan
        .resolve_secrets(&host_env(&[]), &mut NoTty)
        .expect_err("bad json");
    contains_all(&e.to_string(), &[&auth.display().to_string(), "not JSON"]);
    fs::remove_file(&auth).expect("rm");
    let e = plan
        .resolve_secrets(&host_env(&[]), &mut NoTty)
        .expect_err("missing");
    contains_all(
        &e.to_string(),
        &[&auth.display().to_string(), "cannot read the host login"],
    );
}

#[test]
fn pi_defaults_to_ollama_in_the_plan() {
    let fx = Fx::new();
    fx.single("agent_provider: {template: pi}\n");
    let plan = fx.plan("a");
    let cfg = routes(&plan);
    assert_eq!(cfg.routes.len(), 1);
    assert_eq!(cfg.routes[0].host, "ollama");
    assert_eq!(cfg.routes[0].ports, Some(vec![11434]));
    assert!(cfg.routes[0].auth().is_none());
    assert!(plan.token_env.is_empty());
    assert_eq!(plan.command, ["pi", "--models", "ollama/qwen2.5-coder:7b"]);
    let models: serde_json::Value = serde_json::from_str(content(agent_file(
        &plan,
        "/home/node/.pi/agent/models.json",
    )))
    .expect("json");
    assert_eq!(
        models["providers"]["ollama"]["baseUrl"],
        "http://ollama:11434/v1"
    );
    assert_eq!(models["providers"]["ollama"]["apiKey"], "ollama");
    assert_eq!(
        models["providers"]["ollama"]["models"][0]["id"],
        "qwen2.5-coder:7b"
    );
    assert_eq!(
        content(agent_file(&plan, "/home/node/.pi/agent/APPEND_SYSTEM.md")),
        "Do the task.\n"
    );
}

#[test]
fn pi_api_key_env_goes_to_egress() {
    let fx = Fx::new();
    fx.single(
        "env:\n  OPENROUTER_KEY: ${OR_KEY}\nagent_provider:\n  template: pi\n  settings:\n    \
         provider: openrouter\n    base_url: https://openrouter.ai/api/v1\n    \
         api_key_env: OPENROUTER_KEY\n    models: [qwen/qwen3-coder]\n",
    );
    let plan = fx.plan("a");
    assert_eq!(
        wire(&plan),
        [w("openrouter.ai", Some("EGRESS_TOKEN_OPENROUTER_KEY"))]
    );
    assert_eq!(fixed_env(&plan, "OPENROUTER_KEY"), PLACEHOLDER);
    let models = content(agent_file(&plan, "/home/node/.pi/agent/models.json"));
    contains_all(models, &["\"apiKey\": \"egress-placeholder\""]);
    let s = plan
        .resolve_secrets(&host_env(&[("OR_KEY", "sk-or-SECRET-1")]), &mut NoTty)
        .expect("resolves");
    assert_eq!(
        exposed(&s.tokens),
        BTreeMap::from([("EGRESS_TOKEN_OPENROUTER_KEY", "sk-or-SECRET-1")])
    );
    assert_eq!(exposed(&s.agent_env)["OPENROUTER_KEY"], PLACEHOLDER);

    // A name that is no env entry is the host variable of that name.
    let fx = Fx::new();
    fx.bottle(
        "b",
        "agent_provider:\n  template: pi\n  settings: {api_key_env: NOPE}\n",
    );
    fx.agent("a", "bottle: b\n", "");
    let plan = fx.plan("a");
    assert_eq!(
        plan.token_env[0].source,
        SecretSource::Field {
            field: "agent_provider.settings.api_key_env".into(),
            source: EnvSource::parse("${NOPE}").expect("parse"),
        }
    );
    let e = plan
        .resolve_secrets(&host_env(&[]), &mut NoTty)
        .expect_err("unset");
    assert_eq!(
        e.to_string(),
        "`agent_provider.settings.api_key_env` reads host variable `NOPE`, which is not set"
    );
    // Bad settings name the bottle file.
    let fx = Fx::new();
    let file = fx.bottle(
        "b",
        "agent_provider:\n  template: pi\n  settings: {models: []}\n",
    );
    fx.agent("a", "bottle: b\n", "");
    contains_all(
        &fx.plan_err("a"),
        &[
            &file.display().to_string(),
            "agent_provider.settings.models",
        ],
    );
}

const PLUGIN_YAML: &str = r#"
command: [myagent]
bypass_args: [--yolo]
home: /home/me
user: me
workdir: /home/me/src
prompt:
  file: "{home}/PROMPT.md"
  args: [--prompt-file, "{prompt_file}"]
routes:
  - host: api.myagent.example
    auth: auth_token
  - host: cdn.myagent.example
placeholder_env: [MYAGENT_KEY]
files:
  - path: "{home}/.myagent.json"
    mode: "0600"
    content: '{"label": "{label}", "home": "{home}"}'
"#;

#[test]
fn a_plugin_provider_plans_like_a_builtin() {
    let fx = Fx::new();
    let dir = fx.home.join(".bot-bottle").join("contrib").join("myagent");
    write(&dir.join("provider.yaml"), PLUGIN_YAML);
    write(&dir.join("Dockerfile"), "FROM debian:stable-slim\n");
    fx.single(
        "agent_provider:\n  template: myagent\n  auth_token: ${MYAGENT_TOKEN}\nsupervise: false\n",
    );
    let plan = fx
        .plan_opts(
            "a",
            &PlanOptions {
                label: Some("Plugin Run".into()),
                color: Some("magenta".into()),
                slug: Some("p".into()),
                workspace: None,
            },
        )
        .expect("plans");
    assert_eq!(plan.image.provider, "myagent");
    assert_eq!(
        plan.image.dockerfile,
        DockerfileSource::File(dir.join("Dockerfile"))
    );
    assert_eq!(
        plan.command,
        ["myagent", "--yolo", "--prompt-file", "/home/me/PROMPT.md"]
    );
    assert_eq!(
        (plan.home.as_str(), plan.workdir.as_str()),
        ("/home/me", "/home/me/src")
    );
    assert_eq!(plan.user.as_deref(), Some("me"));
    let f = agent_file(&plan, "/home/me/.myagent.json");
    assert_eq!(f.mode, 0o600);
    assert_eq!(content(f), r#"{"label": "Plugin Run", "home": "/home/me"}"#);
    assert_eq!(
        content(agent_file(&plan, "/home/me/PROMPT.md")),
        "Do the task.\n"
    );
    assert_eq!(
        wire(&plan),
        [
            w("api.myagent.example", Some("EGRESS_TOKEN_AGENT_PROVIDER")),
            w("cdn.myagent.example", None),
        ]
    );
    assert_eq!(fixed_env(&plan, "MYAGENT_KEY"), PLACEHOLDER);
    assert_eq!(plan.daemons, [Daemon::Egress], "supervise: false, no repos");
    contains_all(
        &plan.to_string(),
        &[&format!(
            "agent image: {} (provider `myagent`)",
            dir.join("Dockerfile").display()
        )],
    );
    let s = plan
        .resolve_secrets(&host_env(&[("MYAGENT_TOKEN", "plugin-tok")]), &mut NoTty)
        .expect("resolves");
    assert_eq!(
        exposed(&s.tokens),
        BTreeMap::from([("EGRESS_TOKEN_AGENT_PROVIDER", "plugin-tok")])
    );
}

// ---------------------------------------------------------------------------
// Plan-time checks
// ---------------------------------------------------------------------------

#[test]
fn provider_credentials_in_the_bottle_env_are_withheld_with_a_warning() {
    let fx = Fx::new();
    fx.single("env:\n  ANTHROPIC_API_KEY: ${KEY}\n  FINE: x\n");
    let plan = fx.plan("a");
    assert!(!plan.agent_env.contains_key("ANTHROPIC_API_KEY"));
    assert!(plan.agent_env.contains_key("FINE"));
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    contains_all(
        &plan.warnings[0],
        &[
            "env `ANTHROPIC_API_KEY` is not given to the agent",
            "provider `claude`",
            "agent_provider.auth_token",
        ],
    );
}

#[test]
fn an_env_entry_may_not_replace_what_bot_bottle_sets() {
    let fx = Fx::new();
    let file = fx.bottle("b", "env:\n  HTTPS_PROXY: http://evil.example:8080\n");
    fx.agent("a", "bottle: b\n", "");
    contains_all(
        &fx.plan_err("a"),
        &[
            "env `HTTPS_PROXY`",
            &file.display().to_string(),
            "bot-bottle sets that variable itself",
        ],
    );
}

#[test]
fn a_manifest_route_for_a_provider_host_wins() {
    let fx = Fx::new();
    fx.single(
        "agent_provider: {template: claude, auth_token: \"${T}\"}\negress:\n  routes:\n    \
         - host: API.anthropic.com\n      matches: [{methods: [POST]}]\n",
    );
    let plan = fx.plan("a");
    assert_eq!(wire(&plan), [w("api.anthropic.com", None)]);
    assert!(plan.token_env.is_empty());
}

#[test]
fn one_env_entry_shared_by_two_routes_is_one_proxy_variable() {
    let fx = Fx::new();
    fx.single(
        "env: {GH: \"${GH}\"}\negress:\n  routes:\n    \
         - {host: api.github.com, auth: {scheme: token, token_ref: GH}}\n    \
         - {host: uploads.github.com, auth: {scheme: Bearer, token_ref: GH}}\n",
    );
    let plan = fx.plan("a");
    assert_eq!(token_names(&plan), ["EGRESS_TOKEN_GH"]);
    assert_eq!(
        wire(&plan)
            .into_iter()
            .filter(|(_, t)| t.as_deref() == Some("EGRESS_TOKEN_GH"))
            .count(),
        2
    );
}

#[test]
fn two_credentials_for_one_proxy_variable_are_refused() {
    let fx = Fx::new();
    fx.single(
        "env: {gh_token: \"${A}\", GH_TOKEN: \"${B}\"}\negress:\n  routes:\n    \
         - {host: a.example, auth: {scheme: token, token_ref: gh_token}}\n    \
         - {host: b.example, auth: {scheme: token, token_ref: GH_TOKEN}}\n",
    );
    contains_all(
        &fx.plan_err("a"),
        &["two credentials map to the proxy variable EGRESS_TOKEN_GH_TOKEN"],
    );
}

#[test]
fn labels_colours_skills_workspace_and_dockerfiles_are_checked() {
    let fx = Fx::new();
    fx.single("{}\n");
    let bad_label = fx
        .plan_opts(
            "a",
            &PlanOptions {
                label: Some("x\"; rm -rf /".into()),
                ..fixed()
            },
        )
        .expect_err("label");
    contains_all(&bad_label, &["label `x\"; rm -rf /`", "up to 40 letters"]);
    let bad_colour = fx
        .plan_opts(
            "a",
            &PlanOptions {
                color: Some("mauve".into()),
                ..fixed()
            },
        )
        .expect_err("colour");
    contains_all(
        &bad_colour,
        &["colour `mauve`", "red, green, yellow, blue, magenta, cyan"],
    );
    let no_dir = fx
        .plan_opts(
            "a",
            &PlanOptions {
                workspace: Some(fx.cwd.join("nope")),
                ..fixed()
            },
        )
        .expect_err("workspace");
    contains_all(&no_dir, &["--cwd", "is not a folder"]);
    let ws = fx
        .plan_opts(
            "a",
            &PlanOptions {
                workspace: Some(fx.cwd.clone()),
                ..fixed()
            },
        )
        .expect("workspace");
    assert_eq!(ws.workspace.as_deref(), Some(fx.cwd.as_path()));

    // Skills must be folders under ~/.claude/skills.
    let fx = Fx::new();
    fx.bottle("b", "{}\n");
    let agent = fx.agent("a", "bottle: b\nskills: [review]\n", "");
    let e = fx.plan_err("a");
    contains_all(
        &e,
        &[
            &agent.display().to_string(),
            "skills: `review` is not a folder at",
            &fx.home.join(".claude/skills/review").display().to_string(),
        ],
    );
    fs::create_dir_all(fx.home.join(".claude/skills/review")).expect("mkdir");
    let plan = fx.plan("a");
    assert_eq!(
        plan.skills,
        [("review".to_owned(), fx.home.join(".claude/skills/review"))]
    );

    // A Dockerfile override is relative to the bottle file.
    let fx = Fx::new();
    let file = fx.bottle(
        "b",
        "agent_provider: {template: claude, dockerfile: images/Dockerfile}\n",
    );
    fx.agent("a", "bottle: b\n", "");
    contains_all(
        &fx.plan_err("a"),
        &[
            &file.display().to_string(),
            "agent_provider.dockerfile",
            "is not a file",
        ],
    );
    let df = fx.paths().bottles_dir().join("images/Dockerfile");
    write(&df, "FROM scratch\n");
    assert_eq!(fx.plan("a").image.dockerfile, DockerfileSource::File(df));
}

#[test]
fn the_slug_comes_from_the_label_and_is_unique() {
    let fx = Fx::new();
    fx.single("{}\n");
    let opts = PlanOptions {
        label: Some("My Task_2.0".into()),
        ..PlanOptions::default()
    };
    let a = fx.plan_opts("a", &opts).expect("plans");
    assert!(a.slug.starts_with("my-task-2-0-"), "{}", a.slug);
    let suffix = &a.slug["my-task-2-0-".len()..];
    assert_eq!(suffix.len(), 6, "{}", a.slug);
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{}", a.slug);
    assert_eq!(
        a.state.root,
        fx.home.join(".bot-bottle/state").join(&a.slug)
    );
    let b = fx.plan_opts("a", &opts).expect("plans");
    assert_ne!(a.slug, b.slug);
    assert_eq!(slugify("---"), "bottle");
    assert_eq!(
        slugify("A very long label that goes on and on"),
        "a-very-long-label-that-g"
    );
}

#[test]
fn helpers() {
    assert_eq!(token_env_name("GITHUB_TOKEN"), "EGRESS_TOKEN_GITHUB_TOKEN");
    assert_eq!(token_env_name("gh-token"), "EGRESS_TOKEN_GH_TOKEN");
    assert!(valid_label("dev 2.0_x-y"));
    for bad in ["", "a/b", "quote\"", &"x".repeat(41)] {
        assert!(!valid_label(bad), "{bad}");
    }
    assert_eq!(gitconfig_quote("a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
}

#[test]
fn the_state_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fx::new();
    let state = StateLayout {
        root: fx.home.join(".bot-bottle/state/s"),
    };
    state.create().expect("create");
    for dir in [
        state.root.clone(),
        state.queue_dir(),
        state.agent_files_dir(),
    ] {
        let mode = fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    state
        .write_private(&state.meta_file(), b"{}")
        .expect("write");
    let mode = fs::metadata(state.meta_file())
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(state.routes_file(), state.root.join("routes.yaml"));
    assert_eq!(state.ca_dir(), state.root.join("ca"));
}

// ---------------------------------------------------------------------------
// Property: no message ever shows a value of a manifest's env or secret
// fields (or of the host variables they read)
// ---------------------------------------------------------------------------

/// One section of a generated bottle: `(top-level key, YAML with `{s}`
/// and `{t}` standing for two secrets)`. Each puts a secret in an `env:`
/// value, a secret field, or a place of another type.
const SECTIONS: &[(&str, &str)] = &[
    ("env", "env:\n  A: \"{s}\"\n  B: plain\n"),
    ("env", "env:\n  A: \"{s}\"\n  A: \"{t}\"\n"),
    ("env", "env:\n  - \"{s}\"\n"),
    ("env", "env:\n  A: [\"{s}\"]\n"),
    ("env", "env:\n  A: {x: \"{s}\"}\n"),
    ("env", "env:\n  A: \"${{s}}\"\n"),
    ("env", "env:\n  A: \"pre-${{s}}-post\"\n"),
    ("env", "env:\n  A: \"{s}\n"),
    ("env", "env:\n  GH: \"{s}\"\n"),
    (
        "agent_provider",
        "agent_provider:\n  template: claude\n  auth_token: \"{s}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  auth_token: [\"{s}\"]\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: codex\n  forward_host_credentials: \"{s}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: pi\n  settings:\n    api_key_env: \"{s}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: pi\n  settings:\n    api_key: \"{s}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: pi\n  settings:\n    api_key: \"{s}\"\n    api_key_env: \"{t}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: pi\n  settings:\n    context_window: \"{s}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: pi\n  settings:\n    models: \"{s}\"\n",
    ),
    (
        "agent_provider",
        "agent_provider:\n  template: pi\n  settings:\n    supports_developer_role: \"{s}\"\n",
    ),
    ("supervise", "supervise: \"{s}\"\n"),
    ("egress", "egress:\n  log: \"{s}\"\n"),
    (
        "egress",
        "egress:\n  routes:\n    - host: api.example.com\n      auth: {scheme: Bearer, token_ref: \"{s}\"}\n",
    ),
    (
        "egress",
        "egress:\n  routes:\n    - host: api.example.com\n      auth: {scheme: Bearer, token_ref: GH}\n",
    ),
    (
        "egress",
        "egress:\n  routes:\n    - host: api.example.com\n      auth: {scheme: \"{s}\", token_ref: GH}\n",
    ),
    (
        "egress",
        "egress:\n  routes:\n    - host: api.example.com\n      auth: \"{s}\"\n",
    ),
    ("egress", "egress:\n  routes:\n    - \"{s}\"\n"),
    (
        "git-gate",
        "git-gate:\n  repos:\n    app:\n      url: git@gitea.example.org:o/app.git\n      host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n      key: {provider: gitea, forge_token_env: \"{s}\"}\n",
    ),
    (
        "git-gate",
        "git-gate:\n  repos:\n    app:\n      key: {provider: \"{s}\"}\n",
    ),
    (
        "git-gate",
        "git-gate:\n  repos:\n    app:\n      key: {provider: gitea, forge_token_env: [\"{s}\"]}\n",
    ),
];

/// Secrets as people paste them: not names (a `-`), or a credential that
/// has a name's shape.
fn secret_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "Sx[A-Za-z0-9]{6,14}-[a-z0-9]{4}",
        "[A-Za-z0-9]{36}".prop_map(|s| format!("ghp_{s}")),
        "[a-z0-9]{20}".prop_map(|s| format!("glpat-{s}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn no_message_ever_shows_an_env_or_secret_value(
        picks in proptest::collection::vec((0..SECTIONS.len(), any::<bool>()), 1..4),
        s in secret_strategy(),
        t in secret_strategy(),
        host_set in any::<bool>(),
    ) {
        let mut yaml = String::new();
        let mut used: Vec<&str> = Vec::new();
        for (i, swap) in &picks {
            let (key, text) = SECTIONS[*i];
            if used.contains(&key) {
                continue;
            }
            used.push(key);
            let (a, b) = if *swap { (&t, &s) } else { (&s, &t) };
            yaml.push_str(&text.replace("{s}", a).replace("{t}", b));
        }
        let fx = Fx::new();
        fx.single(&yaml);
        let secrets = [s.as_str(), t.as_str()];
        let check = |what: &str, text: &str| -> Result<(), TestCaseError> {
            for v in secrets {
                prop_assert!(!text.contains(v), "{what} shows a secret:\n{text}\n--- manifest:\n{yaml}");
            }
            Ok(())
        };
        let paths = fx.paths();
        let loaded = match Loader::new(paths.clone()).load("a") {
            Ok(l) => l,
            Err(e) => {
                check("a load error", &format!("{e} {e:?}"))?;
                return Ok(());
            }
        };
        let provider = crate::provider::find(&paths, &loaded.bottle.provider.template)
            .expect("a built-in provider");
        let plan = match LaunchPlan::new(&paths, &loaded, &provider, &fixed()) {
            Ok(p) => p,
            Err(e) => {
                check("a plan error", &format!("{e} {e:?}"))?;
                return Ok(());
            }
        };
        check("the plan", &format!("{plan}"))?;
        check("the plan's Debug", &format!("{plan:?}"))?;
        // The host's variables hold secrets too: set to one, or unset.
        let host = |_: &str| host_set.then(|| s.clone());
        check("the host report", &plan.host_report(&host))?;
        if let Err(e) = plan.check_secrets(&host, false) {
            check("a resolve error", &format!("{e} {e:?}"))?;
        }
    }
}

#[test]
fn supervise_registers_the_mcp_server_and_tells_the_agent_unless_turned_off() {
    for (template, config, registered) in [
        (
            "claude",
            "/home/node/.claude.json",
            "\"url\": \"http://supervise:9100/mcp\"",
        ),
        (
            "codex",
            "/home/node/.codex/config.toml",
            "[mcp_servers.supervise]",
        ),
    ] {
        let fx = Fx::new();
        fx.single(&format!("agent_provider:\n  template: {template}\n"));
        let plan = fx.plan("a");
        assert!(plan.daemons.contains(&Daemon::Supervise), "{template}");
        assert!(
            content(agent_file(&plan, config)).contains(registered),
            "{template}"
        );
        let prompt = content(agent_file(&plan, "/home/node/.bot-bottle-prompt.txt"));
        assert!(prompt.starts_with("Do the task.\n"), "{prompt}");
        contains_all(
            prompt,
            &["list-egress-routes", "`allow`", "proposal-status"],
        );

        let fx = Fx::new();
        fx.single(&format!(
            "agent_provider:\n  template: {template}\nsupervise: false\n"
        ));
        let plan = fx.plan("a");
        assert!(!plan.daemons.contains(&Daemon::Supervise), "{template}");
        assert!(
            !content(agent_file(&plan, config)).contains("supervise"),
            "{template}"
        );
        assert_eq!(
            content(agent_file(&plan, "/home/node/.bot-bottle-prompt.txt")),
            "Do the task.\n"
        );
    }
}
