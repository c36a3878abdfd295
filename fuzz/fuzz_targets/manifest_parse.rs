//! Fuzzes the manifest loader (SPEC §4) from frontmatter to launch plan.
//!
//! The input is one manifest file. It is written both as the bottle
//! `~/.bot-bottle/bottles/fz.md` and as the agent `~/.bot-bottle/agents/fz.md`
//! of a temporary home that also holds fixed files: a parent bottle `base`,
//! an agent `fixed` running in bottle `fz`, a skill and a plugin provider.
//! A file is a valid bottle or a valid agent, never both (unknown keys are
//! refused), so each input exercises one side fully. For any text:
//!
//! - **split**: `frontmatter::split` either refuses with a line number, or
//!   cuts the text into opening fence, YAML, the first closing fence and
//!   body, which concatenate back to the input, with no fence inside the YAML.
//! - **events**: `check_events` (anchors, aliases, tags, a key twice in one
//!   mapping) errors on a line inside the YAML; when it accepts,
//!   `serde_norway` finds no tagged value either (the two YAML parsers must
//!   agree that a file has no tags), and every mapping `serde_norway` reads
//!   has as many entries as keys written (no key silently dropped).
//! - **the loader is the pure functions**: `Loader::load_chain("fz")` and
//!   `Loader::load_agent("fz")` accept exactly what (BOM dropped) split →
//!   check → `serde_norway` accepts, give the same layer, and report the
//!   same line and the same message with values removed; a type error never
//!   quotes the value it met; every load error names the file (or the
//!   bottles of a cycle).
//! - **round-trip**: an accepted layer (bottle or agent) serialised with
//!   `serde_norway` contains no anchor, alias or tag, parses back equal, and
//!   re-serialises to the same text.
//! - **merge identities**: for a bottle layer `l`,
//!   `merge(&BottleLayer::default(), &l) == BottleLayer { extends: None, ..l }`
//!   (the result's `extends` is always the parent's, here none) and
//!   `merge(&l, &BottleLayer::default()) == l` (a child that sets nothing
//!   inherits everything, `extends` included).
//! - **`resolve_chain`**: alone, and as a child of `base`, an accepted chain's
//!   `merged` is the left fold of `merge` from the root with `extends`
//!   cleared; routes are the root's first, hosts unique ignoring ASCII case;
//!   `env_source` names the nearest file for every merged env key; the
//!   defaults (claude, supervise on) apply; and the routes rendered with
//!   `EGRESS_TOKEN_*` names load in the proxy's own parser.
//! - **env values**: for the whole input and every `env:` value and
//!   `auth_token`, `EnvSource::parse` either errors or gives parts that
//!   rebuild the value exactly; `describe()` is the same when every literal
//!   character is replaced by `x` (it depends on lengths, variable names and
//!   the prompt question only), so it never shows a literal longer than 3
//!   chars except where the masked description has the same text.
//! - **plan**: for agents `fixed` and `fz` that load, `LaunchPlan::new` never
//!   fails on its own rendered routes.yaml; its `Display`, `Debug` and any
//!   error are identical when every literal in the bottle's env and in every
//!   field naming a secret (`auth_token`, routes' `token_ref`, pi's
//!   `api_key_env`, `forge_token_env`) is masked, the warnings that a secret
//!   is written into the manifest aside (non-interference: a plan cannot
//!   print such a literal); those warnings show no literal either; resolving
//!   its secrets with every host variable and prompt answering a random
//!   per-process secret never puts that secret in an error, a `Debug` or the
//!   host report.
//!
//! Inputs that are not UTF-8 are skipped: manifests are read into a
//! `String` first, so the loader never sees them.

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bb_egress::policy::RoutesConfig;
use bot_bottle::env::{EnvError, EnvSource, Part, Prompter, Redacted, SecretRef};
use bot_bottle::manifest::frontmatter::{self, FrontmatterError};
use bot_bottle::manifest::{
    AgentLayer, Bottle, BottleLayer, Loaded, Loader, ManifestError, merge, resolve_chain,
    without_values,
};
use bot_bottle::paths::Paths;
use bot_bottle::plan::{LaunchPlan, PlanOptions, token_env_name};
use bot_bottle::provider;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The parent every `extends: base` input gets: env, a provider with a
/// token, a git identity, a repo and routes, so merges have something to do.
const BASE_BOTTLE: &str = "---
agent_provider:
  template: claude
  auth_token: ${FUZZ_PROVIDER_TOKEN}
