//! The `bot-bottle` binary as an operator runs it (see `support/`): a temp
//! `HOME`, a temp working directory, stdin not a terminal. Nothing here
//! needs a container runtime.

#![allow(clippy::expect_used, reason = "tests")]

mod support;

use std::fmt::Write as _;

use support::{Env, contains_all, contains_none, no_secrets, write};

#[test]
fn dry_run_prints_the_plan_of_the_example() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "agent `dev` in bottle `dev`",
            &env.agents().join("dev.md").display().to_string(),
            &env.bottles().join("base.md").display().to_string(),
            "egress allowlist (5 routes):",
            "- host: registry.npmjs.org",
            "- host: pypi.org",
            "- host: files.pythonhosted.org",
            "- host: api.github.com",
            "- host: api.anthropic.com",
            "token_env: EGRESS_TOKEN_GITHUB_TOKEN",
            "token_env: EGRESS_TOKEN_AGENT_PROVIDER",
            "EGRESS_TOKEN_GITHUB_TOKEN <- env `GITHUB_TOKEN` = ${GITHUB_TOKEN}",
            "GITHUB_TOKEN=egress-placeholder",
            "CLAUDE_CODE_OAUTH_TOKEN=egress-placeholder",
            "sidecar daemons: egress, git-gate, supervise",
            "-> git@github.com:example/app.git",
            "dry run: nothing was started",
        ],
    );
    no_secrets(&out);
    // A dry run creates no state.
    assert!(!env.home.join(".bot-bottle").join("state").exists());
}

