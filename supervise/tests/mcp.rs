//! The real `bb-supervise` binary driven as an MCP client drives it: raw
//! JSON-RPC over HTTP/1.1 on 127.0.0.1 (`initialize`, `tools/list`,
//! `tools/call`), with the queue read back through `bb_supervise::Queue`
//! and decisions written the way the operator side writes them. The
//! allowlist comes from a real `bb-egress` server in the same process.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::many_single_char_names,
    clippy::needless_pass_by_value,
    reason = "tests"
)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bb_supervise::{Queue, Response, Status, Tool};
use serde_json::{Value, json};

const LIVE: &str = "routes:\n  - host: pypi.org\n";

/// A running `bb-supervise` with its own state folder.
struct Server {
    child: Child,
    addr: SocketAddr,
    state: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(extra: &[&str]) -> Server {
    start_with(extra, Some(LIVE))
}

fn start_with(extra: &[&str], routes: Option<&str>) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("bottle-1");
    std::fs::create_dir(&state).unwrap();
    if let Some(routes) = routes {
        std::fs::write(state.join("routes.yaml"), routes).unwrap();
    }
    let addr = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_bb-supervise"))
        .arg("--state")
        .arg(&state)
        .args(["--listen", &addr.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "bb-supervise did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        addr,
        state,
        _tmp: tmp,
    }
}

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A POST to the server; `headers` replace the defaults of the same name.
fn post(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all: Vec<(String, String)> = vec![
        ("Host".into(), format!("127.0.0.1:{}", addr.port())),
        ("Content-Type".into(), "application/json".into()),
        (
            "Accept".into(),
            "application/json, text/event-stream".into(),
        ),
        ("MCP-Protocol-Version".into(), "2025-06-18".into()),
    ];
    for (name, value) in headers {
        all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        all.push(((*name).into(), (*value).into()));
    }
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in &all {
        let _ = write!(req, "{n}: {v}\r\n");
    }
    req.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(70)))
        .unwrap();
    stream.write_all(req.as_bytes()).unwrap();
    // A body over the bound may be refused before it is all sent.
    let _ = stream.write_all(body.as_bytes());
    read_answer(stream)
}

fn read_answer(stream: TcpStream) -> Answer {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        if n.eq_ignore_ascii_case("content-length") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
        if n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Answer {
        status,
        body: String::from_utf8(body).unwrap(),
    }
}

fn rpc(addr: SocketAddr, id: u64, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    let answer = post(addr, "/mcp", &body, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let v = answer.json();
    assert_eq!(v["id"], id, "{v}");
    v
}

fn initialize(addr: SocketAddr) -> Value {
    let v = rpc(
        addr,
        1,
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}
        }),
    );
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let answer = post(addr, "/mcp", &note, &[]);
    assert!(answer.status == 202 || answer.status == 200, "{answer:?}");
    v
}

/// `tools/call`; returns (isError, text).
fn call(addr: SocketAddr, name: &str, args: Value) -> (bool, String) {
    let v = rpc(
        addr,
        7,
        "tools/call",
        json!({"name": name, "arguments": args}),
    );
    let result = &v["result"];
    assert!(result.is_object(), "{v}");
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (result["isError"].as_bool().unwrap_or(false), text)
}

fn queue(state: &Path) -> Queue {
    Queue::open(state.join("queue")).unwrap()
}

fn pending(state: &Path) -> Vec<bb_supervise::Proposal> {
    let p = queue(state).pending();
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    p.proposals
}

fn proposal_id(text: &str) -> String {
    text.strip_prefix("Proposal ")
        .and_then(|t| t.split(' ').next())
        .unwrap_or_else(|| panic!("no id in {text}"))
        .to_owned()
}