env:
  TZ: UTC
  GITHUB_TOKEN: ${GITHUB_TOKEN}
  API_KEY: ?API key for the model
git-gate:
  user:
    name: Base Bot
    email: base@example.com
  repos:
    app:
      url: git@github.com:example/app.git
      key:
        provider: static
        path: ~/.ssh/app_key
      host_key: github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
egress:
  log: 1
  routes:
    - host: registry.npmjs.org
      matches:
        - methods: [GET, HEAD]
    - host: forge.example.com
      auth:
        scheme: token
        token_ref: GITHUB_TOKEN
---
";

/// An agent running in the fuzzed bottle.
const FIXED_AGENT: &str = "---\nbottle: fz\n---\nYou are a fuzzing fixture.\n";

/// A plugin provider, so `template: fzplug` reaches the plugin path.
const PLUGIN_YAML: &str = "command: [sh]
home: /root
workdir: /work
prompt:
  file: \"{home}/prompt.md\"
routes:
  - host: models.example.com
    auth: auth_token
    scheme: token
placeholder_env: [FZ_TOKEN]
hidden_env: [FZ_TOKEN]
files:
  - path: \"{home}/.label\"
    content: \"{label} {color} {color_ansi}\"
";

struct Fixture {
    paths: Paths,
    bottle_file: PathBuf,
    agent_file: PathBuf,
    base_file: PathBuf,
    base: BottleLayer,
    /// What every host variable and prompt answers when secrets resolve.
    secret: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("bb-fuzz-manifest-{}", std::process::id()));
        let home = root.join("home");
        let cwd = root.join("cwd");
        let cfg = home.join(".bot-bottle");
        for dir in [
            cfg.join("bottles"),
            cfg.join("agents"),
            cfg.join("contrib/fzplug"),
            home.join(".claude/skills/review"),
            cwd.clone(),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let base_file = cfg.join("bottles/base.md");
        std::fs::write(&base_file, BASE_BOTTLE).unwrap();
        std::fs::write(cfg.join("agents/fixed.md"), FIXED_AGENT).unwrap();
        std::fs::write(cfg.join("contrib/fzplug/provider.yaml"), PLUGIN_YAML).unwrap();
        std::fs::write(cfg.join("contrib/fzplug/Dockerfile"), "FROM scratch\n").unwrap();
        let paths = Paths::new(&home, &cwd);
        let base = Loader::new(paths.clone())
            .load_chain("base")
            .unwrap()
            .remove(0)
            .1;
        Fixture {
            bottle_file: cfg.join("bottles/fz.md"),
            agent_file: cfg.join("agents/fz.md"),
            base_file,
            base,
            paths,
            secret: random_secret(),
        }
    })
}

