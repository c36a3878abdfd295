//! Providers (SPEC §6): the built-ins, plugin discovery and its errors, and
//! what each renders for a bottle.

#![allow(clippy::expect_used, reason = "tests")]

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::plan::PLACEHOLDER;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

struct Fx {
    _tmp: tempfile::TempDir,
    home: PathBuf,
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = tmp.path().join("home");
        fs::create_dir_all(&home).expect("mkdir");
        Self { _tmp: tmp, home }
    }

    fn paths(&self) -> Paths {
        Paths::new(&self.home, self.home.join("work"))
    }

    fn plugin_dir(&self, name: &str) -> PathBuf {
        self.home.join(".bot-bottle").join("contrib").join(name)
    }

    /// A plugin folder; `None` leaves the file out.
    fn plugin(&self, name: &str, yaml: Option<&str>, dockerfile: bool) -> PathBuf {
        let dir = self.plugin_dir(name);
        fs::create_dir_all(&dir).expect("mkdir");
        if let Some(y) = yaml {
            fs::write(dir.join("provider.yaml"), y).expect("write yaml");
        }
        if dockerfile {
            fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("write Dockerfile");
        }
        dir
    }
}

const MYAGENT: &str = r#"
command: [myagent, --fast]
bypass_args: [--yolo]
resume_args: [--again]
home: /home/me
user: me
workdir: /home/me/src
prompt:
  file: "{home}/prompt.md"
  args: [--system, "{prompt_file}"]
env:
  MYAGENT_TELEMETRY: "0"
routes:
  - host: api.myagent.example
    auth: auth_token
  - host: cdn.myagent.example
  - host: git.myagent.example
    auth: auth_token
    scheme: token
placeholder_env: [MYAGENT_KEY]
hidden_env: [MYAGENT_KEY]
files:
  - path: "{home}/.myagent/config.json"
    content: '{"label": "{label}", "home": "{home}", "color": "{color}/{color_ansi}"}'
  - path: /etc/myagent.conf
    mode: "0600"
    content: "workdir={workdir}\n"
"#;

fn spec(template: &str) -> ProviderSpec {
    ProviderSpec {
        template: template.into(),
        dockerfile: None,
        auth_token: None,
        forward_host_credentials: None,
        settings: None,
    }
}

fn input(spec: &ProviderSpec, has_prompt: bool) -> RenderInput<'_> {
    RenderInput {
        spec,
        label: "my task",
        color: "green",
        has_prompt,
        supervise: false,
    }
}

fn builtin(name: &str) -> Provider {
    find(&Fx::new().paths(), name).expect("built-in")
}

fn route_hosts(r: &Rendered) -> Vec<&str> {
    r.routes.iter().map(|r| r.route.host.as_str()).collect()
}

fn credential(r: &Rendered, host: &str) -> Option<(String, RouteCredential)> {
    r.routes
        .iter()
        .find(|p| p.route.host == host)
        .expect("route for host")
        .credential
        .clone()
}

fn file<'a>(r: &'a Rendered, path: &str) -> &'a AgentFile {
    r.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path} in {:?}", r.files))
}

fn text(f: &AgentFile) -> &str {
    std::str::from_utf8(&f.content).expect("utf-8")
}

fn settings(yaml: &str) -> BTreeMap<String, serde_norway::Value> {
    serde_norway::from_str(yaml).expect("settings yaml")
}

#[track_caller]
fn contains_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{text:?} does not contain {n:?}");
    }
}

// ---------------------------------------------------------------------------
// Finding providers
// ---------------------------------------------------------------------------

