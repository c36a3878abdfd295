//! What a proposed routes.yaml *adds* to the live one.
//!
//! An `allow` or `egress-block` proposal carries a whole routes file, and
//! a whole file is easy to misread: a reviewer looking for the one new host
//! may miss that a route elsewhere now injects a token, lost its `matches`,
//! or had its detectors switched off. [`compare`] lists every widening
//! change (and, separately, the narrowing ones) so the agent's tool result
//! and the operator's review both show them.
//!
//! Pure: no I/O. Both files must already be validated by `bb-egress`'s own
//! parser ([`RoutesConfig::from_yaml`]), which also normalises host and
//! header-name case, so hosts compare as egress compares them.

use std::fmt;

use bb_egress::policy::{
    DetectorChoice, DetectorName, InboundDetector, MatchEntry, OutboundDetector, RouteSpec,
    RoutesConfig,
};

/// One difference between the live and the proposed routes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A host that had no route gets one.
    NewHost {
        /// The host.
        host: String,
    },
    /// The route injects credentials it did not inject before (or other
    /// ones): egress will send the secret in `token_env` to this host.
    Auth {
        /// The host.
        host: String,
        /// `Bearer` or `token`.
        scheme: String,
        /// The proxy's environment variable holding the secret.
        token_env: String,
    },
    /// The route had `matches` and now has none: every request to the
    /// host passes.
    MatchesRemoved {
        /// The host.
        host: String,
    },
    /// `matches` entries that were not there before (each one lets more
    /// requests through).
    MatchesAdded {
        /// The host.
        host: String,
        /// How many entries are new.
        count: usize,
    },
    /// `git.fetch` switched on.
    GitFetch {
        /// The host.
        host: String,
    },
    /// Ports the host may now be reached on.
    Ports {
        /// The host.
        host: String,
        /// The new ports; empty when `ports` was removed (back to defaults).
        ports: Vec<u16>,
    },
    /// `allow_private` switched on: the name may resolve into a private
    /// network.
    AllowPrivate {
        /// The host.
        host: String,
    },
    /// Detectors that ran on this host's traffic and no longer would.
    DetectorsOff {
        /// The host.
        host: String,
        /// `outbound` or `inbound`.
        direction: &'static str,
        /// The detectors switched off.
        detectors: Vec<&'static str>,
    },
    /// The log level changed.
    Log {
        /// Old level (0, 1, 2).
        from: u8,
        /// New level.
        to: u8,
    },
    /// A route that is gone from the proposal (narrows).
    RemovedHost {
        /// The host.
        host: String,
    },
    /// A route whose other settings changed in ways that do not widen it
    /// (fewer matches, detectors added, auth removed).
    Narrowed {
        /// The host.
        host: String,
    },
}

impl Change {
    /// Whether the change lets more through than the live file does.
    #[must_use]
    pub fn widens(&self) -> bool {
        !matches!(
            self,
            Change::RemovedHost { .. } | Change::Narrowed { .. } | Change::Log { .. }
        )
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::NewHost { host } => write!(f, "new host {host}"),
            Change::Auth {
                host,
                scheme,
                token_env,
            } => write!(
                f,
                "{host}: egress injects `{scheme}` credentials from {token_env}"
            ),
            Change::MatchesRemoved { host } => {
                write!(
                    f,
                    "{host}: matches removed, every request to the host passes"
                )
            }
            Change::MatchesAdded { host, count } => {
                write!(f, "{host}: {count} new matches entr{}", plural_y(*count))
            }
            Change::GitFetch { host } => write!(f, "{host}: git fetch/clone allowed"),
            Change::Ports { host, ports } if ports.is_empty() => {
                write!(f, "{host}: ports back to the defaults (443, 80)")
            }
            Change::Ports { host, ports } => write!(f, "{host}: new ports {ports:?}"),
            Change::AllowPrivate { host } => write!(
                f,
                "{host}: allow_private, may resolve to loopback/private addresses"
            ),
            Change::DetectorsOff {
                host,
                direction,
                detectors,
            } => write!(
                f,
                "{host}: {direction} detectors switched off: {}",
                detectors.join(", ")
            ),
            Change::Log { from, to } => write!(f, "log level {from} -> {to}"),
            Change::RemovedHost { host } => write!(f, "route for {host} removed"),
            Change::Narrowed { host } => write!(f, "{host}: narrowed"),
        }
    }
}