/// 32 hex digits from the std hasher's random keys: unknown to the input.
fn random_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::from("fz-");
    for i in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(i);
        let _ = write!(out, "{:016x}", h.finish());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fx = fixture();
    if text.contains(&fx.secret) {
        // Only a copy of the secret could "leak" it; never generated in practice.
        return;
    }
    check_env_value(text);

    let pure = frontmatter_yaml(text);
    std::fs::write(&fx.bottle_file, text).unwrap();
    std::fs::write(&fx.agent_file, text).unwrap();
    let loader = Loader::new(fx.paths.clone());

    // The bottle side.
    let bottle_layer = pure
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|(yaml, _)| serde_layer::<BottleLayer>(yaml));
    let chain = loader.load_chain("fz");
    match (&bottle_layer, &chain) {
        (Ok(layer), Ok(chain)) => {
            assert_eq!(&chain[0].1, layer, "the loader read another layer");
            assert_eq!(chain[0].0, fx.bottle_file);
        }
        (Ok(layer), Err(e)) => {
            // Only the parent can fail once the file itself parsed.
            assert!(
                layer.extends.is_some(),
                "a parsed layer with no parent failed: {e}"
            );
            check_load_error(e);
        }
        (Err(p), Err(e)) => same_syntax_error(p, e, &fx.bottle_file),
        (Err(p), Ok(_)) => panic!("the loader accepted a bottle the pure path refuses: {p:?}"),
    }
    if let Ok(layer) = &bottle_layer {
        check_bottle_layer(layer);
        // The real chain resolves as load_bottle does it.
        if let Ok(chain) = &chain
            && chain.len() > 1
            && let Ok(bottle) = resolve_chain("fz", chain)
        {
            check_bottle(&bottle, chain);
        }
        plan_agent(&loader, "fixed");
    }

    // The agent side.
    let agent_layer = pure
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|(yaml, _)| serde_layer::<AgentLayer>(yaml));
    match (&agent_layer, loader.load_agent("fz")) {
        (Ok(layer), Ok(agent)) => {
            let body = pure.as_ref().unwrap().1;
            assert_eq!(agent.bottle, layer.bottle);
            assert_eq!(agent.skills, layer.skills.clone().unwrap_or_default());
            assert_eq!(
                agent.git_user,
                layer
                    .git_gate
                    .as_ref()
                    .and_then(|g| g.user.clone())
                    .unwrap_or_default()
            );
            assert_eq!(agent.prompt, body.trim_start_matches(['\r', '\n']));
            for s in &agent.skills {
                assert!(!s.is_empty() && !s.contains(['/', '\\']) && !s.starts_with('.'));
            }
        }
        (Ok(layer), Err(e)) => {
            // Only a bad skill name is refused after parsing.
            assert!(
                matches!(&e, ManifestError::Invalid { key, .. } if key.starts_with("skills[")),
                "an agent that parsed failed to load: {e}"
            );
            assert!(layer.skills.is_some());
            check_load_error(&e);
        }
        (Err(p), Err(e)) => same_syntax_error(p, &e, &fx.agent_file),
        (Err(p), Ok(_)) => panic!("the loader accepted an agent the pure path refuses: {p:?}"),
    }
    if let Ok(layer) = &agent_layer {
        check_round_trip(layer);
        plan_agent(&loader, "fz");
    }
});

/// What the loader does before serde: drop a byte-order mark, split, check
/// the events, and read an empty frontmatter as `{}`. Returns the YAML to
/// parse and the body.
fn frontmatter_yaml(text: &str) -> Result<(&str, &str), FrontmatterError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let split = frontmatter::split(text);
    let split = match split {
        Ok(s) => s,
        Err(e) => {
            assert!(
                e.line.is_some_and(|l| l >= 1),
                "split error without a line: {e:?}"
            );
            return Err(e);
        }
    };
    check_split(text, split.yaml, split.body);
    assert_eq!(split.yaml_first_line, 2);
    if let Err(e) = frontmatter::check_events(split.yaml, split.yaml_first_line) {
        let line = e.line.expect("indirection error without a line");
        // YAML counts a bare CR as a line break too; the last line is the
        // closing fence's (where an unterminated construct is reported).
        let breaks = split
            .yaml
            .replace("\r\n", "\n")
            .matches(['\r', '\n'])
            .count();
        let last = split.yaml_first_line + breaks;
        assert!(
            (split.yaml_first_line..=last).contains(&line),
            "indirection error on line {line}, outside the YAML (lines {}..={last}): {e:?}",
            split.yaml_first_line
        );
        return Err(e);
    }
    match serde_norway::from_str::<serde_norway::Value>(split.yaml) {
        Err(e) if e.to_string().contains("duplicate entry") => {
            // The loader's second duplicate check, by the parser serde uses.
            return Err(FrontmatterError {
                line: e.location().map(|l| l.line() + split.yaml_first_line - 1),
                message: "a key appears twice in one mapping (as YAML parsers read it); quote the keys of this mapping".into(),
            });
        }
        _ => {}
    }
    if let Ok(value) = serde_norway::from_str::<serde_norway::Value>(split.yaml) {
        assert!(
            !has_tag(&value),
            "check_events accepted YAML in which serde_norway sees a tag:\n{}",
            split.yaml
        );
        assert_eq!(
            entries(&value),
            key_events(split.yaml),
            "a mapping lost a key that check_events let through:\n{}",
            split.yaml
        );
    }
    let yaml = if split.yaml.trim().is_empty() {
        "{}"
    } else {
        split.yaml
    };
    Ok((yaml, split.body))
}

