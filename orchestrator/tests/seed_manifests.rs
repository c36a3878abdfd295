//! The manifests of the earlier (Python) bot-bottle, re-typed from its
//! README and `examples/bottles/*.md`, load and mean what they meant there:
//! a bare name in `auth_token`, `auth.token_ref`, pi's `api_key_env` or
//! git-gate's `forge_token_env` names a host variable; `template` defaults
//! to claude; `host_key` is optional (the operator's `known_hosts`); a gitea
//! key's `api_url` comes from the repo URL; pi takes the seed's settings.
//!
//! Everything goes through the binary's `start --dry-run`, which prints the
//! plan and checks every host variable it would read.

#![allow(clippy::expect_used, reason = "tests")]

mod support;

use std::fmt::Write as _;

use support::{Env, contains_all, contains_none, write};

/// The seed's `examples/bottles/claude.md`: the provider boundary other
/// bottles extend. `auth_token` names the host variable with the token.
const SEED_CLAUDE: &str = "\
---
agent_provider:
  template: claude
  # auth_token names the host env var holding the Claude OAuth token; the
  # provider's own api.anthropic.com route injects it as the Bearer header.
  auth_token: BOT_BOTTLE_CLAUDE_OAUTH_TOKEN
---
Common Claude provider boundary. Drop this file into
`~/.bot-bottle/bottles/claude.md`, then extend it from task-specific
bottles.
";

/// The seed's `examples/bottles/dev.md`: a task bottle on top of claude.
const SEED_DEV: &str = "\
---
extends: claude
---
The `dev` bottle: backs a generic development workflow. Inherits the
Claude provider boundary from `claude`.
";

/// The seed README's `gitea-dev` bottle (its egress route example).
const SEED_GITEA_DEV: &str = "\
---
extends: claude
egress:
  routes:
    - host: gitea.dideric.is
      auth:
        scheme: token # Bearer | token
        token_ref: BOT_BOTTLE_GITEA_TOKEN
      matches: # optional: restrict to specific paths/methods/headers
        - paths:
            - {type: prefix, value: /api/v1/}
          methods: [GET, POST, PATCH, DELETE]
      dlp: # optional: per-route detector overrides (default: all on)
        outbound_detectors: [token_patterns, known_secrets]
        inbound_detectors: false # disable response scanning for this host
---
The `gitea-dev` bottle. Provider auth via the inherited Claude route.
";

/// The seed README's agent for it.
const SEED_GITEA_AGENT: &str = "\
---
bottle: gitea-dev
skills:
  - gitea
---
You help maintain Gitea-hosted projects.
";

const CLAUDE_TOKEN: &str = "sk-ant-oat01-SEEDtest-claude-0000";
const GITEA_TOKEN: &str = "SEEDtest-gitea-token-1111";

fn seed_home() -> Env {
    let env = Env::empty();
    write(&env.bottles().join("claude.md"), SEED_CLAUDE);
    write(&env.bottles().join("dev.md"), SEED_DEV);
    write(&env.bottles().join("gitea-dev.md"), SEED_GITEA_DEV);
    write(&env.agents().join("gitea-helper.md"), SEED_GITEA_AGENT);
    std::fs::create_dir_all(env.home.join(".claude").join("skills").join("gitea"))
        .expect("skill folder");
    env.agent("dev", "dev");
    env
}