#[test]
fn dry_run_never_prints_secret_values() {
    let env = Env::examples();
    write(
        &env.bottles().join("secretive.md"),
        "---\nextends: dev\nenv:\n  PASTED: literal-CLItestSECRET-pasted\n  \
         MIXED: \"x-${GITHUB_TOKEN}\"\n  ASKED: \"?Deploy password\"\n---\n",
    );
    write(
        &env.agents().join("sec.md"),
        "---\nbottle: secretive\n---\nGo.\n",
    );
    // Without a terminal the asked value stops the dry run, as it would
    // stop the start; the plan is printed first, without a value.
    let out = env.run(&["start", "sec", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "PASTED <- literal (28 chars)",
            "MIXED <- literal(2 chars) + ${GITHUB_TOKEN}",
            "ASKED <- asked at launch: Deploy password",
        ],
    );
    no_secrets(&out);
    // `info` shows the same plan, no secrets either.
    let out = env.run(&["info", "sec"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    no_secrets(&out);
}

#[test]
fn start_without_a_name_and_no_terminal_names_the_command() {
    let env = Env::examples();
    let out = env.run(&["start"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["bot-bottle start NAME", "available: dev"]);
    let out = Env::empty().run(&["start", "--dry-run"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["bot-bottle start NAME", "bot-bottle init"]);
}

#[test]
fn start_without_yes_and_no_terminal_never_waits() {
    let env = Env::examples();
    let out = env.run(&["start", "dev"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let said_yes = out.stderr.contains("pass --yes");
    let said_backend = out.stderr.contains("docker") || out.stderr.contains("backend");
    assert!(said_yes || said_backend, "{out:?}");
    no_secrets(&out);
}

#[test]
fn an_unknown_backend_is_refused_before_anything_starts() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--yes", "--backend", "podman"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &["unknown backend `podman` (from --backend)", "docker"],
    );
    let out = env.run_env(
        &["start", "dev", "--yes"],
        &[("BOT_BOTTLE_BACKEND", "smolmachines")],
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &["backend `smolmachines` (from BOT_BOTTLE_BACKEND)"],
    );
    no_secrets(&out);
}

#[test]
fn an_unknown_backend_is_a_configuration_error_in_every_command() {
    let env = Env::examples();
    for args in [
        &["start", "dev", "--yes", "--backend", "podman"][..],
        &["resume", "some-slug", "--yes", "--backend", "podman"],
        &["list", "active", "--backend", "podman"],
        &["list", "snapshots", "--backend", "podman"],
        &["cleanup", "--yes", "--backend", "podman"],
        &["commit", "some-slug", "--backend", "podman"],
        &["rm-snapshot", "some-slug", "--yes", "--backend", "podman"],
        &["doctor", "--backend", "podman"],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, Some(64), "{args:?}: {out:?}");
        contains_all(&out.all(), &["unknown backend `podman` (from --backend)"]);
        let out = env.run_env(
            &args[..args.len() - 2],
            &[("BOT_BOTTLE_BACKEND", "smolmachines")],
        );
        assert_eq!(out.code, Some(64), "{args:?} from the env: {out:?}");
        contains_all(
            &out.all(),
            &["backend `smolmachines` (from BOT_BOTTLE_BACKEND)"],
        );
    }
}

#[test]
fn init_writes_an_agent_and_refuses_to_overwrite() {
    let env = Env::empty();
    let out = env.run(&["init", "--name", "x", "--bottle", "y"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let file = env.agents().join("x.md");
    contains_all(
        &out.stdout,
        &[
            &format!("wrote {}", file.display()),
            "bottle `y` does not exist yet",
        ],
    );
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(text.starts_with("---\nbottle: y\n---\n"), "{text}");

    std::fs::write(&file, "---\nbottle: mine\n---\nkeep me\n").expect("edit");
    let out = env.run(&["init", "--name", "x", "--bottle", "z"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            &file.display().to_string(),
            "already exists",
            "bot-bottle edit x",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("kept"),
        "---\nbottle: mine\n---\nkeep me\n"
    );

    // --here writes into the working directory; the bottle defaults.
    let out = env.run(&["init", "--name", "local", "--here"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let local = env.cwd.join(".bot-bottle").join("agents").join("local.md");
    contains_all(
        &std::fs::read_to_string(&local).expect("written"),
        &["bottle: default"],
    );

    let out = env.run(&["init", "--name", "Bad_Name", "--bottle", "y"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["agent name `Bad_Name` is not valid"]);
}

#[test]
fn init_without_flags_and_no_terminal_names_the_flag() {
    let env = Env::empty();
    let out = env.run(&["init"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["no terminal", "--name"]);
    assert!(!env.agents().exists(), "nothing written");
}

#[test]
fn list_available_lists_agents_from_home_and_cwd() {
    let env = Env::examples();
    write(
        &env.cwd.join(".bot-bottle").join("agents").join("local.md"),
        "---\nbottle: dev\n---\n",
    );
    // A broken agent file is listed (names only; nothing is parsed).
    write(&env.agents().join("broken.md"), "not a manifest");
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0].starts_with("broken\t"), "{out:?}");
    assert_eq!(
        lines[1],
        format!("dev\t{}", env.agents().join("dev.md").display())
    );
    assert!(lines[2].starts_with("local\t"), "{out:?}");
    // `list` defaults to available.
    assert_eq!(env.run(&["list"]).stdout, out.stdout);

    let out = Env::empty().run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["no agents yet", "bot-bottle init"]);
}

#[test]
fn list_warns_about_bottles_in_the_working_directory() {
    let env = Env::examples();
    write(
        &env.cwd.join(".bot-bottle").join("bottles").join("dev.md"),
        "---\negress:\n  routes:\n    - host: attacker.example\n---\n",
    );
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &["warning: ignoring", "bottles are read only from"],
    );
    // And start uses the home bottle, saying so.
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("attacker.example"), "{out:?}");
    contains_all(&out.stdout, &["warning: ignoring"]);
}

#[test]
fn info_prints_the_plan() {
    let env = Env::examples();
    let out = env.run(&["info", "dev"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "bottle dev-<random> — agent `dev` in bottle `dev`",
            "- host: api.github.com",
            "credentials egress injects",
        ],
    );
    no_secrets(&out);
    let out = env.run(&["info", "ghost"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["no agent named `ghost`"]);
}

#[test]
fn a_bad_manifest_fails_the_dry_run_naming_the_file() {
    let env = Env::examples();
    let dev = env.bottles().join("dev.md");
    let text = std::fs::read_to_string(&dev).expect("read");
    std::fs::write(
        &dev,
        text.replacen("extends: base\n", "extends: base\nsupervize: true\n", 1),
    )
    .expect("write");
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[&dev.display().to_string(), "unknown field `supervize`"],
    );
    assert!(!out.stdout.contains("dry run"), "{out:?}");

    // A bad route, and an unknown template, name the bottle file too.
    let env = Env::examples();
    let base = env.bottles().join("base.md");
    let text = std::fs::read_to_string(&base).expect("read");
    std::fs::write(
        &base,
        text.replacen("template: claude", "template: gemini", 1),
    )
    .expect("write");
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            &env.bottles().join("dev.md").display().to_string(),
            "unknown agent_provider template `gemini`",
            "built-ins are claude, codex, pi",
        ],
    );
}

#[test]
fn remote_control_is_refused_plainly() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--dry-run", "--remote-control"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["--remote-control is not supported yet"]);
}

#[test]
fn cwd_copy_refuses_a_folder_holding_the_home() {
    let mut env = Env::examples();
    // Run from HOME itself: a workspace copy would carry ~/.bot-bottle.
    env.cwd = env.home.clone();
    let out = env.run(&["start", "dev", "--dry-run", "--cwd"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["--cwd: refusing to copy", ".bot-bottle"]);
    // From a project folder it is planned.
    let mut env = Env::examples();
    env.cwd = env.home.parent().expect("tmp").join("cwd");
    let out = env.run(&["start", "dev", "--dry-run", "--cwd"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &["workspace:", "copied to /home/node/workspace"],
    );
}

#[test]
fn run_from_home_the_trusted_bottles_folder_gets_no_warning() {
    let mut env = Env::examples();
    env.cwd = env.home.clone();
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains("ignoring"), "{out:?}");
}

#[test]
fn dry_run_shows_the_command_given_after_dashes() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--dry-run", "--", "make", "test"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["agent runs: make test"]);
}

// ---------------------------------------------------------------------------
// Issue 12: manifests are never misread silently
// ---------------------------------------------------------------------------

#[test]
fn duplicate_keys_are_refused_at_every_level_with_file_line_and_key() {
    let env = Env::empty();
    env.agent("a", "b");
    let file = env.bottle("b", "env:\n  TZ: UTC\n  TZ: Europe/Berlin\n");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            &format!("{}:4:", file.display()),
            "duplicate key `TZ`",
            "line 3",
        ],
    );
    contains_none(&out.stderr, &["Europe/Berlin"]);

    // Two `app:` repos: the second would silently point `app` elsewhere.
    env.bottle(
        "b",
        "git-gate:\n  repos:\n    app:\n      url: git@github.com:example/app.git\n      key: {provider: static, path: ~/k}\n      host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n    app:\n      url: git@evil.example:x/app.git\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &[":8:", "duplicate key `app`"]);
    contains_none(&out.stdout, &["evil.example"]);

    // Inside a list item, in an agent file too.
    env.bottle(
        "b",
        "egress:\n  routes:\n    - host: a.example\n      host: b.example\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &[":5:", "duplicate key `host`"]);
    write(
        &env.agents().join("a.md"),
        "---\nbottle: b\nbottle: c\n---\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["a.md:3:", "duplicate key `bottle`"]);
}

#[test]
fn type_errors_never_echo_the_value() {
    let env = Env::empty();
    env.agent("a", "b");
    for (yaml, key, expected) in [
        (
            "supervise: SEEDSECRETux9999\n",
            "supervise",
            "expected a boolean",
        ),
        (
            "agent_provider:\n  template: codex\n  forward_host_credentials: ghp_SEEDSECRETux9999aaaabbbbccccddddeeee\n",
            "forward_host_credentials",
            "expected a boolean",
        ),
        ("egress:\n  log: SEEDSECRETux9999\n", "log", "expected"),
        (
            "egress:\n  routes:\n    - host: a.example\n      auth: {scheme: Bearer, token_ref: [SEEDSECRETux9999]}\n",
            "token_ref",
            "expected a string",
        ),
        (
            "git-gate:\n  repos:\n    app:\n      key: {provider: SEEDSECRETux9999}\n",
            "provider",
            "expected",
        ),
    ] {
        env.bottle("b", yaml);
        let out = env.run(&["start", "a", "--dry-run"]);
        assert_eq!(out.code, Some(64), "{yaml}\n{out:?}");
        contains_all(&out.stderr, &[key, expected]);
        contains_none(&out.all(), &["SEEDSECRET"]);
    }
}

#[test]
fn a_secret_pasted_where_a_name_belongs_is_never_printed() {
    let env = Env::empty();
    env.agent("a", "b");
    // A GitHub token pasted into token_ref: it is a literal secret (a
    // warning), never taken for a variable name and never printed.
    env.bottle(
        "b",
        "egress:\n  routes:\n    - host: api.github.com\n      auth: {scheme: Bearer, token_ref: ghp_SEEDSECRETux9999aaaabbbbccccddddeeee}\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "warning: egress.routes[api.github.com].auth.token_ref",
            "a secret written into the manifest",
            "<- egress.routes[api.github.com].auth.token_ref = literal (40 chars)",
        ],
    );
    contains_none(&out.all(), &["SEEDSECRET"]);

    // A forge token pasted into forge_token_env (a value, not a name).
    env.bottle(
        "b",
        "git-gate:\n  repos:\n    infra:\n      url: git@gitea.example.org:ops/infra.git\n      host_key: \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n      key: {provider: gitea, forge_token_env: glpat-SEEDSECRETux9999abcd}\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "warning: git-gate.repos.infra.key.forge_token_env",
            "a secret written into the manifest",
        ],
    );
    contains_none(&out.all(), &["SEEDSECRET"]);
}

#[test]
fn dry_run_checks_every_host_variable_and_fails_like_a_start() {
    let env = Env::empty();
    env.bottle("b", "env:\n  X: ${BB_UNSET_VAR}\n  TZ: UTC\n");
    env.agent("a", "b");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.all(),
        &[
            "host variables read at launch (values never shown):",
            "BB_UNSET_VAR: NOT SET (read by env.X)",
            "`X` reads host variable `BB_UNSET_VAR`, which is not set",
        ],
    );
    contains_none(&out.stdout, &["dry run: nothing was started"]);
    let out = env.run_env(
        &["start", "a", "--dry-run"],
        &[("BB_UNSET_VAR", "v4lue-SEEDSECRET")],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["BB_UNSET_VAR: set (read by env.X)"]);
    contains_none(&out.all(), &["v4lue-SEEDSECRET"]);

    // The README example with both of its variables unset.
    let env = Env::examples();
    let out = env.run_with(
        &["start", "dev", "--dry-run"],
        &[],
        &["GITHUB_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"],
    );
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.all(),
        &[
            "CLAUDE_CODE_OAUTH_TOKEN: NOT SET (read by agent_provider.auth_token)",
            "GITHUB_TOKEN: NOT SET (read by env.GITHUB_TOKEN)",
        ],
    );
    // A set but empty credential fails too, as at launch.
    let out = env.run_env(&["start", "dev", "--dry-run"], &[("GITHUB_TOKEN", "")]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.all(), &["GITHUB_TOKEN: set, empty", "is empty"]);
}