/// Entries of every mapping in `v`, in document order.
fn entries(v: &serde_norway::Value) -> usize {
    use serde_norway::Value;
    match v {
        Value::Sequence(items) => items.iter().map(entries).sum(),
        Value::Mapping(m) => m.len() + m.iter().map(|(k, v)| entries(k) + entries(v)).sum::<usize>(),
        Value::Tagged(t) => entries(&t.value),
        _ => 0,
    }
}

/// Keys written in every mapping of `yaml`, by the event stream.
fn key_events(yaml: &str) -> usize {
    use saphyr_parser::{Event, Parser};
    // (is a mapping, next node is a key)
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut keys = 0;
    for item in Parser::new_from_str(yaml) {
        let Ok((event, _)) = item else { return usize::MAX };
        let top_key = |stack: &mut Vec<(bool, bool)>, keys: &mut usize| {
            if let Some((true, expect_key)) = stack.last_mut() {
                if *expect_key {
                    *keys += 1;
                }
                *expect_key = !*expect_key;
            }
        };
        match event {
            Event::Scalar(..) | Event::Alias(_) => top_key(&mut stack, &mut keys),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                top_key(&mut stack, &mut keys);
                stack.push((matches!(event, Event::MappingStart(..)), true));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    keys
}

fn is_fence(line: &str) -> bool {
    line.trim_end_matches(['\n', '\r', ' ', '\t']) == "---"
}

fn check_split(text: &str, yaml: &str, body: &str) {
    let first = text.split_inclusive('\n').next().unwrap();
    assert!(
        is_fence(first),
        "split accepted a file not opening with `---`"
    );
    let rest = &text[first.len()..];
    let after_yaml = rest
        .strip_prefix(yaml)
        .expect("the YAML does not follow the opening fence");
    let fence = after_yaml
        .strip_suffix(body)
        .expect("the body is not the end of the file");
    assert!(
        is_fence(fence),
        "no closing fence between YAML and body: {fence:?}"
    );
    assert!(
        fence.ends_with('\n') || body.is_empty(),
        "the closing fence line runs into the body"
    );
    for line in yaml.split_inclusive('\n') {
        assert!(
            !is_fence(line),
            "a fence inside the YAML: split went past it"
        );
    }
}

fn has_tag(v: &serde_norway::Value) -> bool {
    use serde_norway::Value;
    match v {
        Value::Tagged(_) => true,
        Value::Sequence(items) => items.iter().any(has_tag),
        Value::Mapping(m) => m.iter().any(|(k, v)| has_tag(k) || has_tag(v)),
        _ => false,
    }
}

/// serde's verdict in the loader's terms: the frontmatter-relative line,
/// the message without the value it met.
fn serde_layer<T: DeserializeOwned>(yaml: &str) -> Result<T, FrontmatterError> {
    serde_norway::from_str::<T>(yaml).map_err(|e| FrontmatterError {
        line: e.location().map(|l| l.line() + 1),
        message: without_values(&e.to_string()),
    })
}

fn same_syntax_error(pure: &FrontmatterError, loaded: &ManifestError, file: &Path) {
    match loaded {
        ManifestError::Syntax {
            path,
            line,
            message,
        } => {
            assert_eq!(path, file);
            assert_eq!(
                line, &pure.line,
                "another line than the pure path: {message}"
            );
            assert!(
                pure.message.starts_with(message.as_str()),
                "another message than the pure path: {message:?} vs {:?}",
                pure.message
            );
            for kind in ["string \"", "integer `", "boolean `", "floating point `"] {
                assert!(
                    !message.contains(&format!("invalid type: {kind}"))
                        && !message.contains(&format!("invalid value: {kind}")),
                    "a type error quotes the value it met: {message}"
                );
            }
        }
        other => panic!("the pure path refuses with {pure:?}, the loader with {other}"),
    }
    check_load_error(loaded);
}

/// Every load error names the file at fault (or the bottles of a cycle).
fn check_load_error(e: &ManifestError) {
    let msg = e.to_string();
    assert!(!msg.trim().is_empty());
    match e {
        ManifestError::Syntax { path, .. } | ManifestError::Io { path, .. } => {
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        ManifestError::Invalid { path, key, .. } => {
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(!key.is_empty() && msg.contains(key.as_str()), "{msg}");
        }
        ManifestError::Cycle { chain } => {
            // The chain ends on the name that closes the loop.
            let (last, before) = chain.split_last().expect("an empty cycle");
            assert!(before.contains(last), "not a cycle: {chain:?}");
            assert!(chain.iter().all(|n| msg.contains(n.as_str())), "{msg}");
        }
        ManifestError::DuplicateHost { first, second, .. } => {
            assert!(msg.contains(&first.display().to_string()), "{msg}");
            assert!(msg.contains(&second.display().to_string()), "{msg}");
        }
        _ => {}
    }
}

fn check_round_trip<T>(layer: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let yaml = serde_norway::to_string(layer)
        .unwrap_or_else(|e| panic!("a parsed layer does not serialise: {e}\n{layer:#?}"));
    frontmatter::check_events(&yaml, 2).unwrap_or_else(|e| {
        panic!("the serialised layer has an anchor, alias or tag: {e:?}\n{yaml}")
    });
    let again: T = serde_norway::from_str(&yaml).unwrap_or_else(|e| {
        panic!("the serialised layer does not parse: {e}\n--- serialised ---\n{yaml}")
    });
    assert_eq!(
        layer, &again,
        "the serialised layer parses to another layer\n--- serialised ---\n{yaml}"
    );
    assert_eq!(
        yaml,
        serde_norway::to_string(&again).unwrap(),
        "not a fixed point"
    );
}

fn check_bottle_layer(layer: &BottleLayer) {
    let fx = fixture();
    check_round_trip(layer);

    let empty = BottleLayer::default();
    assert_eq!(
        merge(&empty, layer),
        BottleLayer {
            extends: None,
            ..layer.clone()
        },
        "merging onto an empty parent changed the layer"
    );
    assert_eq!(
        &merge(layer, &empty),
        layer,
        "an empty child changed its parent"
    );

    for v in layer.env.iter().flat_map(BTreeMap::values) {
        check_env_value(v);
    }
    if let Some(t) = layer
        .agent_provider
        .as_ref()
        .and_then(|p| p.auth_token.as_ref())
    {
        check_env_value(t);
    }

    // Alone (resolve_chain does not follow `extends`; it checks the name).
    let alone = [(fx.bottle_file.clone(), layer.clone())];
    match resolve_chain("fz", &alone) {
        Ok(b) => check_bottle(&b, &alone),
        Err(e) => check_load_error(&e),
    }
    // As a child of `base`.
    let chain = [
        (fx.bottle_file.clone(), layer.clone()),
        (fx.base_file.clone(), fx.base.clone()),
    ];
    match resolve_chain("fz", &chain) {
        Ok(b) => check_bottle(&b, &chain),
        Err(e) => check_load_error(&e),
    }
}

fn check_bottle(b: &Bottle, chain: &[(PathBuf, BottleLayer)]) {
    let mut folded = BottleLayer::default();
    for (_, l) in chain.iter().rev() {
        folded = merge(&folded, l);
    }
    folded.extends = None;
    assert_eq!(b.merged, folded, "merged is not the fold of the chain");
    assert_eq!(
        b.chain,
        chain.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>()
    );

    // Routes: root's first, in file order; hosts unique.
    let expected: Vec<(&PathBuf, usize)> = chain
        .iter()
        .rev()
        .flat_map(|(f, l)| {
            let n = l
                .egress
                .as_ref()
                .and_then(|e| e.routes.as_ref())
                .map_or(0, Vec::len);
            (0..n).map(move |i| (f, i))
        })
        .collect();
    let got: Vec<(&PathBuf, usize)> = b.routes.iter().map(|r| (&r.file, r.route.index)).collect();
    assert_eq!(got, expected, "routes are not the chain's, root first");
    for (i, r) in b.routes.iter().enumerate() {
        assert!(!r.route.host.is_empty());
        for other in &b.routes[..i] {
            assert!(
                !other.route.host.eq_ignore_ascii_case(&r.route.host),
                "host {} twice",
                r.route.host
            );
        }
        if let Some(a) = &r.route.auth {
            // One rule names every secret; the loader accepted it.
            SecretRef::parse(&a.token_ref).expect("an accepted token_ref");
        }
    }

    // env_source: every merged key, from the nearest file that sets it.
    let env = b.merged.env.clone().unwrap_or_default();
    assert!(
        env.keys().eq(b.env_source.keys()),
        "env_source keys differ from env"
    );
    for (k, file) in &b.env_source {
        let nearest = chain
            .iter()
            .find(|(_, l)| l.env.as_ref().is_some_and(|e| e.contains_key(k)))
            .map(|(f, _)| f);
        assert_eq!(Some(file), nearest, "env `{k}` sourced from the wrong file");
    }

    // Defaults and flattened fields.
    assert_eq!(b.supervise, b.merged.supervise.unwrap_or(true));
    match &b.merged.agent_provider {
        Some(p) => assert_eq!(&b.provider, p),
        None => assert_eq!(b.provider.template, "claude"),
    }
    assert_eq!(b.log, b.merged.egress.as_ref().and_then(|e| e.log));
    assert!(b.log.is_none_or(|l| l <= 2));
    let repo_names: Vec<&String> = b
        .merged
        .git_gate
        .iter()
        .flat_map(|g| g.repos.iter().flatten())
        .map(|(n, _)| n)
        .collect();
    assert!(
        b.repos.keys().eq(repo_names),
        "repos differ from the merged layer"
    );

    // What the plan renders must load in the proxy.
    let specs: Vec<bb_egress::policy::RouteSpec> = b
        .routes
        .iter()
        .map(|r| {
            let token = r.route.auth.as_ref().map(|a| token_env_name(&a.token_ref));
            r.route.to_spec(token.as_deref())
        })
        .collect();
    let cfg = RoutesConfig {
        routes: specs,
        log: b
            .log
            .and_then(bb_egress::policy::LogLevel::from_u8)
            .unwrap_or_default(),
    };
    let text = cfg.to_yaml().unwrap();
    if let Err(e) = cfg.validate() {
        panic!("accepted routes do not load in the proxy: {e}\n{text}");
    }
    if let Err(e) = RoutesConfig::from_yaml(&text) {
        panic!("accepted routes do not load in the proxy from their text: {e}\n{text}");
    }
}

/// Parses `value` and checks the parts rebuild it and `describe` depends on
/// no literal character.
fn check_env_value(value: &str) {
    let Ok(src) = EnvSource::parse(value) else {
        return;
    };
    let (rebuilt, literals) = match &src {
        EnvSource::Literal(s) => (s.clone(), vec![s.as_str()]),
        EnvSource::Interpolated(parts) => {
            assert!(parts.iter().any(|p| matches!(p, Part::Var(_))));
            let mut out = String::new();
            let mut lits = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                match p {
                    Part::Lit(s) => {
                        assert!(!s.is_empty(), "an empty literal part");
                        if i > 0 {
                            assert!(
                                matches!(parts[i - 1], Part::Var(_)),
                                "two literal parts in a row"
                            );
                        }
                        out.push_str(s);
                        lits.push(s.as_str());
                    }
                    Part::Var(v) => {
                        assert!(bot_bottle::env::valid_env_name(v));
                        let _ = write!(out, "${{{v}}}");
                    }
                }
            }
            (out, lits)
        }
        EnvSource::Prompt(q) => {
            let rest = value.strip_prefix('?').expect("a prompt without `?`");
            assert_eq!(rest.trim(), q);
            assert!(!q.is_empty());
            (value.to_owned(), Vec::new())
        }
    };
    assert_eq!(rebuilt, value, "the parts do not rebuild the value");
    let vars: Vec<&str> = src.host_vars().collect();
    if let EnvSource::Interpolated(parts) = &src {
        let expected: Vec<&str> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => Some(v.as_str()),
                Part::Lit(_) => None,
            })
            .collect();
        assert_eq!(vars, expected);
    } else {
        assert!(vars.is_empty());
    }

    let described = src.describe();
    let masked = EnvSource::parse(&mask(&src)).expect("a masked value does not parse");
    let masked_described = masked.describe();
    assert_eq!(
        described, masked_described,
        "describe() depends on literal characters"
    );
    // Implied by the equality, and stated for the reader: a literal longer
    // than 3 chars shows only where the template has the same text
    // (`literal (4 chars)` contains `lite`).
    for lit in literals {
        assert!(
            lit.chars().count() <= 3 || !described.contains(lit) || masked_described.contains(lit),
            "describe() shows a literal: {described:?}"
        );
    }
    assert_eq!(format!("{src:?}"), described, "Debug is not describe()");
}