#[test]
fn a_session_initializes_and_lists_every_tool_with_a_schema() {
    let s = start(&[]);
    let init = initialize(s.addr);
    let result = &init["result"];
    assert_eq!(result["serverInfo"]["name"], "bb-supervise", "{init}");
    assert!(result["capabilities"]["tools"].is_object(), "{init}");
    assert!(
        result["instructions"]
            .as_str()
            .unwrap()
            .contains("list-egress-routes"),
        "{init}"
    );
    let list = rpc(s.addr, 2, "tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "allow",
            "capability-block",
            "egress-block",
            "list-egress-routes",
            "proposal-status"
        ]
    );
    for t in tools {
        assert!(t["description"].as_str().unwrap().len() > 80, "{t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }
    let schema = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap()["inputSchema"].clone();
    assert_eq!(
        schema("allow")["required"],
        json!(["routes_yaml", "justification"])
    );
    assert_eq!(
        schema("egress-block")["required"],
        json!(["routes_yaml", "justification"])
    );
    assert_eq!(
        schema("capability-block")["required"],
        json!(["dockerfile", "justification"])
    );
    assert_eq!(schema("proposal-status")["required"], json!(["id"]));
    assert_eq!(schema("allow")["additionalProperties"], false);
}

#[test]
fn allow_queues_a_valid_file_and_says_what_it_adds() {
    let s = start(&[]);
    initialize(s.addr);
    let yaml = "routes:\n  - host: pypi.org\n  - host: files.pythonhosted.org\n    auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_X\n";
    let (err, text) = call(
        s.addr,
        "allow",
        json!({"routes_yaml": yaml, "justification": "pip needs the wheel host"}),
    );
    assert!(!err, "{text}");
    assert!(text.contains("+ new host files.pythonhosted.org"), "{text}");
    assert!(
        text.contains("injects `Bearer` credentials from EGRESS_TOKEN_X"),
        "{text}"
    );
    let queued = pending(&s.state);
    assert_eq!(queued.len(), 1);
    let p = &queued[0];
    assert_eq!(p.id.as_str(), proposal_id(&text));
    assert_eq!(p.tool, Tool::Allow);
    assert_eq!(p.bottle_slug, "bottle-1");
    assert_eq!(p.proposed_file, yaml);
    assert_eq!(p.justification, "pip needs the wheel host");
    assert_eq!(
        p.current_file_hash,
        bb_supervise::sha256_hex(LIVE.as_bytes())
    );
}

#[test]
fn an_invalid_routes_file_is_a_tool_error_naming_route_host_key_and_queues_nothing() {
    let s = start(&[]);
    initialize(s.addr);
    for (tool, yaml, wants) in [
        (
            "allow",
            "routes:\n  - host: pypi.org\n  - host: evil.example\n    matches:\n      - methods: []\n",
            &["routes[1]", "evil.example", "matches[0].methods"][..],
        ),
        (
            "egress-block",
            "routes:\n  - host: a.example\n    auth_scheme: Bearer\n",
            &["routes[0]", "a.example", "token_env"][..],
        ),
        (
            "allow",
            "routes:\n  - host: a.example\n    dlp:\n      outbound_detectors: [telepathy]\n",
            &["routes[0]", "a.example", "dlp.outbound_detectors"][..],
        ),
        ("allow", LIVE, &["is the live one"][..]),
        ("allow", "   ", &["`routes_yaml` is empty"][..]),
    ] {
        let (err, text) = call(
            s.addr,
            tool,
            json!({"routes_yaml": yaml, "justification": "j"}),
        );
        assert!(err, "{tool} {yaml:?}: {text}");
        assert!(text.contains("nothing was queued"), "{text}");
        for w in wants {
            assert!(text.contains(w), "{yaml:?}: wanted {w:?} in {text}");
        }
    }
    // Arguments that do not fit the schema never reach a tool.
    for args in [
        json!({"routes_yaml": LIVE}),
        json!({"routes_yaml": 5, "justification": "j"}),
        json!({"routes_yaml": "routes: []", "justification": "j", "apply_now": true}),
    ] {
        let v = rpc(
            s.addr,
            9,
            "tools/call",
            json!({"name": "allow", "arguments": args}),
        );
        let refused = v["error"].is_object() || v["result"]["isError"] == true;
        assert!(refused, "{v}");
    }
    let v = rpc(
        s.addr,
        10,
        "tools/call",
        json!({"name": "apply-now", "arguments": {}}),
    );
    assert!(
        v["error"].is_object() || v["result"]["isError"] == true,
        "{v}"
    );
    assert!(pending(&s.state).is_empty());
    let files: Vec<_> = std::fs::read_dir(s.state.join("queue")).unwrap().collect();
    assert_eq!(files.len(), 1, "only processed/: {files:?}");
}

#[test]
fn egress_block_and_capability_block_queue_their_files() {
    let s = start(&[]);
    initialize(s.addr);
    let yaml = "routes:\n  - host: pypi.org\n    git: {fetch: true}\n";
    let (err, text) = call(
        s.addr,
        "egress-block",
        json!({"routes_yaml": yaml, "justification": "clone"}),
    );
    assert!(!err, "{text}");
    assert!(text.contains("pypi.org: git fetch/clone allowed"), "{text}");
    let docker = "FROM debian:trixie\nRUN apt-get install -y jq\n";
    let (err, text) = call(
        s.addr,
        "capability-block",
        json!({"dockerfile": docker, "justification": "needs jq"}),
    );
    assert!(!err, "{text}");
    let (err, text) = call(
        s.addr,
        "capability-block",
        json!({"dockerfile": "", "justification": "x"}),
    );
    assert!(err, "{text}");
    assert!(text.contains("`dockerfile` is empty"), "{text}");
    let queued = pending(&s.state);
    let tools: Vec<Tool> = queued.iter().map(|p| p.tool).collect();
    assert_eq!(tools, [Tool::EgressBlock, Tool::CapabilityBlock]);
    assert_eq!(queued[1].proposed_file, docker);
}

#[test]
fn proposal_status_reports_pending_then_the_decision_and_waits_a_bounded_time() {
    let s = start(&[]);
    initialize(s.addr);
    let yaml = "routes:\n  - host: pypi.org\n  - host: crates.io\n";
    let (_, text) = call(
        s.addr,
        "allow",
        json!({"routes_yaml": yaml, "justification": "cargo"}),
    );
    let id = proposal_id(&text);

    let (err, text) = call(s.addr, "proposal-status", json!({"id": id}));
    assert!(!err, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["status"], "pending");

    // A bounded wait that ends without a decision answers pending.
    let t = Instant::now();
    let (_, text) = call(
        s.addr,
        "proposal-status",
        json!({"id": id, "wait_seconds": 1}),
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(text.contains("\"pending\""), "{text}");

    // A wait that a decision interrupts answers at once with it.
    let state = s.state.clone();
    let id2 = id.clone();
    let decider = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        let q = queue(&state);
        let p = q
            .proposal(&bb_supervise::ProposalId::parse(&id2).unwrap())
            .unwrap();
        let final_file = format!("{yaml}  - host: static.crates.io\n");
        let r = Response::new(
            &p,
            Status::Modified,
            "also the CDN".into(),
            Some(final_file),
            "op",
        )
        .unwrap();
        q.respond(&r).unwrap();
    });
    let t = Instant::now();
    let (err, text) = call(
        s.addr,
        "proposal-status",
        json!({"id": id, "wait_seconds": 20}),
    );
    decider.join().unwrap();
    assert!(!err, "{text}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["status"], "modified", "{text}");
    assert_eq!(report["notes"], "also the CDN");
    assert!(
        report["final_file"]
            .as_str()
            .unwrap()
            .contains("static.crates.io")
    );
    assert!(report["meaning"].as_str().unwrap().contains("final_file"));

    for (args, want) in [
        (json!({"id": "no-such-id"}), "no proposal no-such-id"),
        (json!({"id": "../../x"}), "invalid proposal id"),
        (json!({"id": id, "wait_seconds": 51}), "at most 50"),
    ] {
        let (err, text) = call(s.addr, "proposal-status", args);
        assert!(err, "{text}");
        assert!(text.contains(want), "wanted {want:?}: {text}");
    }
}

#[test]
fn pending_proposals_are_bounded_per_bottle() {
    let s = start(&["--max-pending", "2"]);
    initialize(s.addr);
    for i in 0..3 {
        let yaml = format!("routes:\n  - host: pypi.org\n  - host: h{i}.example\n");
        let (err, text) = call(
            s.addr,
            "allow",
            json!({"routes_yaml": yaml, "justification": "j"}),
        );
        assert_eq!(err, i == 2, "{i}: {text}");
        if i == 2 {
            assert!(
                text.contains("2 proposals from this bottle already wait"),
                "{text}"
            );
        }
    }
    assert_eq!(pending(&s.state).len(), 2);
    // A decision frees a place.
    let q = queue(&s.state);
    let first = pending(&s.state).remove(0);
    q.respond(&Response::new(&first, Status::Rejected, "no".into(), None, "op").unwrap())
        .unwrap();
    let yaml = "routes:\n  - host: pypi.org\n  - host: h9.example\n";
    let (err, text) = call(
        s.addr,
        "allow",
        json!({"routes_yaml": yaml, "justification": "j"}),
    );
    assert!(!err, "{text}");
}

#[test]
fn host_and_origin_are_checked_and_bodies_bounded() {
    let s = start(&[]);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    // The bundle's name (any port) and loopback are accepted.
    for host in ["supervise:9100", "supervise", "localhost:9100"] {
        let a = post(s.addr, "/mcp", &init, &[("Host", host)]);
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    // A rebinding attack arrives with the attacker's name, or from a page.
    let a = post(s.addr, "/mcp", &init, &[("Host", "evil.example")]);
    assert_eq!(a.status, 403, "{a:?}");
    for origin in ["http://evil.example", "http://127.0.0.1:9100", "null"] {
        let a = post(s.addr, "/mcp", &init, &[("Origin", origin)]);
        assert_eq!(a.status, 403, "{origin}: {a:?}");
    }
    // Only /mcp is served.
    let a = post(s.addr, "/other", &init, &[]);
    assert_eq!(a.status, 404, "{a:?}");
    // A body over the bound is refused, and nothing is queued.
    let huge = "x".repeat(bb_supervise::server::DEFAULT_MAX_BODY_BYTES + 1);
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "allow", "arguments": {"routes_yaml": huge, "justification": "j"}}})
    .to_string();
    let a = post(s.addr, "/mcp", &body, &[]);
    assert_eq!(a.status, 413, "{}", a.status);
    assert!(pending(&s.state).is_empty());
}