fn plural_y(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

/// Every change from `live` to `proposed`, widening changes first (in the
/// proposed file's route order), then narrowing ones.
#[must_use]
pub fn compare(live: &RoutesConfig, proposed: &RoutesConfig) -> Vec<Change> {
    let mut widen = Vec::new();
    let mut narrow = Vec::new();
    for route in &proposed.routes {
        match live.routes.iter().find(|r| r.host == route.host) {
            None => {
                widen.push(Change::NewHost {
                    host: route.host.clone(),
                });
                // A new host's own risky settings are listed too.
                route_changes(&RouteSpec::new(route.host.clone()), route, &mut widen);
            }
            Some(old) if old == route => {}
            Some(old) => {
                let before = widen.len();
                route_changes(old, route, &mut widen);
                if widen.len() == before {
                    narrow.push(Change::Narrowed {
                        host: route.host.clone(),
                    });
                }
            }
        }
    }
    for old in &live.routes {
        if !proposed.routes.iter().any(|r| r.host == old.host) {
            narrow.push(Change::RemovedHost {
                host: old.host.clone(),
            });
        }
    }
    if live.log != proposed.log {
        narrow.push(Change::Log {
            from: live.log.as_u8(),
            to: proposed.log.as_u8(),
        });
    }
    widen.extend(narrow);
    widen
}

fn route_changes(old: &RouteSpec, new: &RouteSpec, out: &mut Vec<Change>) {
    let host = || new.host.clone();
    if let Some(auth) = new.auth()
        && old.auth() != Some(auth)
    {
        out.push(Change::Auth {
            host: host(),
            scheme: auth.scheme.as_str().to_owned(),
            token_env: auth.token_env.to_owned(),
        });
    }
    match (&old.matches, &new.matches) {
        (Some(_), None) => out.push(Change::MatchesRemoved { host: host() }),
        (Some(old_m), Some(new_m)) => {
            let count = new_m.iter().filter(|m| !contains(old_m, m)).count();
            if count > 0 {
                out.push(Change::MatchesAdded {
                    host: host(),
                    count,
                });
            }
        }
        (None, _) => {}
    }
    if new.git.fetch && !old.git.fetch {
        out.push(Change::GitFetch { host: host() });
    }
    if new.ports != old.ports {
        let old_ports = old.ports.clone().unwrap_or_else(|| vec![443, 80]);
        match &new.ports {
            None => {
                if !(old_ports.contains(&443) && old_ports.contains(&80)) {
                    out.push(Change::Ports {
                        host: host(),
                        ports: Vec::new(),
                    });
                }
            }
            Some(ports) => {
                let added: Vec<u16> = ports
                    .iter()
                    .copied()
                    .filter(|p| !old_ports.contains(p))
                    .collect();
                if !added.is_empty() {
                    out.push(Change::Ports {
                        host: host(),
                        ports: added,
                    });
                }
            }
        }
    }
    if new.allow_private && !old.allow_private {
        out.push(Change::AllowPrivate { host: host() });
    }
    let off =
        switched_off::<OutboundDetector>(&old.dlp.outbound_detectors, &new.dlp.outbound_detectors);
    if !off.is_empty() {
        out.push(Change::DetectorsOff {
            host: host(),
            direction: "outbound",
            detectors: off,
        });
    }
    let off =
        switched_off::<InboundDetector>(&old.dlp.inbound_detectors, &new.dlp.inbound_detectors);
    if !off.is_empty() {
        out.push(Change::DetectorsOff {
            host: host(),
            direction: "inbound",
            detectors: off,
        });
    }
}

fn contains(list: &[MatchEntry], entry: &MatchEntry) -> bool {
    list.iter().any(|m| m == entry)
}

fn switched_off<D: DetectorName>(
    old: &DetectorChoice<D>,
    new: &DetectorChoice<D>,
) -> Vec<&'static str> {
    D::ALL
        .iter()
        .copied()
        .filter(|d| old.enables(*d) && !new.enables(*d))
        .map(DetectorName::name)
        .collect()
}

/// The changes as a bulleted text block for a tool result or a review
/// screen; "no change" when there is none.
#[must_use]
pub fn summary(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no change from the live routes.yaml\n".to_owned();
    }
    let mut out = String::new();
    let (widen, narrow): (Vec<_>, Vec<_>) = changes.iter().partition(|c| c.widens());
    if !widen.is_empty() {
        out.push_str("adds:\n");
        for c in widen {
            out.push_str("  + ");
            out.push_str(&c.to_string());
            out.push('\n');
        }
    }
    if !narrow.is_empty() {
        out.push_str("also changes:\n");
        for c in narrow {
            out.push_str("  - ");
            out.push_str(&c.to_string());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests;