/// `src` written back with every literal character replaced by `x`.
fn mask(src: &EnvSource) -> String {
    let x = |s: &str| "x".repeat(s.chars().count());
    match src {
        EnvSource::Literal(s) => x(s),
        EnvSource::Interpolated(parts) => parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => x(s),
                Part::Var(v) => format!("${{{v}}}"),
            })
            .collect(),
        EnvSource::Prompt(q) => format!("?{q}"),
    }
}

/// A secret field's value with every literal character masked, staying in
/// its class: a name is no secret and stays; `${…}` and `?…` mask their
/// literal parts; a literal becomes `-`s, which no rule reads as a name.
fn mask_secret_ref(s: &str) -> String {
    match SecretRef::parse(s) {
        Ok(SecretRef::Name(_)) | Err(_) => s.to_owned(),
        Ok(SecretRef::Source(src)) => mask(&src),
        Ok(SecretRef::Literal(l)) => "-".repeat(l.chars().count()),
    }
}

/// `loaded` with every literal of the bottle's env and of every field
/// naming a secret masked.
fn masked(loaded: &Loaded) -> Loaded {
    let mut out = loaded.clone();
    let mask_env = |s: &mut String| {
        if let Ok(src) = EnvSource::parse(s) {
            *s = mask(&src);
        }
    };
    let mask_ref = |s: &mut String| *s = mask_secret_ref(s);
    for v in out
        .bottle
        .merged
        .env
        .iter_mut()
        .flat_map(BTreeMap::values_mut)
    {
        mask_env(v);
    }
    let providers = [
        Some(&mut out.bottle.provider),
        out.bottle.merged.agent_provider.as_mut(),
    ];
    for p in providers.into_iter().flatten() {
        if let Some(t) = p.auth_token.as_mut() {
            mask_ref(t);
        }
        if let Some(serde_norway::Value::String(k)) =
            p.settings.as_mut().and_then(|s| s.get_mut("api_key_env"))
        {
            mask_ref(k);
        }
    }
    for r in &mut out.bottle.routes {
        if let Some(a) = r.route.auth.as_mut() {
            mask_ref(&mut a.token_ref);
        }
    }
    for repo in out.bottle.repos.values_mut() {
        if let Some(t) = repo.key.forge_token_env.as_mut() {
            mask_ref(t);
        }
    }
    out
}

