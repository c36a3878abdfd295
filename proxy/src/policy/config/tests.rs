use super::*;

#[test]
fn scratch() {
    let cases = [
        "routes:\n  - host: a.com\n   bad: [\n",
        "routes: [\n",
        "routes:\n- host: a.com\n  host: b.com\n",
        "routes:\n- host: a.com\n  matches:\n  - paths:\n    - {type: regex, value: \"(\"}\n",
        "routes:\n- host: a.com\n  matches:\n  - paths:\n    - {type: regex, value: \"/api)|(.*\"}\n",
        "\t- x",
        "routes:\n- host: a.com\n\tport: 1\n",
        "routes: - x",
        "[1, 2",
    ];
    for c in cases {
        match RoutesConfig::from_yaml(c) {
            Ok(cfg) => println!("OK {cfg:?}\n---"),
            Err(e) => println!("ERR {e}\n{e:?}\n---"),
        }
    }
    for s in ["\u{85}", "a\u{2028}b", "\u{feff}x", "~", "NULL", ".INF", "1e5", "0x10", "0o7", "y", "yes", "-", "1_000", "+1", "::1", "'", "\"", "a: b", " a", "a ", "#a", "\t", "", "\r", "a\rb", "\u{7f}", "\u{0}", "\u{fffe}", "\u{1F600}", "012", "0b1", "=", "<<", "!a", "&a", "*a", "?", "-.5", "+.inf", ".5", "1.", "1e", "1e+", "0.", "00", "-0", "+0x1"] {
        let mut r = Route::new("a.com");
        r.matches = Some(vec![MatchEntry { paths: vec![], methods: vec![], headers: vec![HeaderMatch { name: "x".into(), value: s.into(), kind: ValueKind::Exact }] }]);
        let cfg = RoutesConfig { routes: vec![r], log: LogLevel::Blocked };
        let y = cfg.to_yaml().unwrap();
        match RoutesConfig::from_yaml(&y) {
            Ok(back) if back == cfg => {}
            Ok(back) => println!("MISMATCH {s:?}: {y:?} -> {:?}", back.routes[0].matches),
            Err(e) => println!("ERR {s:?}: {y:?} -> {e}"),
        }
    }
}