#[test]
fn the_builtins_parse_and_embed_their_dockerfiles() {
    for (name, cli) in [("claude", "claude"), ("codex", "codex"), ("pi", "pi")] {
        let p = builtin(name);
        assert_eq!(p.name, name);
        assert!(p.builtin);
        assert_eq!(p.def.command[0], cli);
        assert_eq!(p.def.home, "/home/node");
        assert_eq!(p.def.workdir, "/home/node/workspace");
        match p.dockerfile {
            DockerfileSource::Embedded(d) => assert!(d.contains("FROM"), "{name}: {d}"),
            DockerfileSource::File(f) => panic!("{name}: {}", f.display()),
        }
    }
    assert_eq!(
        builtin("claude").def.bypass_args,
        ["--dangerously-skip-permissions"]
    );
    assert_eq!(builtin("claude").def.resume_args, ["--continue"]);
    assert_eq!(
        builtin("codex").def.bypass_args,
        ["--dangerously-bypass-approvals-and-sandbox"]
    );
    assert_eq!(builtin("codex").def.resume_args, ["resume", "--last"]);
    assert!(builtin("pi").def.bypass_args.is_empty());
    assert_eq!(builtin("pi").def.generator, Some(Generator::PiModels));
}

#[test]
fn an_unknown_template_lists_the_builtins_and_installed_plugins() {
    let fx = Fx::new();
    let e = find(&fx.paths(), "gemini").expect_err("unknown");
    assert!(matches!(e, ProviderError::Unknown { .. }), "{e:?}");
    contains_all(
        &e.to_string(),
        &[
            "unknown agent_provider template `gemini`",
            "built-ins are claude, codex, pi",
            &fx.home.join(".bot-bottle/contrib").display().to_string(),
            "none installed",
        ],
    );
    fx.plugin("myagent", Some(MYAGENT), true);
    fx.plugin("other", Some(MYAGENT), true);
    // A folder without provider.yaml is not a plugin.
    fx.plugin("junk", None, true);
    assert_eq!(plugin_names(&fx.paths()), ["myagent", "other"]);
    let e = find(&fx.paths(), "gemini").expect_err("unknown");
    contains_all(&e.to_string(), &["installed: myagent, other"]);
    // Names that cannot be folders are unknown, not a path lookup.
    for bad in ["../myagent", "MyAgent", ""] {
        let e = find(&fx.paths(), bad).expect_err("bad name");
        assert!(matches!(e, ProviderError::Unknown { .. }), "{bad:?}: {e:?}");
    }
}

#[test]
fn a_plugin_is_a_folder_with_a_dockerfile_and_provider_yaml() {
    let fx = Fx::new();
    let dir = fx.plugin("myagent", Some(MYAGENT), true);
    let p = find(&fx.paths(), "myagent").expect("plugin");
    assert!(!p.builtin);
    assert_eq!(p.name, "myagent");
    assert_eq!(p.dockerfile, DockerfileSource::File(dir.join("Dockerfile")));
    assert_eq!(p.def.command, ["myagent", "--fast"]);
    assert_eq!(p.def.user.as_deref(), Some("me"));
    assert_eq!(p.def.routes.len(), 3);
    assert_eq!(p.def.routes[0].auth, Some(CredentialRef::AuthToken));
}

#[test]
fn plugin_errors_name_the_file() {
    let fx = Fx::new();
    let dir = fx.plugin("nodocker", Some(MYAGENT), false);
    let e = find(&fx.paths(), "nodocker").expect_err("no Dockerfile");
    assert!(matches!(e, ProviderError::Plugin { .. }), "{e:?}");
    contains_all(
        &e.to_string(),
        &[
            &dir.join("Dockerfile").display().to_string(),
            "a plugin needs a Dockerfile next to provider.yaml",
        ],
    );

    let dir = fx.plugin("badkey", Some(&format!("{MYAGENT}colour: red\n")), true);
    let e = find(&fx.paths(), "badkey").expect_err("bad key");
    contains_all(
        &e.to_string(),
        &[
            &dir.join("provider.yaml").display().to_string(),
            "unknown field `colour`",
        ],
    );

    let dir = fx.plugin("noyaml", None, true);
    let e = find(&fx.paths(), "noyaml").expect_err("no yaml");
    contains_all(
        &e.to_string(),
        &[
            &dir.join("provider.yaml").display().to_string(),
            "cannot read the plugin's provider description",
        ],
    );

    let dir = fx.plugin(
        "anchored",
        Some("command: &c [x]\nhome: /h\nworkdir: /w\n"),
        true,
    );
    let e = find(&fx.paths(), "anchored").expect_err("anchor");
    contains_all(
        &e.to_string(),
        &[
            &dir.join("provider.yaml").display().to_string(),
            "line 1",
            "an anchor",
        ],
    );
}