#[test]
fn list_egress_routes_reads_the_state_folder_without_a_proxy() {
    let s = start(&[]);
    initialize(s.addr);
    let (err, text) = call(s.addr, "list-egress-routes", json!({}));
    assert!(!err, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["routes"][0]["host"], "pypi.org", "{v}");

    let s = start_with(&[], None);
    initialize(s.addr);
    let (err, text) = call(s.addr, "list-egress-routes", json!({}));
    assert!(err, "{text}");
    assert!(text.contains("no routes.yaml"), "{text}");
}

#[test]
fn list_egress_routes_asks_a_real_egress_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca");
    bb_egress::ca::BottleCa::init(&ca, &[]).unwrap();
    let routes = tmp.path().join("routes.yaml");
    // Egress's routes differ from the state folder's: the answer must be
    // egress's own.
    std::fs::write(
        &routes,
        "routes:\n  - host: api.example.com\n    matches:\n      - paths: [{type: exact, value: /v1/x}]\n        methods: [get]\n",
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let egress = rt
        .block_on(bb_egress::server::Server::start(
            bb_egress::server::ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                routes,
                ca_dir: ca,
                upstream_ca: None,
                limits: bb_egress::server::Limits::default(),
            },
        ))
        .unwrap();
    let proxy = format!("http://{}", egress.local_addr());
    let s = start(&["--egress-proxy", &proxy]);
    initialize(s.addr);
    let (err, text) = call(s.addr, "list-egress-routes", json!({}));
    assert!(!err, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        json!({"routes": [{"host": "api.example.com", "matches": [
            {"paths": [{"type": "exact", "value": "/v1/x"}], "methods": ["GET"]}]}]}),
        "{text}"
    );
    rt.block_on(egress.shutdown());

    // An egress that does not answer is a tool error, not a fallback.
    let s = start(&["--egress-proxy", &format!("http://{}", free_port())]);
    initialize(s.addr);
    let (err, text) = call(s.addr, "list-egress-routes", json!({}));
    assert!(err, "{text}");
    assert!(text.contains("could not read the live allowlist"), "{text}");
}

#[test]
fn bad_configuration_exits_64_before_listening() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_slug = tmp.path().join("Not_A_Slug");
    std::fs::create_dir(&bad_slug).unwrap();
    let good = tmp.path().join("good");
    std::fs::create_dir(&good).unwrap();
    for (state, extra, want) in [
        (&bad_slug, &[][..], "bottle slug"),
        (
            &good,
            &["--egress-proxy", "https://egress:9099"][..],
            "only http://",
        ),
        (
            &good,
            &["--egress-proxy", "egress"][..],
            "expected http://HOST:PORT",
        ),
        (&tmp.path().join("missing"), &[][..], "not a folder"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_bb-supervise"))
            .arg("--state")
            .arg(state)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains(want), "wanted {want:?}: {err}");
    }
}