#[test]
fn the_claude_boundary_reads_its_token_from_the_host_variable_it_names() {
    let env = seed_home();
    let out = env.run_env(
        &["start", "dev", "--dry-run"],
        &[("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", CLAUDE_TOKEN)],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "- host: api.anthropic.com",
            "token_env: EGRESS_TOKEN_AGENT_PROVIDER",
            "EGRESS_TOKEN_AGENT_PROVIDER <- agent_provider.auth_token = ${BOT_BOTTLE_CLAUDE_OAUTH_TOKEN}",
            "CLAUDE_CODE_OAUTH_TOKEN=egress-placeholder",
            "BOT_BOTTLE_CLAUDE_OAUTH_TOKEN: set (read by agent_provider.auth_token)",
            "dry run: nothing was started",
        ],
    );
    // Never a literal: the variable's name is not the token.
    contains_none(&out.all(), &["literal (29 chars)", CLAUDE_TOKEN]);

    // Unset, the dry run fails as the launch would, naming the variable.
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.all(),
        &[
            "BOT_BOTTLE_CLAUDE_OAUTH_TOKEN: NOT SET (read by agent_provider.auth_token)",
            "`agent_provider.auth_token` reads host variable `BOT_BOTTLE_CLAUDE_OAUTH_TOKEN`, which is not set",
        ],
    );
    contains_none(&out.stdout, &["dry run: nothing was started"]);
    // And a real start stops at the same place, before any launch step
    // (the docker of this harness does not exist).
    let out = env.run(&["start", "dev", "--yes"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", "not set"]);
    contains_none(&out.stderr, &["no-such-docker", "Docker engine"]);
}

#[test]
fn the_readme_gitea_route_names_a_host_variable() {
    let env = seed_home();
    let vars = [
        ("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", CLAUDE_TOKEN),
        ("BOT_BOTTLE_GITEA_TOKEN", GITEA_TOKEN),
    ];
    let out = env.run_env(&["start", "gitea-helper", "--dry-run"], &vars);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "agent `gitea-helper` in bottle `gitea-dev`",
            "- host: gitea.dideric.is",
            "auth_scheme: token",
            "token_env: EGRESS_TOKEN_BOT_BOTTLE_GITEA_TOKEN",
            "- value: /api/v1/",
            "outbound_detectors:",
            "inbound_detectors: false",
            "- host: api.anthropic.com",
            "EGRESS_TOKEN_BOT_BOTTLE_GITEA_TOKEN <- egress.routes[gitea.dideric.is].auth.token_ref = ${BOT_BOTTLE_GITEA_TOKEN}",
            "EGRESS_TOKEN_AGENT_PROVIDER <- agent_provider.auth_token = ${BOT_BOTTLE_CLAUDE_OAUTH_TOKEN}",
            "BOT_BOTTLE_GITEA_TOKEN: set (read by egress.routes[gitea.dideric.is].auth.token_ref)",
            "skill gitea <-",
        ],
    );
    contains_none(&out.all(), &[GITEA_TOKEN, CLAUDE_TOKEN]);
    // The agent never gets the variable (it is not an env entry at all).
    contains_none(&out.stdout, &["BOT_BOTTLE_GITEA_TOKEN="]);

    let out = env.run_env(&["start", "gitea-helper", "--dry-run"], &[vars[0]]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.all(),
        &[
            "BOT_BOTTLE_GITEA_TOKEN: NOT SET",
            "`BOT_BOTTLE_GITEA_TOKEN`, which is not set",
        ],
    );
}

#[test]
fn a_bottle_env_entry_of_that_name_still_wins_over_the_host_variable() {
    // Today's form keeps its meaning: `token_ref` naming an `env:` entry
    // injects that entry's value, and the agent sees the placeholder.
    let env = Env::empty();
    env.bottle(
        "b",
        "env:\n  GH: ${GITHUB_TOKEN}\negress:\n  routes:\n    - host: api.github.com\n      auth: {scheme: Bearer, token_ref: GH}\n",
    );
    env.agent("a", "b");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "EGRESS_TOKEN_GH <- env `GH` = ${GITHUB_TOKEN}",
            "GH=egress-placeholder",
            "GITHUB_TOKEN: set (read by env.GH)",
        ],
    );
}

