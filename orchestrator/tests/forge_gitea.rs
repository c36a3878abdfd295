//! Gitea deploy keys against a real HTTPS server of the test's own on
//! 127.0.0.1 that speaks Gitea's documented deploy-key API
//! (`POST /repos/{owner}/{repo}/keys` → 201 with the key's `id`,
//! `DELETE /repos/{owner}/{repo}/keys/{id}` → 204, `Authorization: token …`),
//! with a test CA: a key is minted per launch into the 0600 state folder,
//! revoked when the launch's guard drops, and the forge token never appears
//! in an error.

#![allow(clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb_testkit::http1::{Framing, read_body, read_head};
use bot_bottle::env::NoTty;
use bot_bottle::forge::{DeployKeys, KeyRecord, RECORD_FILE};
use bot_bottle::manifest::Loader;
use bot_bottle::paths::Paths;
use bot_bottle::plan::{LaunchPlan, PlanOptions, PushKey};

const TOKEN: &str = "gitea-TESTtoken-0123456789abcdef";
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// A deploy key as the fake forge stores it.
#[derive(Debug, Clone)]
struct Stored {
    repo: String,
    title: String,
    key: String,
    read_only: bool,
}

#[derive(Default)]
struct Forge {
    keys: BTreeMap<u64, Stored>,
    next: u64,
    /// `(method, path, authorized)` of every request.
    seen: Vec<(String, String, bool)>,
}