#[test]
fn a_plugin_cannot_shadow_a_builtin() {
    let fx = Fx::new();
    let dir = fx.plugin("claude", Some(MYAGENT), true);
    let e = find(&fx.paths(), "claude").expect_err("shadows");
    assert!(matches!(e, ProviderError::Shadows { .. }), "{e:?}");
    contains_all(
        &e.to_string(),
        &[
            &dir.display().to_string(),
            "a plugin cannot be named `claude`",
            "built-in provider",
        ],
    );
    // Other built-ins are unaffected.
    assert!(find(&fx.paths(), "codex").expect("codex").builtin);
}

#[test]
fn provider_yaml_is_validated() {
    let base = "command: [x]\nhome: /h\nworkdir: /w\n";
    for (extra, needle) in [
        ("", ""),
        (
            "files: [{path: relative/file, content: x}]\n",
            "`files[0].path`",
        ),
        (
            "files: [{path: /f, mode: '999', content: x}]\n",
            "`files[0].mode`",
        ),
        (
            "files: [{path: /f, mode: '01777', content: x}]\n",
            "`files[0].mode`",
        ),
        (
            "routes: [{host: a.example, scheme: Basic}]\n",
            "`routes[0].scheme`",
        ),
        (
            "routes: [{host: a.example, auth: api_key}]\n",
            "unknown variant `api_key`",
        ),
        ("env: {1X: y}\n", "`1X` is not an environment variable name"),
        (
            "placeholder_env: [bad-name]\n",
            "`bad-name` is not an environment variable name",
        ),
        ("generator: other\n", "unknown variant `other`"),
    ] {
        let r = parse_def(Path::new("/p/provider.yaml"), &format!("{base}{extra}"));
        if needle.is_empty() {
            r.expect("valid");
            continue;
        }
        let e = r.expect_err(extra);
        contains_all(&e.to_string(), &["/p/provider.yaml", needle]);
    }
    for (yaml, needle) in [
        ("command: []\nhome: /h\nworkdir: /w\n", "`command`"),
        (
            "command: [x]\nhome: h\nworkdir: /w\n",
            "`home`: `h` must be an absolute path",
        ),
        ("command: [x]\nhome: /h\nworkdir: w\n", "`workdir`"),
        ("command: [x]\nworkdir: /w\n", "missing field `home`"),
    ] {
        let e = parse_def(Path::new("/p/provider.yaml"), yaml).expect_err(yaml);
        contains_all(&e.to_string(), &[needle]);
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

#[test]
fn claude_injects_its_token_through_egress_and_sees_a_placeholder() {
    let p = builtin("claude");
    let mut s = spec("claude");
    s.auth_token = Some("${CLAUDE_CODE_OAUTH_TOKEN}".into());
    let r = p.render(&input(&s, true)).expect("renders");
    assert_eq!(
        r.command,
        [
            "claude",
            "--dangerously-skip-permissions",
            "--append-system-prompt-file",
            "/home/node/.bot-bottle-prompt.txt"
        ]
    );
    assert_eq!(
        r.resume_command,
        ["claude", "--dangerously-skip-permissions", "--continue"]
    );
    assert_eq!(
        r.prompt_path.as_deref(),
        Some("/home/node/.bot-bottle-prompt.txt")
    );
    assert_eq!(route_hosts(&r), ["api.anthropic.com"]);
    assert_eq!(
        credential(&r, "api.anthropic.com"),
        Some(("Bearer".into(), RouteCredential::AuthToken))
    );
    assert_eq!(r.env["CLAUDE_CODE_OAUTH_TOKEN"], PLACEHOLDER);
    assert_eq!(r.env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
    assert!(r.hidden_env.contains(&"ANTHROPIC_API_KEY".to_owned()));

    let claude_json = file(&r, "/home/node/.claude.json");
    assert_eq!(claude_json.mode, 0o600);
    let v: serde_json::Value = serde_json::from_str(text(claude_json)).expect("json");
    assert_eq!(v["name"], "my task");
    assert_eq!(
        v["projects"]["/home/node/workspace"]["hasTrustDialogAccepted"],
        true
    );
    let settings: serde_json::Value =
        serde_json::from_str(text(file(&r, "/home/node/.claude/settings.json"))).expect("json");
    assert_eq!(
        settings["statusLine"]["command"],
        "/home/node/.claude/statusline.sh"
    );
    let status = file(&r, "/home/node/.claude/statusline.sh");
    assert_eq!(status.mode, 0o755);
    contains_all(text(status), &["\\033[32m", "my task"]);
    for f in &r.files {
        for placeholder in ["{home}", "{label}", "{workdir}", "{color_ansi}", "{theme}"] {
            assert!(!text(f).contains(placeholder), "{}: {placeholder}", f.path);
        }
    }
}

#[test]
fn claude_without_a_token_or_prompt_adds_neither() {
    let r = builtin("claude")
        .render(&input(&spec("claude"), false))
        .expect("renders");
    assert_eq!(r.command, ["claude", "--dangerously-skip-permissions"]);
    assert_eq!(r.prompt_path, None);
    assert_eq!(credential(&r, "api.anthropic.com"), None);
    assert!(!r.env.contains_key("CLAUDE_CODE_OAUTH_TOKEN"));
}

#[test]
fn codex_forwards_the_host_login_for_both_hosts() {
    let p = builtin("codex");
    let mut s = spec("codex");
    s.forward_host_credentials = Some(true);
    let r = p.render(&input(&s, true)).expect("renders");
    assert_eq!(route_hosts(&r), ["api.openai.com", "chatgpt.com"]);
    for host in ["api.openai.com", "chatgpt.com"] {
        assert_eq!(
            credential(&r, host),
            Some(("Bearer".into(), RouteCredential::HostLogin)),
            "{host}"
        );
    }
    assert_eq!(r.env["OPENAI_API_KEY"], PLACEHOLDER);
    assert_eq!(
        r.command,
        [
            "codex",
            "--dangerously-bypass-approvals-and-sandbox",
            "Read /home/node/.bot-bottle-prompt.txt and follow it."
        ]
    );
    assert_eq!(
        r.resume_command,
        [
            "codex",
            "--dangerously-bypass-approvals-and-sandbox",
            "resume",
            "--last"
        ]
    );
    contains_all(
        text(file(&r, "/home/node/.codex/config.toml")),
        &[
            "[projects.\"/home/node/workspace\"]",
            "trust_level = \"trusted\"",
        ],
    );

    // Without forwarding: the auth_token, on api.openai.com only.
    let mut s = spec("codex");
    s.auth_token = Some("${OPENAI_KEY}".into());
    let r = p.render(&input(&s, false)).expect("renders");
    assert_eq!(
        credential(&r, "api.openai.com"),
        Some(("Bearer".into(), RouteCredential::AuthToken))
    );
    assert_eq!(credential(&r, "chatgpt.com"), None);
    // Neither: no credential, no placeholder.
    let r = p.render(&input(&spec("codex"), false)).expect("renders");
    assert!(r.routes.iter().all(|x| x.credential.is_none()));
    assert!(!r.env.contains_key("OPENAI_API_KEY"));
}

#[test]
fn forwarding_needs_a_provider_with_host_credentials() {
    let mut s = spec("claude");
    s.forward_host_credentials = Some(true);
    let e = builtin("claude")
        .render(&input(&s, false))
        .expect_err("claude");
    contains_all(
        &e,
        &["provider `claude` has no host credentials to forward"],
    );
}

/// The earlier bot-bottle's pi settings keys, as its PRD 0058 documents
/// them: `api_key` into models.json, the `compat` flags, `max_tokens_field`.
#[test]
fn pi_takes_the_seeds_settings_keys() {
    let mut s = spec("pi");
    s.settings = Some(settings(
        "provider: lab\nbase_url: https://llm.lab.example/v1\napi_key: dummy-key\n\
         max_tokens_field: max_completion_tokens\nsupports_developer_role: true\n\
         supports_reasoning_effort: true\nmodels: [m1, m2]\ncontext_window: 8192\nmax_tokens: 2048\n",
    ));
    let r = builtin("pi").render(&input(&s, false)).expect("renders");
    let v: serde_json::Value =
        serde_json::from_str(text(file(&r, "/home/node/.pi/agent/models.json"))).expect("json");
    let p = &v["providers"]["lab"];
    assert_eq!(p["apiKey"], "dummy-key");
    assert_eq!(p["baseUrl"], "https://llm.lab.example/v1");
    assert_eq!(
        p["compat"],
        serde_json::json!({
            "supportsDeveloperRole": true,
            "supportsReasoningEffort": true,
            "maxTokensField": "max_completion_tokens",
        })
    );
    assert_eq!(p["models"][1]["contextWindow"], 8192 - 2048);
    assert_eq!(r.command, ["pi", "--models", "lab/m1,lab/m2"]);
    // No key written and none injected: a non-default provider gets none.
    let mut s = spec("pi");
    s.settings = Some(settings(
        "provider: lab\nbase_url: https://llm.lab.example/v1\n",
    ));
    let r = builtin("pi").render(&input(&s, false)).expect("renders");
    let v: serde_json::Value =
        serde_json::from_str(text(file(&r, "/home/node/.pi/agent/models.json"))).expect("json");
    assert!(v["providers"]["lab"].get("apiKey").is_none(), "{v}");
    assert_eq!(r.routes[0].credential, None);
}

#[test]
fn pi_defaults_to_an_ollama_endpoint() {
    let r = builtin("pi")
        .render(&input(&spec("pi"), true))
        .expect("renders");
    assert_eq!(r.command, ["pi", "--models", "ollama/qwen2.5-coder:7b"]);
    assert_eq!(
        r.prompt_path.as_deref(),
        Some("/home/node/.pi/agent/APPEND_SYSTEM.md")
    );
    let models = file(&r, "/home/node/.pi/agent/models.json");
    assert_eq!(models.mode, 0o600);
    let v: serde_json::Value = serde_json::from_str(text(models)).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "providers": {
                "ollama": {
                    "baseUrl": "http://ollama:11434/v1",
                    "api": "openai-completions",
                    "apiKey": "ollama",
                    "compat": {
                        "supportsDeveloperRole": false,
                        "supportsReasoningEffort": false,
                        "maxTokensField": "max_tokens",
                    },
                    "models": [{
                        "id": "qwen2.5-coder:7b",
                        "name": "qwen2.5-coder:7b",
                        "contextWindow": 3072,
                        "maxTokens": 1024
                    }]
                }
            }
        })
    );
    assert_eq!(r.routes.len(), 1);
    let route = &r.routes[0];
    assert_eq!(route.route.host, "ollama");
    assert_eq!(route.route.ports, Some(vec![11434]));
    assert_eq!(route.credential, None);
}