#[test]
fn a_prompted_value_fails_a_dry_run_without_a_terminal_as_a_start_would() {
    let env = Env::empty();
    env.bottle("b", "env:\n  PW: \"?Deploy password\"\n");
    env.agent("a", "b");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.all(),
        &["PW <- asked at launch: Deploy password", "no terminal"],
    );
}

#[test]
fn the_dry_run_variable_is_checked() {
    let env = Env::examples();
    let out = env.run_env(&["start", "dev", "--yes"], &[("BOT_BOTTLE_DRY_RUN", "1")]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["dry run: nothing was started"]);
    let out = env.run_env(
        &["start", "dev", "--yes"],
        &[("BOT_BOTTLE_DRY_RUN", "maybe")],
    );
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["BOT_BOTTLE_DRY_RUN", "1"]);
    // 0 is a real start (here: no docker, a runtime failure).
    let out = env.run_env(&["start", "dev", "--yes"], &[("BOT_BOTTLE_DRY_RUN", "0")]);
    assert_eq!(out.code, Some(1), "{out:?}");
    contains_none(&out.stdout, &["dry run"]);
}

#[test]
fn misnamed_files_get_a_warning_naming_them() {
    let env = Env::examples();
    write(&env.agents().join("MyAgent.md"), "---\nbottle: dev\n---\n");
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            "warning:",
            &env.agents().join("MyAgent.md").display().to_string(),
            "[a-z][a-z0-9-]*.md",
        ],
    );

    let env = Env::empty();
    env.agent("a", "dev");
    write(&env.bottles().join("Dev.md"), "---\n---\n");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            "no bottle named `dev`",
            &env.bottles().join("Dev.md").display().to_string(),
            "lower-case",
        ],
    );
}