/// A Gitea deploy-key API on 127.0.0.1 over TLS; repositories in `repos`
/// exist, any other is a 404 as Gitea answers.
struct FakeGitea {
    port: u16,
    state: Arc<Mutex<Forge>>,
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

fn respond(stream: &mut impl Write, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn handle(stream: impl Read + Write, state: &Mutex<Forge>, repos: &[&str]) {
    let mut reader = BufReader::new(stream);
    let Ok(Some(head)) = read_head(&mut reader) else {
        return;
    };
    let framing = head.request_framing().unwrap_or(Framing::Empty);
    let mut body = Vec::new();
    let _ = read_body(&mut reader, framing, 64 * 1024, &mut body);
    let (method, path) = head.request_line().map_or(("", ""), |(m, p)| (m, p));
    let (method, path) = (method.to_owned(), path.to_owned());
    let authorized = head.value("authorization") == Some(format!("token {TOKEN}").as_bytes());
    let mut st = state.lock().expect("lock");
    st.seen.push((method.clone(), path.clone(), authorized));
    let out = reader.get_mut();
    if !authorized {
        return respond(
            out,
            "401 Unauthorized",
            r#"{"message":"token is required"}"#,
        );
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["api", "v1", "repos", owner, repo, "keys"]) => {
            let full = format!("{owner}/{repo}");
            if !repos.contains(&full.as_str()) {
                return respond(out, "404 Not Found", r#"{"message":"GetRepositoryByName"}"#);
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return respond(out, "422 Unprocessable Entity", r#"{"message":"bad json"}"#);
            };
            let key = v["key"].as_str().unwrap_or_default().to_owned();
            if ssh_key::PublicKey::from_openssh(&key).is_err() {
                return respond(
                    out,
                    "422 Unprocessable Entity",
                    r#"{"message":"invalid key"}"#,
                );
            }
            st.next += 1;
            let id = st.next;
            let stored = Stored {
                repo: full,
                title: v["title"].as_str().unwrap_or_default().to_owned(),
                key: key.clone(),
                read_only: v["read_only"].as_bool().unwrap_or(true),
            };
            st.keys.insert(id, stored.clone());
            let answer = serde_json::json!({
                "id": id, "key": key, "url": format!("https://forge/api/v1/repos/{}/keys/{id}", stored.repo),
                "title": stored.title, "fingerprint": "SHA256:x", "created_at": "2026-01-01T00:00:00Z",
                "read_only": stored.read_only,
            });
            respond(out, "201 Created", &answer.to_string());
        }
        ("DELETE", ["api", "v1", "repos", owner, repo, "keys", id]) => {
            let full = format!("{owner}/{repo}");
            let id: u64 = id.parse().unwrap_or(0);
            if st.keys.get(&id).is_some_and(|k| k.repo == full) {
                st.keys.remove(&id);
                respond(out, "204 No Content", "");
            } else {
                respond(out, "404 Not Found", r#"{"message":"key not found"}"#);
            }
        }
        _ => respond(out, "404 Not Found", r#"{"message":"not found"}"#),
    }
}

impl FakeGitea {
    fn start(repos: &'static [&'static str]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = bb_testkit::mint_test_pki(dir.path(), &["127.0.0.1"]).expect("pki");
        let config = Arc::new(
            bb_testkit::tls::server_config(&pki.server_cert, &pki.server_key).expect("tls"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(Forge::default()));
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                let (config, st) = (Arc::clone(&config), Arc::clone(&st));
                std::thread::spawn(move || {
                    let Ok(tls) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    handle(rustls::StreamOwned::new(tls, tcp), &st, repos);
                });
            }
        });
        Self {
            port,
            state,
            ca: pki.ca_cert,
            _dir: dir,
        }
    }

    fn api(&self) -> String {
        format!("https://127.0.0.1:{}/api/v1", self.port)
    }

    fn keys(&self) -> BTreeMap<u64, Stored> {
        self.state.lock().expect("lock").keys.clone()
    }

    fn seen(&self) -> Vec<(String, String, bool)> {
        self.state.lock().expect("lock").seen.clone()
    }
}

/// An operator home with agent `a` in a bottle with these repos, planned.
struct Home {
    _tmp: tempfile::TempDir,
    paths: Paths,
}

impl Home {
    fn new(repos_yaml: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let home = tmp.path().join("home");
        let cfg = home.join(".bot-bottle");
        std::fs::create_dir_all(cfg.join("bottles")).expect("mkdir");
        std::fs::create_dir_all(cfg.join("agents")).expect("mkdir");
        std::fs::write(
            cfg.join("bottles").join("b.md"),
            format!("---\ngit-gate:\n  repos:\n{repos_yaml}---\n"),
        )
        .expect("bottle");
        std::fs::write(cfg.join("agents").join("a.md"), "---\nbottle: b\n---\n").expect("agent");
        let paths = Paths::new(&home, tmp.path());
        Self { _tmp: tmp, paths }
    }

    fn plan(&self) -> LaunchPlan {
        plan_in(&self.paths)
    }
}

/// Agent `a` of the home at `paths`, planned as bottle `forge-test`, its
/// state folder created.
fn plan_in(paths: &Paths) -> LaunchPlan {
    let loaded = Loader::new(paths.clone()).load("a").expect("loads");
    let provider =
        bot_bottle::provider::find(paths, &loaded.bottle.provider.template).expect("provider");
    let plan = LaunchPlan::new(
        paths,
        &loaded,
        &provider,
        &PlanOptions {
            slug: Some("forge-test".into()),
            ..PlanOptions::default()
        },
    )
    .expect("plans");
    plan.state.create().expect("state folder");
    plan
}

fn repo(name: &str, path: &str, api: &str) -> String {
    format!(
        "    {name}:\n      url: git@127.0.0.1:{path}.git\n      host_key: \"{HOST_KEY}\"\n      key:\n        provider: gitea\n        forge_token_env: FORGE_TOKEN\n        api_url: {api}\n"
    )
}

fn host(token: &'static str) -> impl Fn(&str) -> Option<String> {
    move |v: &str| (v == "FORGE_TOKEN").then(|| token.to_owned())
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn a_deploy_key_is_minted_at_launch_and_revoked_at_teardown() {
    let forge = FakeGitea::start(&["ops/infra"]);
    let home = Home::new(&repo("infra", "ops/infra", &forge.api()));
    let plan = home.plan();
    let up = &plan.git_upstreams[0];
    let PushKey::Gitea { owner, name, .. } = &up.key else {
        panic!("a gitea key: {:?}", up.key)
    };
    assert_eq!((owner.as_str(), name.as_str()), ("ops", "infra"));
    let key_file = up.key_file().to_path_buf();
    assert!(
        key_file.starts_with(&plan.state.root),
        "{}",
        key_file.display()
    );
    let secrets = plan
        .resolve_secrets(&host(TOKEN), &mut NoTty)
        .expect("secrets");

    let keys = DeployKeys::mint(&plan, &secrets, Some(&forge.ca)).expect("minted");
    let stored = forge.keys();
    assert_eq!(stored.len(), 1, "{stored:?}");
    // Recorded as minted, and not offered to `cleanup` while its minting
    // process (this one) lives.
    let record = plan.state.root.join(RECORD_FILE);
    assert_eq!(mode(&record), 0o600);
    assert_eq!(
        KeyRecord::read(&plan.state.root)
            .expect("readable")
            .expect("a record")
            .keys
            .len(),
        1
    );
    assert!(bot_bottle::forge::orphaned(&home.paths).is_empty());
    let (id, k) = stored.iter().next().expect("one key");
    assert_eq!(keys.keys()[0].id, *id);
    assert_eq!(k.repo, "ops/infra");
    assert_eq!(k.title, "bot-bottle forge-test infra");
    assert!(!k.read_only, "the gate pushes with it");
    // The private key is in the state folder, 0600, and is the pair of the
    // public key the forge holds.
    assert_eq!(mode(&key_file), 0o600);
    let private =
        ssh_key::PrivateKey::from_openssh(std::fs::read_to_string(&key_file).expect("read"))
            .expect("an OpenSSH private key");
    let public = ssh_key::PublicKey::from_openssh(&k.key).expect("public");
    assert_eq!(private.public_key().key_data(), public.key_data());
    assert_eq!(private.algorithm(), ssh_key::Algorithm::Ed25519);

    // Teardown: the guard drops and the key is gone from the forge.
    drop(keys);
    assert!(forge.keys().is_empty(), "{:?}", forge.keys());
    assert!(!key_file.exists(), "the revoked key's file is removed");
    assert!(!record.exists(), "nothing is left to revoke");
    let seen = forge.seen();
    assert_eq!(
        seen.iter()
            .map(|(m, p, a)| (m.as_str(), p.as_str(), *a))
            .collect::<Vec<_>>(),
        [
            ("POST", "/api/v1/repos/ops/infra/keys", true),
            (
                "DELETE",
                &*format!("/api/v1/repos/ops/infra/keys/{id}"),
                true
            ),
        ]
    );
}

#[test]
fn a_refused_token_is_an_error_that_never_shows_it() {
    const WRONG: &str = "gitea-WRONGtoken-aaaaaaaaaaaaaaaa";
    let forge = FakeGitea::start(&["ops/infra"]);
    let home = Home::new(&repo("infra", "ops/infra", &forge.api()));
    let plan = home.plan();
    let secrets = plan
        .resolve_secrets(&host(WRONG), &mut NoTty)
        .expect("secrets");
    let e = DeployKeys::mint(&plan, &secrets, Some(&forge.ca)).expect_err("401");
    let text = e.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("forge token valid"), "{text}");
    assert!(
        !text.contains(WRONG) && !format!("{e:?}").contains(WRONG),
        "{text}"
    );
    assert!(forge.keys().is_empty());
    assert!(
        !plan.git_upstreams[0].key_file().exists(),
        "no key file left"
    );
}

#[test]
fn a_failure_half_way_revokes_the_keys_already_minted() {
    let forge = FakeGitea::start(&["ops/infra"]);
    let api = forge.api();
    let home = Home::new(&format!(
        "{}{}",
        repo("infra", "ops/infra", &api),
        repo("zz-missing", "ops/missing", &api)
    ));
    let plan = home.plan();
    let secrets = plan
        .resolve_secrets(&host(TOKEN), &mut NoTty)
        .expect("secrets");
    let e = DeployKeys::mint(&plan, &secrets, Some(&forge.ca)).expect_err("404");
    assert!(e.to_string().contains("404"), "{e}");
    assert!(
        forge.keys().is_empty(),
        "the first key was revoked: {:?}",
        forge.keys()
    );
    let posts = forge.seen().iter().filter(|(m, ..)| m == "POST").count();
    assert_eq!(posts, 2);
}

#[test]
fn an_untrusted_forge_certificate_gets_no_token() {
    let forge = FakeGitea::start(&["ops/infra"]);
    let home = Home::new(&repo("infra", "ops/infra", &forge.api()));
    let plan = home.plan();
    let secrets = plan
        .resolve_secrets(&host(TOKEN), &mut NoTty)
        .expect("secrets");
    // Without the test CA the handshake fails before any request is sent.
    let e = DeployKeys::mint(&plan, &secrets, None).expect_err("untrusted");
    assert!(!e.to_string().contains(TOKEN), "{e}");
    assert!(forge.seen().is_empty(), "{:?}", forge.seen());
}

#[test]
fn the_api_url_defaults_to_the_repos_host() {
    let home = Home::new(
        "    infra:\n      url: git@gitea.example.org:ops/infra.git\n      host_key: \"gitea.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n      key: {provider: gitea, forge_token_env: FORGE_TOKEN}\n",
    );
    let plan = home.plan();
    let PushKey::Gitea { api_url, .. } = &plan.git_upstreams[0].key else {
        panic!("gitea")
    };
    assert_eq!(api_url, "https://gitea.example.org/api/v1");
    // Plain http to a real host would send the token in the clear.
    let home = Home::new(&repo(
        "infra",
        "ops/infra",
        "http://gitea.example.org/api/v1",
    ));
    let e = Loader::new(home.paths.clone())
        .load("a")
        .expect_err("refused");
    assert!(e.to_string().contains("in the clear"), "{e}");
}

/// The home and forge CA of the child that mints and is killed (this test
/// binary run again, on `mint_then_wait_to_be_killed` alone).
const CHILD_HOME: &str = "FORGE_TEST_CHILD_HOME";
const CHILD_CA: &str = "FORGE_TEST_CHILD_CA";

/// The launching side of `a_killed_launchs_deploy_key_is_revoked_by_cleanup`:
/// mints the keys as a launch does, then waits for its `kill -9`.
#[test]
#[ignore = "run in a child process by a_killed_launchs_deploy_key_is_revoked_by_cleanup"]
fn mint_then_wait_to_be_killed() {
    let (Some(home), Some(ca)) = (std::env::var_os(CHILD_HOME), std::env::var_os(CHILD_CA)) else {
        return;
    };
    let paths = Paths::new(&home, &home);
    let plan = plan_in(&paths);
    let secrets = plan
        .resolve_secrets(&host(TOKEN), &mut NoTty)
        .expect("secrets");
    let _keys = DeployKeys::mint(&plan, &secrets, Some(Path::new(&ca))).expect("minted");
    std::thread::sleep(Duration::from_mins(2));
}

fn cleanup(home: &Home, forge: &FakeGitea, token: Option<&str>) -> (Option<i32>, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
    c.args(["cleanup", "--yes"])
        .env_clear()
        .env("HOME", home.paths.home())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BOT_BOTTLE_UPSTREAM_CA", &forge.ca)
        // No engine: the keys are revoked all the same.
        .env("BOT_BOTTLE_DOCKER", "/nonexistent/docker")
        .current_dir(home.paths.home())
        .stdin(Stdio::null());
    if let Some(t) = token {
        c.env("FORGE_TOKEN", t);
    }
    let out = c.output().expect("runs bot-bottle");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(TOKEN), "the token was printed: {text}");
    (out.status.code(), text)
}

#[test]
fn a_killed_launchs_deploy_key_is_revoked_by_cleanup() {
    let forge = FakeGitea::start(&["ops/infra"]);
    let home = Home::new(&repo("infra", "ops/infra", &forge.api()));
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "mint_then_wait_to_be_killed",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(CHILD_HOME, home.paths.home())
        .env(CHILD_CA, &forge.ca)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("child");
    let state = home.paths.state_root().join("forge-test");
    let deadline = Instant::now() + Duration::from_mins(1);
    while forge.keys().is_empty() || !state.join(RECORD_FILE).exists() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the minting child ended"
        );
        assert!(Instant::now() < deadline, "no key was minted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // kill -9: nothing of the launch's teardown runs.
    child.kill().expect("kill");
    let _ = child.wait();
    let (id, stored) = forge.keys().into_iter().next().expect("a key on the forge");
    assert_eq!(stored.repo, "ops/infra");

    // The record: 0600, the key's id, API base and repository, no token.
    let file = state.join(RECORD_FILE);
    assert_eq!(mode(&file), 0o600);
    let text = std::fs::read_to_string(&file).expect("record");
    assert!(!text.contains(TOKEN), "{text}");
    let record: KeyRecord = serde_json::from_str(&text).expect("a record");
    assert_eq!(record.bottle, "b");
    assert_eq!(record.keys.len(), 1);
    let k = &record.keys[0];
    assert_eq!(
        (
            k.id,
            k.repo.as_str(),
            k.owner.as_str(),
            k.name.as_str(),
            k.api_url.as_str()
        ),
        (id, "infra", "ops", "infra", forge.api().as_str())
    );
    assert_eq!(
        bot_bottle::forge::orphaned(&home.paths)
            .iter()
            .map(|(slug, k)| (slug.as_str(), k.id))
            .collect::<Vec<_>>(),
        [("forge-test", id)]
    );

    // The token's source (the host's FORGE_TOKEN, as the manifest names) is
    // not set: nothing is revoked, and the record stays for another try.
    let (code, out) = cleanup(&home, &forge, None);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("deploy key {id} of ops/infra")) && out.contains("FORGE_TOKEN"),
        "{out}"
    );
    assert_eq!(forge.keys().len(), 1);
    assert!(file.exists(), "the record is kept");

    // A manifest whose repo now names another forge: the token is not
    // sent there, nor to the recorded one.
    let cfg = home.paths.home().join(".bot-bottle/bottles/b.md");
    let original = std::fs::read_to_string(&cfg).expect("bottle");
    std::fs::write(
        &cfg,
        original.replace(&forge.api(), "https://127.0.0.1:9/api/v1"),
    )
    .expect("rewrite");
    let (code, out) = cleanup(&home, &forge, Some(TOKEN));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not sent elsewhere"), "{out}");
    assert_eq!(forge.keys().len(), 1);
    std::fs::write(&cfg, original).expect("restore");

    // With the token: revoked, and its record is gone.
    let (code, out) = cleanup(&home, &forge, Some(TOKEN));
    assert!(out.contains("revoked 1 of 1 deploy key(s)"), "{out}");
    assert!(forge.keys().is_empty(), "{:?}", forge.keys());
    assert!(!file.exists(), "{out}");
    // The engine did not answer, which cleanup says (exit 1).
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("could not be listed"), "{out}");
    let deletes: Vec<_> = forge
        .seen()
        .into_iter()
        .filter(|(m, ..)| m == "DELETE")
        .collect();
    assert_eq!(
        deletes,
        [(
            "DELETE".to_owned(),
            format!("/api/v1/repos/ops/infra/keys/{id}"),
            true
        )]
    );
}
