//! Fuzzes the routes.yaml parser with its round-trip invariant.
//!
//! For any text:
//! - `RoutesConfig::from_yaml` and `Policy::from_yaml` agree (same config,
//!   or the same errors): the policy adds compilation, never validation;
//! - a rejection carries at least one error, each with a non-empty message
//!   that names its route when it has one, and never more than the bound
//!   (100 errors and a "not checked" note);
//! - an accepted config serialises with `to_yaml`, the result parses back to
//!   an equal config, and serialising that gives the same text (the
//!   serialised form is a fixed point, as ruff's idempotency targets check);
//! - the introspection JSON deserialises, with plain serde and
//!   `deny_unknown_fields`, into the same config: one type is the schema of
//!   both forms;
//! - validating the accepted config again (as the orchestrator does with a
//!   config it builds) changes nothing, and `Policy::new` accepts it;
//! - each accepted route read alone (`RouteSpec::from_value`, as manifests
//!   embed routes) comes back equal.
//!
//! Inputs that are not UTF-8 are skipped: the proxy reads routes.yaml into a
//! `String` first, so the parser never sees them.

#![no_main]

use bb_egress::policy::{ConfigErrors, Policy, RouteSpec, RoutesConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = RoutesConfig::from_yaml(text);
    let policy = Policy::from_yaml(text);
    match (&parsed, &policy) {
        (Ok(cfg), Ok(p)) => assert_eq!(cfg, p.config(), "Policy::from_yaml built another config"),
        (Err(a), Err(b)) => assert_eq!(a, b, "Policy::from_yaml reported other errors"),
        (Ok(_), Err(e)) => panic!("RoutesConfig accepted what Policy rejected: {e}"),
        (Err(e), Ok(_)) => panic!("Policy accepted what RoutesConfig rejected: {e}"),
    }
    match parsed {
        Ok(cfg) => round_trip(&cfg),
        Err(errors) => check_errors(&errors),
    }
});

fn round_trip(cfg: &RoutesConfig) {
    let yaml = cfg
        .to_yaml()
        .unwrap_or_else(|e| panic!("a parsed config does not serialise: {e}\n{cfg:#?}"));
    let again = RoutesConfig::from_yaml(&yaml).unwrap_or_else(|e| {
        panic!("the serialised config does not parse:\n{e}\n--- serialised ---\n{yaml}")
    });
    assert_eq!(
        cfg, &again,
        "the serialised config parses to another config\n--- serialised ---\n{yaml}"
    );
    let yaml_again = again.to_yaml().unwrap();
    assert_eq!(yaml, yaml_again, "serialisation is not a fixed point");

    let json = cfg.to_json();
    let from_json: RoutesConfig = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the introspection JSON does not load: {e}\n{json}"));
    assert_eq!(cfg, &from_json, "the introspection JSON carries another config\n{json}");

    let revalidated = cfg
        .clone()
        .validate()
        .unwrap_or_else(|e| panic!("an accepted config fails validate(): {e}"));
    assert_eq!(cfg, &revalidated, "validate() changed an accepted config");
    let policy = Policy::new(cfg.clone())
        .unwrap_or_else(|e| panic!("Policy::new refused an accepted config: {e}"));
    assert_eq!(cfg, policy.config());

    for route in &cfg.routes {
        let value = serde_norway::to_value(route).unwrap();
        let alone = RouteSpec::from_value(&value)
            .unwrap_or_else(|e| panic!("an accepted route does not load alone: {e}\n{route:#?}"));
        assert_eq!(route, &alone, "a route read alone differs");
    }
}

fn check_errors(errors: &ConfigErrors) {
    assert!(!errors.0.is_empty(), "an Err with no errors in it");
    assert!(errors.0.len() <= 101, "{} errors: the bound is 100", errors.0.len());
    for e in &errors.0 {
        let msg = e.to_string();
        assert!(!msg.trim().is_empty(), "empty error message: {e:?}");
        if let Some(i) = e.route {
            assert!(
                msg.starts_with(&format!("routes[{i}]")),
                "error inside routes[{i}] does not name it: {msg}"
            );
        }
    }
    assert!(!errors.to_string().trim().is_empty());
}
