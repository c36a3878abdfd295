//! Manifests against temp-dir fixtures: every `extends:` merge rule of
//! SPEC §4, the trust boundary, every validation error with its message,
//! and property tests for the merge.

#![allow(clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::test_support::{manifest_path, write};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A temp operator home and working directory.
struct Fx {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

/// Strips the common indentation of `s` (and one leading newline), so YAML
/// can be written indented in the test source.
fn dedent(s: &str) -> String {
    let s = s.strip_prefix('\n').unwrap_or(s);
    let indent = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in s.lines() {
        out.push_str(line.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    out
}

impl Fx {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = tmp.path().join("home");
        let cwd = tmp.path().join("cwd");
        fs::create_dir_all(home.join(".bot-bottle").join("bottles")).expect("mkdir");
        fs::create_dir_all(home.join(".bot-bottle").join("agents")).expect("mkdir");
        fs::create_dir_all(&cwd).expect("mkdir");
        Self {
            _tmp: tmp,
            home,
            cwd,
        }
    }

    fn paths(&self) -> Paths {
        Paths::new(&self.home, &self.cwd)
    }

    fn loader(&self) -> Loader {
        Loader::new(self.paths())
    }

    fn bottle_path(&self, name: &str) -> PathBuf {
        manifest_path(&self.home, "bottles", name)
    }

    /// `~/.bot-bottle/bottles/<name>.md` with `yaml` (dedented) as frontmatter.
    fn bottle(&self, name: &str, yaml: &str) -> PathBuf {
        write(
            &self.bottle_path(name),
            &format!("---\n{}---\nbody of {name}\n", dedent(yaml)),
        )
    }

    /// A bottle file with the exact text given.
    fn bottle_raw(&self, name: &str, text: &str) -> PathBuf {
        write(&self.bottle_path(name), text)
    }

    /// A bottle file holding `layer` serialised.
    fn bottle_layer(&self, name: &str, layer: &BottleLayer) -> PathBuf {
        let yaml = serde_norway::to_string(layer).expect("serialise layer");
        write(&self.bottle_path(name), &format!("---\n{yaml}---\n"))
    }

    fn agent(&self, name: &str, yaml: &str) -> PathBuf {
        write(
            &manifest_path(&self.home, "agents", name),
            &format!("---\n{}---\nPrompt of home agent {name}.\n", dedent(yaml)),
        )
    }

    fn agent_raw(&self, name: &str, text: &str) -> PathBuf {
        write(&manifest_path(&self.home, "agents", name), text)
    }

    fn cwd_agent(&self, name: &str, yaml: &str) -> PathBuf {
        write(
            &manifest_path(&self.cwd, "agents", name),
            &format!("---\n{}---\nPrompt of cwd agent {name}.\n", dedent(yaml)),
        )
    }

    fn cwd_bottle(&self, name: &str, yaml: &str) -> PathBuf {
        write(
            &manifest_path(&self.cwd, "bottles", name),
            &format!("---\n{}---\n", dedent(yaml)),
        )
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// The error's message, asserting it is one.
fn err<T: std::fmt::Debug>(r: Result<T, ManifestError>) -> (ManifestError, String) {
    let e = r.expect_err("expected an error");
    let text = e.to_string();
    (e, text)
}

/// Asserts `text` contains every needle.
#[track_caller]
fn contains_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{text:?} does not contain {n:?}");
    }
}

fn hosts(b: &Bottle) -> Vec<&str> {
    b.routes.iter().map(|r| r.route.host.as_str()).collect()
}

// ---------------------------------------------------------------------------
// SPEC §4 merge rules, one fixture each
// ---------------------------------------------------------------------------

#[test]
fn a_bottle_without_extends_gets_the_defaults() {
    let fx = Fx::new();
    let file = fx.bottle("solo", "env: {A: a}\n");
    let b = fx.loader().load_bottle("solo").expect("loads");
    assert_eq!(b.name, "solo");
    assert_eq!(b.chain, vec![file]);
    assert_eq!(b.provider.template, "claude");
    assert!(b.supervise, "supervise defaults to true");
    assert_eq!(b.log, None);
    assert!(b.routes.is_empty() && b.repos.is_empty());
    assert_eq!(b.git_user, GitUserLayer::default());
}

#[test]
fn env_merges_and_the_child_wins() {
    let fx = Fx::new();
    let base = fx.bottle("base", "env: {A: from-base, B: from-base}\n");
    let child = fx.bottle(
        "child",
        "
        extends: base
        env: {B: from-child, C: from-child}
        ",
    );
    let b = fx.loader().load_bottle("child").expect("loads");
    let env = b.merged.env.clone().expect("env");
    assert_eq!(
        env,
        BTreeMap::from([
            ("A".to_owned(), "from-base".to_owned()),
            ("B".to_owned(), "from-child".to_owned()),
            ("C".to_owned(), "from-child".to_owned()),
        ])
    );
    // Each entry is attributed to the nearest file that sets it.
    assert_eq!(b.env_source["A"], base);
    assert_eq!(b.env_source["B"], child);
    assert_eq!(b.env_source["C"], child);
    assert_eq!(b.chain, vec![child, base]);
}

#[test]
fn git_user_merges_per_field() {
    let fx = Fx::new();
    fx.bottle(
        "base",
        "
        git-gate:
          user: {name: Base Name, email: base@example.com}
        ",
    );
    fx.bottle(
        "child",
        "
        extends: base
        git-gate:
          user: {email: child@example.com}
        ",
    );
    fx.bottle("grandchild", "extends: child\n");
    for name in ["child", "grandchild"] {
        let b = fx.loader().load_bottle(name).expect("loads");
        assert_eq!(b.git_user.name.as_deref(), Some("Base Name"), "{name}");
        assert_eq!(
            b.git_user.email.as_deref(),
            Some("child@example.com"),
            "{name}"
        );
    }
}

#[test]
fn repos_merge_by_name_field_by_field() {
    let fx = Fx::new();
    fx.bottle(
        "base",
        "
        git-gate:
          repos:
            app:
              url: git@example.com:o/app.git
              key: {provider: static, path: ~/.ssh/app}
              host_key: 'example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMfDk/9ioyj8IzIwSs2MfoBsf3edCBmzox0r0snm/0Ox'
            lib:
              url: git@example.com:o/lib.git
              key:
                provider: gitea
                forge_token_env: GITEA_TOKEN
                api_url: https://git.example.com/api/v1
              host_key: 'example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK/5kKLM2l54U/4MABxxXNYwvwTiRnSRkkbDgLqlYAnp'
        ",
    );
    fx.bottle(
        "child",
        "
        extends: base
        git-gate:
          repos:
            app:
              url: git@example.com:o/app-fork.git
            docs:
              url: git@example.com:o/docs.git
              key: {provider: static, path: /keys/docs}
              host_key: 'example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJat1nPIDPCUwZHl0qNTedLO6QHkTx2mi8Nk+EIsHxV+'
        ",
    );
    let b = fx.loader().load_bottle("child").expect("loads");
    assert_eq!(
        b.repos.keys().map(String::as_str).collect::<Vec<_>>(),
        ["app", "docs", "lib"]
    );
    let app = &b.repos["app"];
    assert_eq!(
        app.url, "git@example.com:o/app-fork.git",
        "child's url wins"
    );
    assert_eq!(app.key.provider, KeyProvider::Static, "key from the base");
    assert_eq!(app.key.path.as_deref(), Some("~/.ssh/app"));
    assert_eq!(
        app.host_key.as_deref(),
        Some(
            "example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMfDk/9ioyj8IzIwSs2MfoBsf3edCBmzox0r0snm/0Ox"
        )
    );
    let lib = &b.repos["lib"];
    assert_eq!(lib.key.provider, KeyProvider::Gitea);
    assert_eq!(lib.key.forge_token_env.as_deref(), Some("GITEA_TOKEN"));
    assert_eq!(
        b.repos["docs"].host_key.as_deref(),
        Some(
            "example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJat1nPIDPCUwZHl0qNTedLO6QHkTx2mi8Nk+EIsHxV+"
        )
    );
}

#[test]
fn an_explicit_empty_repos_map_clears_inherited_repos() {
    let fx = Fx::new();
    fx.bottle(
        "base",
        "
        git-gate:
          user: {name: Kept}
          repos:
            app:
              url: git@example.com:o/app.git
              key: {provider: static, path: ~/.ssh/app}
              host_key: 'example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMfDk/9ioyj8IzIwSs2MfoBsf3edCBmzox0r0snm/0Ox'
        ",
    );
    fx.bottle(
        "cleared",
        "
        extends: base
        git-gate:
          repos: {}
        ",
    );
    // Not mentioning repos inherits them; `{}` clears them.
    fx.bottle("inherits", "extends: base\ngit-gate: {}\n");
    fx.bottle(
        "readds",
        "
        extends: cleared
        git-gate:
          repos:
            docs:
              url: git@example.com:o/docs.git
              key: {provider: static, path: /k}
              host_key: 'example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILuyeSyDSsyNiq4RccTsmf+3wJUzNjFyW06HC/hn4uot'
        ",
    );
    let loader = fx.loader();
    let cleared = loader.load_bottle("cleared").expect("loads");
    assert!(cleared.repos.is_empty(), "{:?}", cleared.repos);
    assert_eq!(
        cleared.git_user.name.as_deref(),
        Some("Kept"),
        "clearing repos keeps the git user"
    );
    let inherits = loader.load_bottle("inherits").expect("loads");
    assert_eq!(inherits.repos.keys().collect::<Vec<_>>(), ["app"]);
    let readds = loader.load_bottle("readds").expect("loads");
    assert_eq!(
        readds.repos.keys().collect::<Vec<_>>(),
        ["docs"],
        "a grandchild after a clear sees only its own repos"
    );
}

#[test]
fn routes_concatenate_parent_first() {
    let fx = Fx::new();
    let root = fx.bottle(
        "root",
        "
        egress:
          routes:
            - host: a.example
            - host: b.example
        ",
    );
    let mid = fx.bottle(
        "mid",
        "
        extends: root
        egress:
          routes:
            - host: c.example
        ",
    );
    let leaf = fx.bottle(
        "leaf",
        "
        extends: mid
        egress:
          routes:
            - host: d.example
            - host: e.example
        ",
    );
    let b = fx.loader().load_bottle("leaf").expect("loads");
    assert_eq!(
        hosts(&b),
        [
            "a.example",
            "b.example",
            "c.example",
            "d.example",
            "e.example"
        ]
    );
    let files: Vec<&PathBuf> = b.routes.iter().map(|r| &r.file).collect();
    assert_eq!(files, [&root, &root, &mid, &leaf, &leaf]);
    // The index is the route's position in its own file.
    let idx: Vec<usize> = b.routes.iter().map(|r| r.route.index).collect();
    assert_eq!(idx, [0, 1, 0, 0, 1]);
}

#[test]
fn a_duplicate_host_along_a_chain_names_both_files() {
    let fx = Fx::new();
    let base = fx.bottle("base", "egress:\n  routes:\n    - host: api.example.com\n");
    let child = fx.bottle(
        "child",
        "
        extends: base
        egress:
          routes:
            - host: other.example.com
            - host: API.Example.com
        ",
    );
    let (e, text) = err(fx.loader().load_bottle("child"));
    assert!(matches!(e, ManifestError::DuplicateHost { .. }), "{e:?}");
    contains_all(
        &text,
        &[
            "declared twice",
            "API.Example.com",
            &shown(&base),
            &shown(&child),
        ],
    );
    // In one file, too.
    fx.bottle(
        "twice",
        "egress:\n  routes:\n    - host: x.example\n    - host: x.example\n",
    );
    let (_, text) = err(fx.loader().load_bottle("twice"));
    contains_all(&text, &["`x.example` is declared twice"]);
}

#[test]
fn log_provider_and_supervise_are_replaced_when_set_and_inherited_when_not() {
    let fx = Fx::new();
    fx.bottle(
        "base",
        "
        agent_provider:
          template: codex
          auth_token: ${OPENAI}
        egress: {log: 2}
        supervise: false
        ",
    );
    fx.bottle("inherits", "extends: base\nenv: {X: y}\n");
    fx.bottle(
        "replaces",
        "
        extends: base
        agent_provider: {template: pi}
        egress: {log: 0}
        supervise: true
        ",
    );
    let loader = fx.loader();
    let inherits = loader.load_bottle("inherits").expect("loads");
    assert_eq!(inherits.provider.template, "codex");
    assert_eq!(inherits.provider.auth_token.as_deref(), Some("${OPENAI}"));
    assert_eq!(inherits.log, Some(2));
    assert!(!inherits.supervise);

    let replaces = loader.load_bottle("replaces").expect("loads");
    assert_eq!(replaces.provider.template, "pi");
    assert_eq!(
        replaces.provider.auth_token, None,
        "agent_provider is replaced whole, not merged"
    );
    assert_eq!(replaces.log, Some(0));
    assert!(replaces.supervise);
}

#[test]
fn setting_egress_routes_alone_keeps_the_parents_log() {
    let fx = Fx::new();
    fx.bottle("base", "egress: {log: 1}\n");
    fx.bottle(
        "child",
        "extends: base\negress:\n  routes:\n    - host: a.example\n",
    );
    let b = fx.loader().load_bottle("child").expect("loads");
    assert_eq!(b.log, Some(1));
    assert_eq!(hosts(&b), ["a.example"]);
}

#[test]
fn the_agents_git_user_overlays_the_bottles_per_field() {
    let fx = Fx::new();
    fx.bottle(
        "base",
        "git-gate:\n  user: {name: Bottle Name, email: bottle@example.com}\n",
    );
    fx.bottle("dev", "extends: base\n");
    fx.agent(
        "named",
        "
        bottle: dev
        git-gate:
          user: {name: Agent Name}
        ",
    );
    fx.agent("plain", "bottle: dev\n");
    let loader = fx.loader();
    let named = loader.load("named").expect("loads");
    assert_eq!(named.git_user.name.as_deref(), Some("Agent Name"));
    assert_eq!(named.git_user.email.as_deref(), Some("bottle@example.com"));
    assert_eq!(
        named.bottle.git_user.name.as_deref(),
        Some("Bottle Name"),
        "the bottle's own identity is unchanged"
    );
    let plain = loader.load("plain").expect("loads");
    assert_eq!(plain.git_user, plain.bottle.git_user);
}

#[test]
fn an_extends_cycle_is_an_error_listing_the_chain() {
    let fx = Fx::new();
    fx.bottle("a", "extends: b\n");
    fx.bottle("b", "extends: c\n");
    fx.bottle("c", "extends: a\n");
    let (e, text) = err(fx.loader().load_bottle("a"));
    assert!(matches!(e, ManifestError::Cycle { .. }), "{e:?}");
    assert_eq!(text, "`extends:` cycle: a -> b -> c -> a");
    let (_, text) = err(fx.loader().load_bottle("b"));
    assert_eq!(text, "`extends:` cycle: b -> c -> a -> b");

    fx.bottle("selfish", "extends: selfish\n");
    let (_, text) = err(fx.loader().load_bottle("selfish"));
    assert_eq!(text, "`extends:` cycle: selfish -> selfish");

    // Through an agent too.
    fx.agent("looper", "bottle: a\n");
    let (_, text) = err(fx.loader().load("looper"));
    assert_eq!(text, "`extends:` cycle: a -> b -> c -> a");
}

#[test]
fn a_missing_parent_names_the_child_file_and_extends() {
    let fx = Fx::new();
    fx.bottle("root", "extends: gone\n");
    let child = fx.bottle("child", "extends: root\n");
    let root = fx.bottle_path("root");
    let (e, text) = err(fx.loader().load_bottle("child"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &root, "the file whose `extends:` is wrong");
            assert_eq!(key, "extends");
        }
        other => panic!("{other:?}"),
    }
    contains_all(
        &text,
        &[
            &shown(&root),
            "`extends`",
            "no bottle named `gone`",
            &shown(&fx.bottle_path("gone")),
        ],
    );
    assert!(!text.contains(&shown(&child)), "{text}");
}

#[test]
fn an_invalid_extends_name_names_the_bottle_file_and_extends() {
    let fx = Fx::new();
    let dev = fx.bottle("dev", "extends: Bad_Name\n");
    let agent = fx.agent("a", "bottle: dev\n");
    let (e, text) = err(fx.loader().load("a"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &dev, "{text}");
            assert_eq!(key, "extends", "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!text.contains(&shown(&agent)), "{text}");
    // And loading the bottle on its own names the file, not just the name.
    let (_, text) = err(fx.loader().load_bottle("dev"));
    contains_all(&text, &[&shown(&dev), "extends", "not a bottle name"]);
}

// ---------------------------------------------------------------------------
// Trust boundary and discovery
// ---------------------------------------------------------------------------

#[test]
fn a_bottle_in_the_working_directory_is_never_read() {
    let fx = Fx::new();
    let evil = fx.cwd_bottle("x", "egress:\n  routes:\n    - host: attacker.example\n");
    let agent = fx.cwd_agent("task", "bottle: x\n");
    let (e, text) = err(fx.loader().load("task"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &agent);
            assert_eq!(key, "bottle");
        }
        other => panic!("{other:?}"),
    }
    contains_all(
        &text,
        &["no bottle named `x`", &shown(&fx.bottle_path("x"))],
    );
    assert!(!text.contains(&shown(&evil)), "{text}");
    let (e, _) = err(fx.loader().load_bottle("x"));
    match e {
        ManifestError::NotFound { searched, .. } => {
            assert_eq!(searched, vec![fx.bottle_path("x")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn loading_warns_when_the_working_directory_has_bottles() {
    let fx = Fx::new();
    fx.bottle("x", "egress:\n  routes:\n    - host: good.example\n");
    fx.cwd_bottle("x", "egress:\n  routes:\n    - host: attacker.example\n");
    fx.agent("task", "bottle: x\n");
    let loaded = fx.loader().load("task").expect("loads");
    assert_eq!(hosts(&loaded.bottle), ["good.example"]);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let cwd_bottles = fx.cwd.join(".bot-bottle").join("bottles");
    contains_all(
        &loaded.warnings[0],
        &[
            "ignoring",
            &shown(&cwd_bottles),
            &shown(&fx.home.join(".bot-bottle").join("bottles")),
        ],
    );
    assert_eq!(
        fx.loader().trust_warning().as_ref(),
        Some(&loaded.warnings[0])
    );

    // No folder, no warning.
    let clean = Fx::new();
    clean.bottle("x", "{}\n");
    clean.agent("task", "bottle: x\n");
    assert!(
        clean
            .loader()
            .load("task")
            .expect("loads")
            .warnings
            .is_empty()
    );
    assert_eq!(clean.loader().trust_warning(), None);
}

#[test]
fn the_working_directorys_agent_wins_over_the_homes() {
    let fx = Fx::new();
    fx.bottle("home-bottle", "{}\n");
    fx.bottle("cwd-bottle", "{}\n");
    fx.agent("dev", "bottle: home-bottle\n");
    fx.agent("only-home", "bottle: home-bottle\n");
    let cwd_file = fx.cwd_agent("dev", "bottle: cwd-bottle\n");
    let loaded = fx.loader().load("dev").expect("loads");
    assert_eq!(loaded.agent.file, cwd_file);
    assert_eq!(loaded.agent.bottle, "cwd-bottle");
    assert_eq!(loaded.bottle.name, "cwd-bottle");
    assert_eq!(loaded.agent.prompt, "Prompt of cwd agent dev.\n");

    let listed = fx.loader().available_agents();
    let view: Vec<(&str, bool)> = listed
        .iter()
        .map(|a| (a.name.as_str(), a.from_cwd))
        .collect();
    assert_eq!(view, [("dev", true), ("only-home", false)]);
    assert_eq!(listed[0].file, cwd_file);
}

#[test]
fn a_broken_unrelated_file_does_not_stop_loading() {
    let fx = Fx::new();
    fx.bottle("good", "env: {A: b}\n");
    fx.bottle_raw("broken", "---\nthis: [is not closed\n---\n");
    fx.bottle_raw("nofence", "no frontmatter at all\n");
    fx.agent("ok", "bottle: good\n");
    fx.agent_raw("bad", "---\nbottle: good\nnonsense: true\n---\n");
    fx.agent_raw("worse", "---\n: : :\n");
    fx.cwd_agent("alsobad", "bottle: [1, 2]\n");
    // A file whose name is not a manifest name is skipped by the listing.
    write(
        &fx.home
            .join(".bot-bottle")
            .join("agents")
            .join("Not_A_Name.md"),
        "---\nbottle: good\n---\n",
    );
    let loaded = fx
        .loader()
        .load("ok")
        .expect("unrelated files are not read");
    assert_eq!(loaded.bottle.name, "good");
    let names: Vec<String> = fx
        .loader()
        .available_agents()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["alsobad", "bad", "ok", "worse"]);
}

#[test]
fn a_missing_agent_lists_both_places_looked() {
    let fx = Fx::new();
    let (e, text) = err(fx.loader().load("ghost"));
    assert!(matches!(e, ManifestError::NotFound { kind: "agent", .. }));
    contains_all(
        &text,
        &[
            "no agent named `ghost`",
            &shown(&fx.cwd.join(".bot-bottle/agents/ghost.md")),
            &shown(&fx.home.join(".bot-bottle/agents/ghost.md")),
        ],
    );
}

#[test]
fn the_agent_body_is_its_prompt() {
    let fx = Fx::new();
    fx.bottle("b", "{}\n");
    fx.agent_raw(
        "p",
        "---\nbottle: b\nskills: [review, tdd]\n---\n\nLine one.\n\nLine two.\n",
    );
    let a = fx.loader().load_agent("p").expect("loads");
    assert_eq!(a.prompt, "Line one.\n\nLine two.\n");
    assert_eq!(a.skills, ["review", "tdd"]);
    assert_eq!(a.bottle, "b");
    // An empty frontmatter block is an empty mapping: `bottle` is missing.
    fx.agent_raw("empty", "---\n---\nhi\n");
    let (_, text) = err(fx.loader().load_agent("empty"));
    contains_all(&text, &["missing field `bottle`"]);
    // An empty bottle frontmatter is fine.
    fx.bottle_raw("blank", "---\n---\n");
    fx.loader().load_bottle("blank").expect("empty bottle");
}

// ---------------------------------------------------------------------------
// Validation errors, each with its message
// ---------------------------------------------------------------------------

#[test]
fn an_unknown_key_in_a_bottle_names_the_file_line_and_key() {
    let fx = Fx::new();
    let file = fx.bottle_raw("b", "---\nenv: {A: b}\nsupervize: true\n---\n");
    let (e, text) = err(fx.loader().load_bottle("b"));
    assert!(
        matches!(e, ManifestError::Syntax { line: Some(3), .. }),
        "{e:?}"
    );
    contains_all(
        &text,
        &[&format!("{}:3:", shown(&file)), "unknown field `supervize`"],
    );
    // Nested keys are named with their path.
    let file = fx.bottle_raw(
        "nested",
        "---\n# comment\ngit-gate:\n  user:\n    nam: x\n---\n",
    );
    let (_, text) = err(fx.loader().load_bottle("nested"));
    contains_all(
        &text,
        &[
            &format!("{}:5:", shown(&file)),
            "git-gate.user",
            "unknown field `nam`",
        ],
    );
    fx.bottle("prov", "agent_provider: {template: claude, token: x}\n");
    let (_, text) = err(fx.loader().load_bottle("prov"));
    contains_all(&text, &["agent_provider", "unknown field `token`"]);
    fx.bottle(
        "repo",
        "git-gate:\n  repos:\n    app: {url: u, branch: main}\n",
    );
    let (_, text) = err(fx.loader().load_bottle("repo"));
    contains_all(&text, &["git-gate.repos.app", "unknown field `branch`"]);
}

#[test]
fn an_unknown_key_in_an_agent_names_the_file_and_key() {
    let fx = Fx::new();
    fx.bottle("b", "{}\n");
    let file = fx.agent_raw("a", "---\nbottle: b\nenv: {A: b}\n---\n");
    let (e, text) = err(fx.loader().load("a"));
    assert!(matches!(e, ManifestError::Syntax { .. }), "{e:?}");
    contains_all(
        &text,
        &[&format!("{}:3:", shown(&file)), "unknown field `env`"],
    );
    // An agent's git-gate may only set `user`.
    fx.agent("repos", "bottle: b\ngit-gate:\n  repos: {x: {url: u}}\n");
    let (_, text) = err(fx.loader().load("repos"));
    contains_all(
        &text,
        &["git-gate", "unknown field `repos`", "expected `user`"],
    );
}

#[test]
fn a_wrong_type_names_the_key_and_the_type_never_the_value() {
    let fx = Fx::new();
    let file = fx.bottle_raw("b", "---\nsupervise: \"yes\"\n---\n");
    let (_, text) = err(fx.loader().load_bottle("b"));
    contains_all(
        &text,
        &[
            &format!("{}:2:", shown(&file)),
            "supervise",
            "invalid type: a string",
            "expected a boolean",
        ],
    );
    assert!(!text.contains("yes"), "{text}");
    fx.bottle("envlist", "env: [A, B]\n");
    let (_, text) = err(fx.loader().load_bottle("envlist"));
    contains_all(&text, &["env", "invalid type: a list"]);
    fx.bottle("routesmap", "egress:\n  routes: {host: a.example}\n");
    let (_, text) = err(fx.loader().load_bottle("routesmap"));
    contains_all(&text, &["egress.routes", "invalid type: a mapping"]);
    fx.bottle("envnum", "env: {A: [hunter2-SECRET]}\n");
    let (_, text) = err(fx.loader().load_bottle("envnum"));
    contains_all(&text, &["env.A", "invalid type: a list, expected a string"]);
    assert!(!text.contains("hunter2"), "{text}");
    fx.bottle("route-scalar", "egress:\n  routes: [a.example]\n");
    let (_, text) = err(fx.loader().load_bottle("route-scalar"));
    contains_all(
        &text,
        &["`egress.routes[0]`", "expected a mapping, found a string"],
    );
    fx.bottle("loglevel", "egress: {log: 3}\n");
    let (_, text) = err(fx.loader().load_bottle("loglevel"));
    contains_all(&text, &["`egress.log`", "3 is not a log level"]);
}

#[test]
fn role_in_a_route_is_reserved() {
    let fx = Fx::new();
    let file = fx.bottle(
        "b",
        "
        egress:
          routes:
            - host: ok.example
            - host: a.example
              role: git-gate
        ",
    );
    let (e, text) = err(fx.loader().load_bottle("b"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &file);
            assert_eq!(key, "egress.routes[1].role");
        }
        other => panic!("{other:?}"),
    }
    contains_all(&text, &["`role` is reserved"]);
}

#[test]
fn routes_yaml_auth_keys_are_refused_in_a_manifest() {
    for key in ["auth_scheme: Bearer", "token_env: EGRESS_TOKEN_X"] {
        let fx = Fx::new();
        fx.bottle(
            "b",
            &format!("egress:\n  routes:\n    - host: a.example\n      {key}\n"),
        );
        let (_, text) = err(fx.loader().load_bottle("b"));
        let name = key.split(':').next().expect("key");
        contains_all(
            &text,
            &[
                &format!("`egress.routes[0].{name}`"),
                "is the routes.yaml form",
                "auth: {scheme: Bearer, token_ref: <env entry>}",
            ],
        );
    }
}

#[test]
fn route_auth_is_checked() {
    let fx = Fx::new();
    let file = fx.bottle(
        "noenv",
        "
        env: {OTHER: x}
        egress:
          routes:
            - host: api.example.com
              auth: {scheme: Bearer, token_ref: API_TOKEN}
        ",
    );
    // A name that is no env entry names a host variable (the seed's form);
    // the plan reads it from the host at launch.
    let b = fx.loader().load_bottle("noenv").expect("a host variable");
    assert_eq!(b.chain, [file]);
    assert_eq!(
        b.routes[0]
            .route
            .auth
            .as_ref()
            .map(|a| a.token_ref.as_str()),
        Some("API_TOKEN")
    );

    // The env entry may come from a parent.
    fx.bottle("parent", "env: {API_TOKEN: \"${HOST_TOKEN}\"}\n");
    fx.bottle(
        "child",
        "
        extends: parent
        egress:
          routes:
            - host: api.example.com
              auth: {scheme: token, token_ref: API_TOKEN}
        ",
    );
    let b = fx
        .loader()
        .load_bottle("child")
        .expect("token_ref from parent");
    let auth = b.routes[0].route.auth.clone().expect("auth");
    assert_eq!(auth.scheme, "token");
    assert_eq!(auth.token_ref, "API_TOKEN");

    for (auth, key, msg) in [
        (
            "{scheme: Basic, token_ref: T}",
            "auth.scheme",
            "not a scheme",
        ),
        ("{token_ref: T}", "auth.scheme", "missing required key"),
        ("{scheme: Bearer}", "auth.token_ref", "missing required key"),
        ("{scheme: Bearer, token_ref: ''}", "auth.token_ref", "empty"),
        (
            "{scheme: Bearer, token_ref: '${1bad}'}",
            "auth.token_ref",
            "does not name a host variable",
        ),
        (
            "{scheme: Bearer, token_ref: T, extra: x}",
            "auth.extra",
            "unknown key",
        ),
        ("Bearer T", "auth", "expected a mapping {scheme, token_ref}"),
    ] {
        let fx = Fx::new();
        fx.bottle(
            "b",
            &format!(
                "env: {{T: x}}\negress:\n  routes:\n    - host: a.example\n      auth: {auth}\n"
            ),
        );
        let (_, text) = err(fx.loader().load_bottle("b"));
        contains_all(&text, &[&format!("`egress.routes[0].{key}`"), msg]);
    }
}

#[test]
fn other_route_keys_are_judged_by_the_proxys_parser() {
    let fx = Fx::new();
    let file = fx.bottle(
        "b",
        "
        egress:
          routes:
            - host: fine.example
            - host: api.example.com
              matches:
                - paths:
                    - {type: regex, value: \"(unclosed\"}
        ",
    );
    let (e, text) = err(fx.loader().load_bottle("b"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &file);
            assert_eq!(key, "egress.routes[1].matches[0].paths[0].value");
        }
        other => panic!("{other:?}"),
    }
    contains_all(
        &text,
        &["host `api.example.com`", "invalid regex", "(unclosed"],
    );

    for (route, key, msg) in [
        (
            "{host: a.example, colour: red}",
            "egress.routes[0].colour",
            "unknown key",
        ),
        (
            "{matches: []}",
            "egress.routes[0].host",
            "missing required key",
        ),
        ("{host: 42}", "egress.routes[0].host", "expected a hostname"),
        (
            "{host: a.example, dlp: {outbound_detectors: [nope]}}",
            "egress.routes[0].dlp.outbound_detectors",
            "unknown detector",
        ),
        (
            "{host: a.example, ports: [http]}",
            "egress.routes[0].ports",
            "host `a.example`",
        ),
    ] {
        let fx = Fx::new();
        fx.bottle("b", &format!("egress:\n  routes:\n    - {route}\n"));
        let (_, text) = err(fx.loader().load_bottle("b"));
        contains_all(&text, &[&format!("`{key}"), msg]);
    }

    // Everything the proxy accepts passes through unchanged.
    let fx = Fx::new();
    fx.bottle(
        "full",
        "
        egress:
          routes:
            - host: git.example.com
              git: {fetch: true}
              ports: [443, 8443]
              allow_private: true
              dlp: {outbound_detectors: [known_secrets], inbound_detectors: false}
              matches:
                - methods: [get]
                  paths: [{type: exact, value: /a}]
                  headers: [{name: Accept, value: 'json$', type: regex}]
        ",
    );
    let b = fx.loader().load_bottle("full").expect("valid route");
    let spec = &b.routes[0].route.spec;
    assert!(spec.git.fetch);
    assert_eq!(spec.ports, Some(vec![443, 8443]));
    assert!(spec.allow_private);
    assert_ne!(spec.dlp, bb_egress::policy::DlpSpec::default());
    assert_eq!(spec.matches.as_ref().map(Vec::len), Some(1));
}

#[test]
fn anchors_aliases_and_tags_are_refused_with_the_file_line() {
    let cases = [
        (
            "---\nenv:\n  A: &tok value\n  B: *tok\n---\n",
            3,
            "an anchor",
        ),
        (
            "---\nenv: {A: x}\negress:\n  routes:\n    - !!map {host: a.example}\n---\n",
            5,
            "a tag",
        ),
        ("---\nbase: &b {A: x}\n---\n", 2, "an anchor"),
        ("---\n# c\n\nenv: !custom {A: x}\n---\n", 4, "a tag"),
    ];
    for (text, line, what) in cases {
        let fx = Fx::new();
        let file = fx.bottle_raw("b", text);
        let (e, msg) = err(fx.loader().load_bottle("b"));
        assert!(
            matches!(e, ManifestError::Syntax { line: Some(l), .. } if l == line),
            "{text:?}: {e:?}"
        );
        contains_all(
            &msg,
            &[
                &format!("{}:{line}:", shown(&file)),
                what,
                "is not allowed in a manifest",
            ],
        );
    }
    // An alias alone (its anchor refused first) and in an agent.
    let fx = Fx::new();
    fx.bottle("b", "{}\n");
    let file = fx.agent_raw("a", "---\nbottle: &n b\nskills: [*n]\n---\n");
    let (_, msg) = err(fx.loader().load("a"));
    contains_all(&msg, &[&format!("{}:2:", shown(&file)), "an anchor"]);
    // Quoted look-alikes are plain text.
    fx.bottle(
        "quoted",
        "env: {A: '&not-an-anchor', B: \"*nor-alias\", C: '!no'}\n",
    );
    fx.loader().load_bottle("quoted").expect("quoted values");
}

#[test]
fn frontmatter_fences_are_required() {
    let fx = Fx::new();
    let file = fx.bottle_raw("nofence", "env: {A: b}\n");
    let (_, text) = err(fx.loader().load_bottle("nofence"));
    contains_all(
        &text,
        &[
            &format!("{}:1:", shown(&file)),
            "must start with a `---` line",
        ],
    );
    let file = fx.bottle_raw("unclosed", "---\nenv: {A: b}\n");
    let (_, text) = err(fx.loader().load_bottle("unclosed"));
    contains_all(&text, &[&shown(&file), "never closed"]);
    let file = fx.bottle_raw("badyaml", "---\nenv: {A: [b\n---\n");
    let (_, text) = err(fx.loader().load_bottle("badyaml"));
    contains_all(&text, &[&shown(&file), "invalid YAML"]);
}

#[test]
fn an_agent_without_bottle_is_refused() {
    let fx = Fx::new();
    let file = fx.agent("a", "skills: [x]\n");
    let (_, text) = err(fx.loader().load("a"));
    contains_all(&text, &[&shown(&file), "missing field `bottle`"]);
}

#[test]
fn bad_names_are_refused() {
    let fx = Fx::new();
    for name in ["Dev", "1dev", "", "../dev", "dev.md", "de_v", "-dev"] {
        let (e, text) = err(fx.loader().load(name));
        assert!(
            matches!(e, ManifestError::BadName { kind: "agent", .. }),
            "{name:?}: {e:?}"
        );
        contains_all(
            &text,
            &[
                &format!("agent name `{name}` is not valid"),
                "[a-z][a-z0-9-]*",
            ],
        );
        let (e, _) = err(fx.loader().load_bottle(name));
        assert!(
            matches!(e, ManifestError::BadName { kind: "bottle", .. }),
            "{name:?}"
        );
    }
    for name in ["a", "dev", "a-1", "x9-y"] {
        assert!(valid_name(name), "{name}");
    }

    // A bad bottle name in an agent names the agent file and key.
    let agent = fx.agent("a", "bottle: Bad_Bottle\n");
    let (e, text) = err(fx.loader().load("a"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &agent);
            assert_eq!(key, "bottle");
        }
        other => panic!("{other:?}"),
    }
    contains_all(&text, &["not a valid bottle name"]);

    for (yaml, key, msg) in [
        (
            "env: {1BAD: x}\n",
            "env.1BAD",
            "is not an environment variable name",
        ),
        (
            "env: {A: \"${not-a-var}\"}\n",
            "env.A",
            "does not name a host variable",
        ),
        ("env: {A: \"x ${OPEN\"}\n", "env.A", "unclosed `${`"),
        (
            "env: {A: \"?\"}\n",
            "env.A",
            "must be followed by the question",
        ),
        (
            "git-gate:\n  repos:\n    Bad_Repo: {url: u}\n",
            "git-gate.repos.Bad_Repo",
            "is not a repo name",
        ),
        (
            "git-gate:\n  repos:\n    app: {url: 'has space'}\n",
            "git-gate.repos.app.url",
            "not a git URL",
        ),
        (
            "agent_provider: {template: My_Plugin}\n",
            "agent_provider.template",
            "not a provider name",
        ),
        (
            "agent_provider: {template: claude, auth_token: \"${1X}\"}\n",
            "agent_provider.auth_token",
            "does not name a host variable",
        ),
    ] {
        let fx = Fx::new();
        let file = fx.bottle("b", yaml);
        let (e, text) = err(fx.loader().load_bottle("b"));
        match &e {
            ManifestError::Invalid { path, key: k, .. } => {
                assert_eq!(path, &file, "{yaml}");
                assert_eq!(k, key, "{yaml}");
            }
            other => panic!("{yaml}: {other:?}"),
        }
        contains_all(&text, &[msg]);
    }

    // Skills are folder names.
    for skill in ["../etc", "a/b", ".hidden", ""] {
        let fx = Fx::new();
        fx.bottle("b", "{}\n");
        let file = fx.agent("a", &format!("bottle: b\nskills: [ok, '{skill}']\n"));
        let (_, text) = err(fx.loader().load("a"));
        contains_all(
            &text,
            &[&shown(&file), "`skills[1]`", "is not a skill folder name"],
        );
    }
}

#[test]
fn provider_options_belong_to_their_template() {
    let fx = Fx::new();
    let file = fx.bottle(
        "b",
        "agent_provider: {template: claude, forward_host_credentials: true}\n",
    );
    let (e, text) = err(fx.loader().load_bottle("b"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &file);
            assert_eq!(key, "agent_provider.forward_host_credentials");
        }
        other => panic!("{other:?}"),
    }
    contains_all(&text, &["only the codex template", "template is `claude`"]);

    fx.bottle(
        "s",
        "agent_provider:\n  template: codex\n  settings: {models: [x]}\n",
    );
    let (_, text) = err(fx.loader().load_bottle("s"));
    contains_all(
        &text,
        &[
            "`agent_provider.settings`",
            "only the pi template takes settings",
            "template is `codex`",
        ],
    );

    fx.bottle(
        "ok-codex",
        "agent_provider: {template: codex, forward_host_credentials: true}\n",
    );
    fx.bottle(
        "ok-pi",
        "agent_provider:\n  template: pi\n  settings: {models: [x]}\n",
    );
    let loader = fx.loader();
    assert_eq!(
        loader
            .load_bottle("ok-codex")
            .expect("codex")
            .provider
            .forward_host_credentials,
        Some(true)
    );
    assert!(
        loader
            .load_bottle("ok-pi")
            .expect("pi")
            .provider
            .settings
            .is_some()
    );
}

#[test]
fn repo_keys_are_checked() {
    for (key, at, msg) in [
        (
            "{provider: static}",
            "git-gate.repos.app.key.path",
            "required for provider `static`",
        ),
        (
            "{provider: static, path: /k, api_url: 'https://x'}",
            "git-gate.repos.app.key",
            "provider `static` takes only `path`",
        ),
        (
            "{provider: gitea}",
            "git-gate.repos.app.key.forge_token_env",
            "required for provider `gitea`",
        ),
        (
            "{provider: gitea, forge_token_env: T, api_url: 'http://gitea.example.org/api/v1'}",
            "git-gate.repos.app.key.api_url",
            "in the clear",
        ),
        (
            "{provider: gitea, forge_token_env: T, api_url: 'https://x', path: /k}",
            "git-gate.repos.app.key.path",
            "mints its key",
        ),
    ] {
        let fx = Fx::new();
        let file = fx.bottle(
            "b",
            &format!("git-gate:\n  repos:\n    app:\n      key: {key}\n"),
        );
        let (e, text) = err(fx.loader().load_bottle("b"));
        match &e {
            ManifestError::Invalid { path, key: k, .. } => {
                assert_eq!(path, &file, "{key}");
                assert_eq!(k, at, "{key}");
            }
            other => panic!("{key}: {other:?}"),
        }
        contains_all(&text, &[msg]);
    }
    let fx = Fx::new();
    fx.bottle(
        "b",
        "git-gate:\n  repos:\n    app:\n      key: {provider: ssh-agent}\n",
    );
    let (_, text) = err(fx.loader().load_bottle("b"));
    contains_all(&text, &["provider", "expected `static` or `gitea`"]);
    assert!(!text.contains("ssh-agent"), "{text}");
}

#[test]
fn a_repo_missing_a_field_after_merging_names_the_bottle_and_field() {
    let fx = Fx::new();
    fx.bottle(
        "base",
        "git-gate:\n  repos:\n    app:\n      key: {provider: static, path: /k}\n      host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMfDk/9ioyj8IzIwSs2MfoBsf3edCBmzox0r0snm/0Ox\"\n",
    );
    let child = fx.bottle("child", "extends: base\n");
    let (e, text) = err(fx.loader().load_bottle("child"));
    match &e {
        ManifestError::Invalid { path, key, .. } => {
            assert_eq!(path, &child, "the bottle asked for");
            assert_eq!(key, "git-gate.repos.app.url");
        }
        other => panic!("{other:?}"),
    }
    contains_all(
        &text,
        &["required, and not set by this bottle or any bottle it extends"],
    );

    // A child supplying the url completes it.
    fx.bottle(
        "complete",
        "extends: base\ngit-gate:\n  repos:\n    app: {url: 'git@example.com:o/a.git'}\n",
    );
    let b = fx.loader().load_bottle("complete").expect("complete");
    assert_eq!(b.repos["app"].url, "git@example.com:o/a.git");

    let fx = Fx::new();
    fx.bottle(
        "b",
        "git-gate:\n  repos:\n    app: {url: 'git@example.com:o/a.git', host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMfDk/9ioyj8IzIwSs2MfoBsf3edCBmzox0r0snm/0Ox'}\n",
    );
    let (_, text) = err(fx.loader().load_bottle("b"));
    contains_all(&text, &["`git-gate.repos.app.key`"]);
    // `host_key` is optional (the operator's known_hosts is read at planning).
    fx.bottle(
        "b",
        "git-gate:\n  repos:\n    app: {url: 'git@example.com:o/a.git', key: {provider: static, path: /k}}\n",
    );
    let b = fx.loader().load_bottle("b").expect("no host_key");
    assert_eq!(b.repos["app"].host_key, None);
}

// ---------------------------------------------------------------------------
// Property tests: extends merging
// ---------------------------------------------------------------------------

/// A layer as generated, before route hosts are made unique.
#[derive(Debug, Clone)]
struct RawLayer {
    layer: BottleLayer,
    /// Route slots; hosts become `h<layer>-<slot>.example`.
    routes: Option<BTreeSet<u8>>,
    log: Option<u8>,
    egress_present: bool,
}

fn env_strategy() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    proptest::option::of(proptest::collection::btree_map(
        proptest::sample::select(vec!["A", "B", "C", "D"]).prop_map(str::to_owned),
        prop_oneof!["[a-z0-9 .-]{0,8}", Just("${HOST_VAR}".to_owned())],
        0..4,
    ))
}

fn user_strategy() -> impl Strategy<Value = Option<GitUserLayer>> {
    proptest::option::of(
        (
            proptest::option::of("[A-Z][a-z]{0,5}"),
            proptest::option::of("[a-z]{1,4}@x\\.example"),
        )
            .prop_map(|(name, email)| GitUserLayer { name, email }),
    )
}

fn repo_strategy() -> impl Strategy<Value = RepoLayer> {
    // Mostly-complete repos so most chains load; the rest check that both
    // forms fail on the same key.
    let url = proptest::option::weighted(0.85, "git@x\\.example:o/[a-z]{1,4}\\.git");
    let key = proptest::option::weighted(
        0.85,
        "/keys/[a-z]{1,4}".prop_map(|p| RepoKey {
            provider: KeyProvider::Static,
            path: Some(p),
            forge_token_env: None,
            api_url: None,
        }),
    );
    let host_key = proptest::option::weighted(
        0.85,
        proptest::sample::select(vec![
            "AAAAC3NzaC1lZDI1NTE5AAAAIMfDk/9ioyj8IzIwSs2MfoBsf3edCBmzox0r0snm/0Ox",
            "AAAAC3NzaC1lZDI1NTE5AAAAIK/5kKLM2l54U/4MABxxXNYwvwTiRnSRkkbDgLqlYAnp",
        ])
        .prop_map(|k| format!("x.example ssh-ed25519 {k}")),
    );
    (url, key, host_key).prop_map(|(url, key, host_key)| RepoLayer { url, key, host_key })
}

fn git_gate_strategy() -> impl Strategy<Value = Option<GitGateLayer>> {
    proptest::option::of(
        (
            user_strategy(),
            proptest::option::of(proptest::collection::btree_map(
                proptest::sample::select(vec!["r1", "r2", "r3"]).prop_map(str::to_owned),
                repo_strategy(),
                0..3,
            )),
        )
            .prop_map(|(user, repos)| GitGateLayer { user, repos }),
    )
}

fn provider_strategy() -> impl Strategy<Value = Option<ProviderSpec>> {
    proptest::option::of(
        (
            proptest::sample::select(vec!["claude", "codex", "pi"]),
            proptest::option::of(Just("${TOKEN}".to_owned())),
        )
            .prop_map(|(t, auth_token)| ProviderSpec {
                template: t.to_owned(),
                dockerfile: None,
                auth_token,
                forward_host_credentials: None,
                settings: None,
            }),
    )
}

fn raw_layer() -> impl Strategy<Value = RawLayer> {
    (
        env_strategy(),
        provider_strategy(),
        git_gate_strategy(),
        proptest::option::of(proptest::collection::btree_set(0u8..3, 0..3)),
        proptest::option::of(0u8..=2),
        any::<bool>(),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(env, agent_provider, git_gate, routes, log, egress_present, supervise)| RawLayer {
                layer: BottleLayer {
                    extends: None,
                    env,
                    agent_provider,
                    git_gate,
                    egress: None,
                    supervise,
                    limits: None,
                },
                routes,
                log,
                egress_present,
            },
        )
}

/// The layer with its routes as `{host: h<i>-<slot>.example}` mappings.
fn finish(raw: &RawLayer, i: usize) -> BottleLayer {
    let mut layer = raw.layer.clone();
    let routes = raw.routes.as_ref().map(|slots| {
        slots
            .iter()
            .map(|s| {
                let mut m = serde_norway::Mapping::new();
                m.insert("host".into(), format!("h{i}-{s}.example").into());
                serde_norway::Value::Mapping(m)
            })
            .collect::<Vec<_>>()
    });
    if routes.is_some() || raw.log.is_some() || raw.egress_present {
        layer.egress = Some(EgressLayer {
            routes,
            log: raw.log,
        });
    }
    layer
}

fn layers_strategy(
    len: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<BottleLayer>> {
    proptest::collection::vec(raw_layer(), len)
        .prop_map(|raws| raws.iter().enumerate().map(|(i, r)| finish(r, i)).collect())
}

fn flatten(layers: &[BottleLayer]) -> BottleLayer {
    layers
        .iter()
        .fold(BottleLayer::default(), |acc, l| merge(&acc, l))
}

fn repos_of(l: &BottleLayer) -> Option<&BTreeMap<String, RepoLayer>> {
    l.git_gate.as_ref().and_then(|g| g.repos.as_ref())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A chain loaded through `extends:` is the bottle its flattened layer
    /// describes when written as one file.
    #[test]
    fn an_extends_chain_equals_its_flattened_file(layers in layers_strategy(1..=4)) {
        let fx = Fx::new();
        for (i, layer) in layers.iter().enumerate() {
            let mut l = layer.clone();
            l.extends = i.checked_sub(1).map(|p| format!("l{p}"));
            fx.bottle_layer(&format!("l{i}"), &l);
        }
        fx.bottle_layer("flat", &flatten(&layers));
        let loader = fx.loader();
        let chain = loader.load_bottle(&format!("l{}", layers.len() - 1));
        let single = loader.load_bottle("flat");
        match (chain, single) {
            (Ok(c), Ok(s)) => {
                prop_assert_eq!(c.chain.len(), layers.len());
                prop_assert_eq!(&c.merged.env, &s.merged.env);
                prop_assert_eq!(&c.git_user, &s.git_user);
                prop_assert_eq!(&c.repos, &s.repos);
                prop_assert_eq!(hosts(&c), hosts(&s));
                prop_assert_eq!(c.log, s.log);
                prop_assert_eq!(c.supervise, s.supervise);
                prop_assert_eq!(&c.provider, &s.provider);
                prop_assert_eq!(&c.merged, &s.merged);
            }
            (
                Err(ManifestError::Invalid { key: a, .. }),
                Err(ManifestError::Invalid { key: b, .. }),
            ) => prop_assert_eq!(a, b),
            (c, s) => prop_assert!(false, "chain {c:?}\nflat {s:?}"),
        }
    }

    /// `merge` is associative (except for the case the ignored test
    /// `merge_is_associative_when_a_middle_layer_clears_repos` shows).
    #[test]
    fn merge_is_associative(layers in layers_strategy(3..=3), extends in proptest::option::of("[a-z]{1,3}")) {
        let mut a = layers[0].clone();
        a.extends = extends;
        let (b, c) = (&layers[1], &layers[2]);
        prop_assume!(!(
            repos_of(b).is_some_and(BTreeMap::is_empty)
                && repos_of(c).is_some_and(|r| !r.is_empty())
                && repos_of(&a).is_some_and(|r| !r.is_empty())
        ));
        prop_assert_eq!(merge(&merge(&a, b), c), merge(&a, &merge(b, c)));
    }

    /// Merging onto an empty layer, or an empty layer onto anything, changes
    /// nothing but `extends`.
    #[test]
    fn the_empty_layer_is_an_identity(layers in layers_strategy(1..=1)) {
        let l = &layers[0];
        prop_assert_eq!(&merge(&BottleLayer::default(), l), l);
        prop_assert_eq!(&merge(l, &BottleLayer::default()), l);
    }
}

#[test]
/// `merge` is documented as a root-first fold; in that order a middle
/// layer's `repos: {}` clears what the root declared.
fn a_middle_layer_clearing_repos_clears_them_in_a_root_first_fold() {
    let repo = RepoLayer {
        url: Some("u".into()),
        key: None,
        host_key: None,
    };
    let layer = |repos: BTreeMap<String, RepoLayer>| BottleLayer {
        git_gate: Some(GitGateLayer {
            user: None,
            repos: Some(repos),
        }),
        ..BottleLayer::default()
    };
    let a = layer(BTreeMap::from([("x".to_owned(), repo.clone())]));
    let b = layer(BTreeMap::new());
    let c = layer(BTreeMap::from([("y".to_owned(), repo)]));
    let left = merge(&merge(&a, &b), &c);
    assert_eq!(
        repos_of(&left).map(|r| r.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["y".to_owned()]),
        "the chain a <- b <- c"
    );
}

// ---------------------------------------------------------------------------
// Files as they are found on disk (issue 12)
// ---------------------------------------------------------------------------

#[test]
fn encodings_are_checked_with_a_position() {
    let fx = Fx::new();
    fx.bottle_raw("bom", "\u{feff}---\nsupervise: false\n---\n");
    assert!(
        !fx.loader()
            .load_bottle("bom")
            .expect("a BOM is dropped")
            .supervise
    );
    let path = fx.bottle_path("utf16");
    write(&path, "");
    fs::write(&path, b"\xff\xfe-\x00-\x00-\x00\n\x00").expect("write");
    let (_, text) = err(fx.loader().load_bottle("utf16"));
    contains_all(&text, &[":1:", "UTF-16", "save it as UTF-8"]);
    fs::write(
        &path,
        "---\nenv:\n  A: h\u{e9}llo\n  B: caf"
            .bytes()
            .chain([0xe9, b'\n'])
            .chain(*b"---\n")
            .collect::<Vec<_>>(),
    )
    .expect("write");
    let (e, text) = err(fx.loader().load_bottle("utf16"));
    assert!(
        matches!(e, ManifestError::Syntax { line: Some(4), .. }),
        "{e:?}"
    );
    // Characters, not bytes: the é before it on an earlier line does not count.
    contains_all(&text, &["column 9", "not UTF-8"]);
}

#[test]
fn frontmatter_and_prompts_have_size_limits() {
    let fx = Fx::new();
    let big = format!(
        "---\nenv:\n  A: \"{}\"\n---\n",
        "x".repeat(MAX_FRONTMATTER_BYTES)
    );
    fx.bottle_raw("big", &big);
    let (e, text) = err(fx.loader().load_bottle("big"));
    assert!(
        matches!(
            e,
            ManifestError::TooLarge {
                what: "the frontmatter",
                ..
            }
        ),
        "{e:?}"
    );
    contains_all(&text, &["64 KiB"]);
    fx.bottle("b", "{}\n");
    fx.agent_raw(
        "a",
        &format!("---\nbottle: b\n---\n{}", "p".repeat(MAX_PROMPT_BYTES + 1)),
    );
    let (e, _) = err(fx.loader().load("a"));
    assert!(matches!(e, ManifestError::TooLarge { .. }), "{e:?}");
    fx.agent_raw(
        "a",
        &format!("---\nbottle: b\n---\n{}", "p".repeat(MAX_PROMPT_BYTES)),
    );
    fx.loader().load("a").expect("a prompt at the limit loads");
}

#[test]
fn misnamed_files_are_listed_with_a_fix() {
    let fx = Fx::new();
    for name in [
        "MyAgent.md",
        "dev.yaml",
        "ok.md",
        ".hidden.md",
        "ok.md~",
        "x.md.swp",
    ] {
        write(
            &manifest_path(&fx.home, "agents", "x").with_file_name(name),
            "",
        );
    }
    write(&fx.bottle_path("x").with_file_name("Dev.MD"), "");
    let w = fx.loader().misnamed_files();
    assert_eq!(w.len(), 3, "{w:?}");
    contains_all(&w[0], &["Dev.MD", "is never read", "rename it to dev.md"]);
    contains_all(&w[1], &["MyAgent.md", "rename it to myagent.md"]);
    contains_all(&w[2], &["dev.yaml", "[a-z][a-z0-9-]*.md"]);
    // Loading carries them as warnings; a name differing in case is named
    // when the real one is not found.
    fx.bottle("ok", "{}\n");
    fx.agent("a", "bottle: ok\n");
    let loaded = fx.loader().load("a").expect("loads");
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
    let (_, text) = err(fx.loader().load_agent("myagent"));
    contains_all(&text, &["MyAgent.md", "never read", "lower-case"]);
}

#[test]
fn a_bottles_folder_linking_out_of_the_config_folder_is_refused() {
    let fx = Fx::new();
    let elsewhere = fx.home.parent().expect("tmp").join("elsewhere");
    write(&elsewhere.join("dev.md"), "---\n---\n");
    let bottles = fx.paths().bottles_dir();
    fs::remove_dir_all(&bottles).expect("rm");
    std::os::unix::fs::symlink(&elsewhere, &bottles).expect("link");
    let (e, text) = err(fx.loader().load_bottle("dev"));
    assert!(matches!(e, ManifestError::OutsideConfig { .. }), "{e:?}");
    contains_all(&text, &["elsewhere", "outside", "read only from inside"]);

    // The whole ~/.bot-bottle linked elsewhere is the operator's choice.
    let fx = Fx::new();
    let real = fx.home.parent().expect("tmp").join("dotfiles");
    fs::rename(fx.paths().config_dir(), &real).expect("move");
    std::os::unix::fs::symlink(&real, fx.paths().config_dir()).expect("link");
    fx.bottle("dev", "{}\n");
    fx.loader()
        .load_bottle("dev")
        .expect("inside the (linked) config folder");

    // A parent in the chain is held to the same rule.
    let fx = Fx::new();
    write(&fx.home.parent().expect("tmp").join("p.md"), "---\n---\n");
    std::os::unix::fs::symlink(
        fx.home.parent().expect("tmp").join("p.md"),
        fx.bottle_path("base"),
    )
    .expect("link");
    fx.bottle("child", "extends: base\n");
    let (e, _) = err(fx.loader().load_bottle("child"));
    assert!(matches!(e, ManifestError::OutsideConfig { .. }), "{e:?}");
}

#[test]
fn type_error_messages_keep_the_key_and_type_only() {
    for (msg, want) in [
        (
            "supervise: invalid type: string \"hunter2\", expected a boolean",
            "supervise: invalid type: a string, expected a boolean",
        ),
        (
            "env.A: invalid type: string \"x, expected y\", expected a string",
            "env.A: invalid type: a string, expected a string",
        ),
        (
            "egress.log: invalid value: integer `300`, expected u8",
            "egress.log: invalid value: an integer, expected u8",
        ),
        (
            "git-gate.repos.app.key.provider: unknown variant `hunter2`, expected `static` or `gitea`",
            "git-gate.repos.app.key.provider: not one of the allowed values, expected `static` or `gitea`",
        ),
        (
            "unknown field `colour`, expected one of `a`, `b`",
            "unknown field `colour`, expected one of `a`, `b`",
        ),
        (
            "unknown field `ghp_0123456789abcdefghijABCDEFGHIJ012345`, expected `a`",
            "unknown field (a key not shown), expected `a`",
        ),
        ("missing field `bottle`", "missing field `bottle`"),
    ] {
        assert_eq!(without_values(msg), want);
    }
}