#[test]
fn pi_settings_shape_models_json_and_the_route() {
    let mut s = spec("pi");
    s.settings = Some(settings(
        "provider: openrouter\n\
         base_url: https://openrouter.ai/api/v1\n\
         api: openai-completions\n\
         api_key_env: OPENROUTER_KEY\n\
         models: [qwen/qwen3-coder, deepseek/deepseek-chat]\n\
         context_window: 65536\n\
         max_tokens: 8192\n",
    ));
    let r = builtin("pi").render(&input(&s, false)).expect("renders");
    assert_eq!(
        r.command,
        [
            "pi",
            "--models",
            "openrouter/qwen/qwen3-coder,openrouter/deepseek/deepseek-chat"
        ]
    );
    let v: serde_json::Value =
        serde_json::from_str(text(file(&r, "/home/node/.pi/agent/models.json"))).expect("json");
    let p = &v["providers"]["openrouter"];
    assert_eq!(p["baseUrl"], "https://openrouter.ai/api/v1");
    assert_eq!(p["apiKey"], PLACEHOLDER, "the key stays in egress");
    assert_eq!(p["models"][1]["id"], "deepseek/deepseek-chat");
    assert_eq!(p["models"][0]["contextWindow"], 65536 - 8192);
    assert_eq!(p["models"][0]["maxTokens"], 8192);
    let route = &r.routes[0];
    assert_eq!(route.route.host, "openrouter.ai");
    assert_eq!(route.route.ports, None, "default port: no ports key");
    assert_eq!(
        route.credential,
        Some((
            "Bearer".into(),
            RouteCredential::ApiKeyEnv("OPENROUTER_KEY".into())
        ))
    );
}