#[test]
fn a_bottle_linking_out_of_the_config_folder_is_refused() {
    let env = Env::examples();
    let target = env.outside().join("dev.md");
    write(
        &target,
        "---\negress:\n  routes:\n    - host: attacker.example\n---\n",
    );
    let link = env.bottles().join("dev.md");
    std::fs::remove_file(&link).expect("rm");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            &link.display().to_string(),
            &target.display().to_string(),
            "outside",
        ],
    );
    contains_none(&out.stdout, &["attacker.example"]);

    // An agent may link anywhere: "manifests read" shows where it points.
    let env = Env::examples();
    let target = env.outside().join("dev.md");
    let link = env.agents().join("dev.md");
    std::fs::create_dir_all(env.outside()).expect("mkdir");
    std::fs::rename(&link, &target).expect("move");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[&format!("{} -> {}", link.display(), target.display())],
    );
}

#[test]
fn a_byte_order_mark_is_ignored_and_bad_bytes_are_placed() {
    let env = Env::empty();
    env.agent("a", "b");
    write(
        &env.bottles().join("b.md"),
        b"\xef\xbb\xbf---\nsupervise: false\n---\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["sidecar daemons: egress\n"]);

    write(
        &env.bottles().join("b.md"),
        b"---\nenv:\n  TZ: caf\xe9\n---\n",
    );
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["b.md:3:", "column 10", "not UTF-8"]);
    contains_none(&out.stderr, &["stream did not contain valid UTF-8"]);
}