#[test]
fn codex_auth_token_names_a_host_variable() {
    let env = Env::empty();
    env.bottle(
        "codex",
        "agent_provider:\n  template: codex\n  auth_token: OPENAI_API_KEY\n",
    );
    env.agent("c", "codex");
    let out = env.run_env(
        &["start", "c", "--dry-run"],
        &[("OPENAI_API_KEY", "sk-SEEDtest-openai")],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "- host: api.openai.com",
            "EGRESS_TOKEN_AGENT_PROVIDER <- agent_provider.auth_token = ${OPENAI_API_KEY}",
            "OPENAI_API_KEY=egress-placeholder",
        ],
    );
    contains_none(&out.all(), &["literal (14 chars)", "sk-SEEDtest-openai"]);
}

#[test]
fn agent_provider_without_template_is_claude() {
    let env = Env::empty();
    env.bottle(
        "b",
        "agent_provider:\n  auth_token: BOT_BOTTLE_CLAUDE_OAUTH_TOKEN\n",
    );
    env.agent("a", "b");
    let out = env.run_env(
        &["start", "a", "--dry-run"],
        &[("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", CLAUDE_TOKEN)],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "agent image: built-in `claude` Dockerfile",
            "EGRESS_TOKEN_AGENT_PROVIDER <- agent_provider.auth_token = ${BOT_BOTTLE_CLAUDE_OAUTH_TOKEN}",
        ],
    );
}

/// PRD 0058's hosted example: `OpenRouter` with `api_key_env`, and every
/// settings key of the seed.
#[test]
fn pi_takes_the_seeds_settings_and_api_key_env_names_a_host_variable() {
    let env = Env::empty();
    env.bottle(
        "pi",
        "agent_provider:
  template: pi
  settings:
    provider: openrouter
    base_url: https://openrouter.ai/api/v1
    api: openai-completions
    api_key_env: OPENROUTER_API_KEY
    models: [qwen/qwen3-coder]
    context_window: 32768
    max_tokens: 4096
    max_tokens_field: max_completion_tokens
    supports_developer_role: false
    supports_reasoning_effort: true
",
    );
    env.agent("p", "pi");
    let out = env.run_env(
        &["start", "p", "--dry-run"],
        &[("OPENROUTER_API_KEY", "sk-or-SEEDtest")],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "- host: openrouter.ai",
            "token_env: EGRESS_TOKEN_OPENROUTER_API_KEY",
            "EGRESS_TOKEN_OPENROUTER_API_KEY <- agent_provider.settings.api_key_env = ${OPENROUTER_API_KEY}",
            "--models openrouter/qwen/qwen3-coder",
            "OPENROUTER_API_KEY: set",
        ],
    );
    // The Ollama default with the seed's dummy `api_key`.
    env.bottle(
        "ollama",
        "agent_provider:\n  template: pi\n  settings:\n    api_key: ollama\n    models: [qwen2.5-coder:7b]\n",
    );
    env.agent("o", "ollama");
    let out = env.run(&["start", "o", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &["- host: ollama", "--models ollama/qwen2.5-coder:7b"],
    );
    // Both at once: the seed refused that too.
    env.bottle(
        "both",
        "agent_provider:\n  template: pi\n  settings:\n    api_key: x\n    api_key_env: OPENROUTER_API_KEY\n",
    );
    env.agent("both", "both");
    let out = env.run(&["start", "both", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["api_key", "api_key_env", "not both"]);
}

/// A repo without `host_key` (optional in the seed) takes the operator's
/// pinned key from `~/.ssh/known_hosts`, hashed entries included; a gitea
/// key without `api_url` derives it from the repo URL.
#[test]
fn git_gate_repos_as_the_seed_wrote_them() {
    let env = Env::empty();
    env.bottle(
        "git",
        "git-gate:
  user: {name: Seed Bot, email: seed@example.com}
  repos:
    app:
      url: git@github.com:example/app.git
      key:
        provider: static
        path: ~/.ssh/app_deploy_key
    infra:
      url: git@gitea.example.org:ops/infra.git
      key:
        provider: gitea
        forge_token_env: GITEA_TOKEN
",
    );
    env.agent("g", "git");
    // `ssh-keygen -H` hashes names as `|1|salt|hash`; one line per host.
    let kh = env.home.join(".ssh").join("known_hosts");
    write(
        &kh,
        "# a comment\n\
         other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n\
         |1|sHl5j4ChYfPjJKYQhHk3MUnUmCg=|6wUmQ6Pt9CyTg2Bc3X5v6XhjP/c= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
    );
    hash_known_hosts(&kh, &["github.com", "gitea.example.org"]);
    let out = env.run_env(
        &["start", "g", "--dry-run"],
        &[("GITEA_TOKEN", "SEEDtest-forge-2222")],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "http://git-gate:9420/app.git -> git@github.com:example/app.git",
            "http://git-gate:9420/infra.git -> git@gitea.example.org:ops/infra.git",
            "host key ssh-ed25519 from",
            "known_hosts",
            "Gitea deploy key minted at launch via https://gitea.example.org/api/v1 for ops/infra",
            "forge token <- git-gate.repos.infra.key.forge_token_env = ${GITEA_TOKEN}",
            "GITEA_TOKEN: set (read by git-gate.repos.infra.key.forge_token_env)",
        ],
    );
    contains_none(&out.all(), &["SEEDtest-forge-2222"]);

    // Without the variable, the dry run stops like the launch would.
    let out = env.run(&["start", "g", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.all(),
        &["GITEA_TOKEN: NOT SET", "`GITEA_TOKEN`, which is not set"],
    );

    // Not in known_hosts either: refused with the line to run.
    std::fs::remove_file(&kh).expect("rm known_hosts");
    let out = env.run_env(&["start", "g", "--dry-run"], &[("GITEA_TOKEN", "x-forge")]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            "git-gate.repos.app.host_key",
            "ssh-keyscan -t ed25519 github.com >> ",
            "known_hosts",
        ],
    );
}