#[test]
fn pi_settings_are_validated() {
    for (yaml, needle) in [
        (
            "temperature: 1",
            "agent_provider.settings: unknown key `temperature`",
        ),
        (
            "models: []",
            "agent_provider.settings.models: expected a non-empty list",
        ),
        (
            "models: [1]",
            "agent_provider.settings.models: expected a list of model names",
        ),
        (
            "context_window: 0",
            "agent_provider.settings.context_window: expected a positive integer",
        ),
        (
            "max_tokens: many",
            "agent_provider.settings.max_tokens: expected a positive integer",
        ),
        (
            "base_url: not a url",
            "agent_provider.settings.base_url: `not a url` is not an absolute URL",
        ),
        (
            // Found by fuzzing: a URL whose host no route can name.
            "base_url: 'https://a*b'",
            "agent_provider.settings.base_url: `https://a*b` has no usable host name",
        ),
        (
            "provider: ''",
            "agent_provider.settings.provider: expected a non-empty string",
        ),
        (
            "api_key_env: 7",
            "agent_provider.settings.api_key_env: expected a string",
        ),
        (
            "api_key_env: ''",
            "agent_provider.settings.api_key_env: empty",
        ),
        ("{api_key: x, api_key_env: K}", "not both"),
        (
            "max_tokens_field: max_output",
            "expected `max_tokens` or `max_completion_tokens`",
        ),
        (
            "supports_developer_role: 'yes'",
            "agent_provider.settings.supports_developer_role: expected true or false",
        ),
    ] {
        let mut s = spec("pi");
        s.settings = Some(settings(yaml));
        let e = builtin("pi").render(&input(&s, false)).expect_err(yaml);
        contains_all(&e, &[needle]);
    }
}