/// The plan's text without the warnings that a secret is written into the
/// manifest (they depend on its shape); those are checked on their own.
fn without_literal_warnings(p: &LaunchPlan) -> LaunchPlan {
    let mut p = p.clone();
    p.warnings.retain(|w| {
        !w.contains("written into the manifest") && !w.contains("looks like a real key")
    });
    p
}

/// A warning that a secret is written into the manifest is the fixed text
/// around a field name, a manifest file of the chain and a length: nothing
/// of the literal.
fn check_literal_warning(w: &str, loaded: &Loaded) {
    const MARK: &str = " holds a secret written into the manifest (";
    let Some((head, tail)) = w.split_once(MARK) else {
        return;
    };
    let files: Vec<String> = loaded
        .bottle
        .chain
        .iter()
        .map(|p| format!(" ({})", p.display()))
        .collect();
    assert!(
        files.iter().any(|f| head.ends_with(f.as_str())),
        "a literal warning names no manifest file: {w}"
    );
    let field = files
        .iter()
        .find_map(|f| head.strip_suffix(f.as_str()))
        .unwrap_or(head);
    assert!(
        field == "agent_provider.auth_token"
            || field == "agent_provider.settings.api_key_env"
            || (field.starts_with("env.") && bot_bottle::env::valid_env_name(&field[4..]))
            || (field.starts_with("git-gate.repos.") && field.ends_with(".key.forge_token_env"))
            || (field.starts_with("egress.routes[") && field.ends_with("].auth.token_ref")),
        "a literal warning for an unknown field: {w}"
    );
    let rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
    assert!(
        rest.starts_with(" chars): anyone who can read the file can read it;"),
        "a literal warning with more than a length: {w}"
    );
}