#[test]
fn oversized_manifests_are_refused_quickly() {
    let env = Env::empty();
    env.agent("a", "b");
    let mut text = String::from("---\nenv:\n");
    for i in 0..150_000 {
        let _ = writeln!(text, "  V{i}: x");
    }
    text.push_str("---\n");
    assert!(text.len() > 1_000_000);
    write(&env.bottles().join("b.md"), &text);
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["b.md", "KiB"]);

    // A prompt over its limit, in a file under the file limit.
    let prompt = "x".repeat(300 * 1024);
    write(
        &env.agents().join("a.md"),
        format!("---\nbottle: b\n---\n{prompt}\n"),
    );
    env.bottle("b", "supervise: true\n");
    let out = env.run(&["start", "a", "--dry-run"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["a.md", "prompt", "KiB"]);
}

#[test]
fn exit_codes_follow_one_table() {
    let env = Env::empty();
    // Usage and configuration: 64.
    let out = env.run(&["init", "--name", "Bad_Name", "--bottle", "y"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    let out = env.run(&["start", "--no-such-flag"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--yes", "--backend", "podman"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    let out = env.run_with(&["start", "dev", "--yes"], &[], &["GITHUB_TOKEN"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["GITHUB_TOKEN", "not set"]);
    // Runtime: 1 (the engine does not answer).
    let out = env.run(&["start", "dev", "--yes"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    // The table is in --help.
    let out = env.run(&["--help"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &["Exit status:", "64", "130", "143", "start -- CMD"],
    );
}

#[test]
fn start_without_a_terminal_or_yes_stops_before_the_plan() {
    let env = Env::examples();
    let out = env.run(&["start", "dev"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["pass --yes", "--dry-run"]);
    contains_none(&out.all(), &["egress allowlist", "agent environment"]);
}

#[test]
fn edit_without_an_editor_or_terminal_does_not_hang() {
    let env = Env::examples();
    let out = env.run(&["edit", "dev"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["VISUAL", "EDITOR", "no terminal"]);
    // With an editor named, it runs (here `true`, which changes nothing).
    let out = env.run_env(&["edit", "dev"], &[("EDITOR", "true")]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["is valid"]);
}

#[test]
fn doctor_names_dynamic_binaries_plainly() {
    let env = Env::examples();
    let bin = env.outside().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    // A normal (dynamically linked) build, like `cargo build --release`.
    let dynamic = std::env::current_exe().expect("test binary");
    std::fs::copy(&dynamic, bin.join("bb-egress")).expect("copy");
    let out = env.run_env(
        &["doctor"],
        &[("BOT_BOTTLE_BUNDLE_BIN_DIR", bin.to_str().expect("utf-8"))],
    );
    contains_all(
        &out.stdout,
        &[
            &format!("{} is dynamically linked", bin.join("bb-egress").display()),
            &format!("{} is missing", bin.join("bb-init").display()),
            "README.md",
        ],
    );
    contains_none(
        &out.stdout,
        &["missing or not static", "CARGO_PROFILE_RELEASE_DEBUG"],
    );
}