#[test]
fn pi_default_route_may_reach_a_private_ollama() {
    let r = builtin("pi")
        .render(&input(&spec("pi"), false))
        .expect("renders");
    assert!(r.routes[0].route.allow_private, "{:?}", r.routes[0].route);
}

#[test]
fn a_plugin_renders_like_a_builtin() {
    let fx = Fx::new();
    fx.plugin("myagent", Some(MYAGENT), true);
    let p = find(&fx.paths(), "myagent").expect("plugin");
    let mut s = spec("myagent");
    s.auth_token = Some("${MYAGENT_TOKEN}".into());
    let r = p.render(&input(&s, true)).expect("renders");
    assert_eq!(
        r.command,
        [
            "myagent",
            "--fast",
            "--yolo",
            "--system",
            "/home/me/prompt.md"
        ]
    );
    assert_eq!(r.resume_command, ["myagent", "--fast", "--yolo", "--again"]);
    let config = file(&r, "/home/me/.myagent/config.json");
    assert_eq!(config.mode, 0o644, "default mode");
    assert_eq!(
        text(config),
        r#"{"label": "my task", "home": "/home/me", "color": "green/32"}"#
    );
    let conf = file(&r, "/etc/myagent.conf");
    assert_eq!(conf.mode, 0o600);
    assert_eq!(text(conf), "workdir=/home/me/src\n");
    assert_eq!(
        route_hosts(&r),
        [
            "api.myagent.example",
            "cdn.myagent.example",
            "git.myagent.example"
        ]
    );
    assert_eq!(
        credential(&r, "api.myagent.example"),
        Some(("Bearer".into(), RouteCredential::AuthToken))
    );
    assert_eq!(credential(&r, "cdn.myagent.example"), None);
    assert_eq!(
        credential(&r, "git.myagent.example"),
        Some(("token".into(), RouteCredential::AuthToken))
    );
    assert_eq!(r.env["MYAGENT_KEY"], PLACEHOLDER);
    assert_eq!(r.env["MYAGENT_TELEMETRY"], "0");
    assert_eq!(r.hidden_env, ["MYAGENT_KEY"]);
}