/// Answers every prompt with the fixture's secret.
struct SecretPrompter;

impl Prompter for SecretPrompter {
    fn ask(&mut self, _key: &str, _question: &str) -> Result<Redacted<String>, EnvError> {
        Ok(Redacted::new(fixture().secret.clone()))
    }
}

fn plan_once(loaded: &Loaded) -> Result<LaunchPlan, String> {
    let fx = fixture();
    let provider = provider::find(&fx.paths, &loaded.bottle.provider.template)
        .map_err(|e| format!("provider: {e}"))?;
    let opts = PlanOptions {
        slug: Some("fz-000000".into()),
        ..PlanOptions::default()
    };
    LaunchPlan::new(&fx.paths, loaded, &provider, &opts).map_err(|e| e.to_string())
}

fn plan_agent(manifests: &Loader, agent: &str) {
    let fx = fixture();
    let Ok(loaded) = manifests.load(agent) else {
        return;
    };
    let plan = plan_once(&loaded);
    let shown = |p: &Result<LaunchPlan, String>| match p {
        Ok(p) => {
            let p = without_literal_warnings(p);
            format!("{p}\n{p:?}")
        }
        Err(e) => e.clone(),
    };
    if let Err(e) = &plan {
        // pi's generator validates its model host, so a rendered
        // routes.yaml that does not load is a bug.
        assert!(
            !e.contains("routes.yaml"),
            "the plan rendered a routes.yaml it cannot load: {e}"
        );
    }
    let masked_plan = plan_once(&masked(&loaded));
    assert_eq!(
        shown(&plan),
        shown(&masked_plan),
        "the plan shows something of an env literal"
    );
    let Ok(plan) = plan else {
        return;
    };
    assert!(RoutesConfig::from_yaml(&plan.routes_yaml).is_ok());
    // The literal warnings name the field, the file and a length only.
    for w in &plan.warnings {
        check_literal_warning(w, &loaded);
    }

    let secret = fx.secret.as_str();
    let host = |_: &str| Some(secret.to_owned());
    assert!(
        !plan.host_report(&host).contains(secret),
        "the host report shows a value"
    );
    match plan.resolve_secrets(&host, &mut SecretPrompter) {
        Ok(secrets) => {
            assert!(
                !format!("{secrets:?}").contains(secret),
                "Secrets' Debug shows a value"
            );
            assert!(secrets.tokens.iter().all(|(_, v)| !v.expose().is_empty()));
        }
        Err(e) => assert!(
            !e.to_string().contains(secret),
            "a resolve error shows a value: {e}"
        ),
    }
}