/// Appends a line per host and hashes the file as `ssh-keygen -H` does
/// (`|1|base64(salt)|base64(HMAC-SHA1(salt, host))`): with ssh-keygen itself
/// when it is installed, so the lookup meets the real format, else the same
/// computation here.
fn hash_known_hosts(file: &std::path::Path, hosts: &[&str]) {
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let mut text = std::fs::read_to_string(file).expect("read");
    let plain: String = hosts.iter().fold(String::new(), |mut out, h| {
        let _ = writeln!(out, "{h} {KEY}");
        out
    });
    let keygen = std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_ok();
    if keygen {
        text.push_str(&plain);
        std::fs::write(file, text).expect("write");
        let o = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(file)
            .output()
            .expect("ssh-keygen -H");
        assert!(o.status.success(), "ssh-keygen -H: {o:?}");
    } else {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        for (i, h) in hosts.iter().enumerate() {
            let salt = [u8::try_from(i).expect("few hosts"); 20];
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
            let tag = ring::hmac::sign(&key, h.as_bytes());
            let _ = writeln!(
                text,
                "|1|{}|{} {KEY}",
                b64.encode(salt),
                b64.encode(tag.as_ref())
            );
        }
        std::fs::write(file, text).expect("write");
    }
    let hashed = std::fs::read_to_string(file).expect("read");
    for h in hosts {
        assert!(!hashed.contains(h), "{h} left in clear:\n{hashed}");
    }
}

#[test]
fn the_seed_git_fetch_block_is_passed_to_the_proxy() {
    let env = Env::empty();
    env.bottle(
        "b",
        "egress:\n  routes:\n    - host: github.com\n      git:\n        fetch: true\n",
    );
    env.agent("a", "b");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["- host: github.com", "fetch: true"]);
}

#[test]
fn the_seeds_dry_run_variable_means_dry_run() {
    let env = seed_home();
    let out = env.run_env(
        &["start", "dev", "--yes"],
        &[
            ("BOT_BOTTLE_DRY_RUN", "1"),
            ("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", CLAUDE_TOKEN),
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["dry run: nothing was started"]);
    contains_none(&out.all(), &["no-such-docker", "Docker engine"]);
    assert!(!env.home.join(".bot-bottle").join("state").exists());
}