#[test]
fn an_unknown_colour_falls_back_to_blue() {
    let s = spec("claude");
    let r = builtin("claude")
        .render(&RenderInput {
            spec: &s,
            label: "x",
            color: "mauve",
            has_prompt: false,
            supervise: false,
        })
        .expect("renders");
    contains_all(
        text(file(&r, "/home/node/.claude/statusline.sh")),
        &["\\033[34m"],
    );
}

#[test]
fn claude_registers_the_supervise_server_in_its_own_claude_json() {
    let s = spec("claude");
    let on = RenderInput {
        supervise: true,
        ..input(&s, false)
    };
    let r = builtin("claude").render(&on).expect("renders");
    let doc: serde_json::Value =
        serde_json::from_str(text(file(&r, "/home/node/.claude.json"))).expect("JSON");
    assert_eq!(
        doc["mcpServers"]["supervise"],
        serde_json::json!({"type": "http", "url": "http://supervise:9100/mcp"})
    );
    // The provider's own settings are kept.
    assert_eq!(doc["hasCompletedOnboarding"], true);
    assert_eq!(doc["name"], "my task");
    assert_eq!(
        r.files
            .iter()
            .filter(|f| f.path == "/home/node/.claude.json")
            .count(),
        1
    );
    // supervise: false registers nothing.
    let off = builtin("claude")
        .render(&input(&s, false))
        .expect("renders");
    assert!(!text(file(&off, "/home/node/.claude.json")).contains("mcpServers"));
}

#[test]
fn codex_registers_the_supervise_server_in_config_toml() {
    let s = spec("codex");
    let on = RenderInput {
        supervise: true,
        ..input(&s, false)
    };
    let r = builtin("codex").render(&on).expect("renders");
    let toml = text(file(&r, "/home/node/.codex/config.toml"));
    contains_all(
        toml,
        &[
            "trust_level = \"trusted\"",
            "[mcp_servers.supervise]\nurl = \"http://supervise:9100/mcp\"\ntool_timeout_sec = 60\n",
        ],
    );
    let off = builtin("codex").render(&input(&s, false)).expect("renders");
    assert!(!text(file(&off, "/home/node/.codex/config.toml")).contains("mcp_servers"));
}

#[test]
fn a_plugin_may_register_supervise_in_a_file_of_its_own() {
    let fx = Fx::new();
    fx.plugin(
        "mcpagent",
        Some("command: [mcpagent]\nhome: /home/a\nworkdir: /w\nsupervise:\n  register: claude-json\n  file: \"{home}/.mcp.json\"\n"),
        true,
    );
    let plugin = find(&fx.paths(), "mcpagent").expect("plugin");
    let s = spec("mcpagent");
    let r = plugin
        .render(&RenderInput {
            supervise: true,
            ..input(&s, false)
        })
        .expect("renders");
    let f = file(&r, "/home/a/.mcp.json");
    assert_eq!(f.mode, 0o600);
    let doc: serde_json::Value = serde_json::from_str(text(f)).expect("JSON");
    assert_eq!(
        doc["mcpServers"]["supervise"]["url"],
        "http://supervise:9100/mcp"
    );
    // An unknown format is refused with the file named.
    fx.plugin(
        "badmcp",
        Some("command: [x]\nhome: /h\nworkdir: /w\nsupervise:\n  register: yaml\n  file: /h/x\n"),
        true,
    );
    let e = find(&fx.paths(), "badmcp")
        .expect_err("refused")
        .to_string();
    contains_all(&e, &["badmcp/provider.yaml", "unknown variant `yaml`"]);
}
