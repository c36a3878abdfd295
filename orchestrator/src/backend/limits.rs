//! Memory and pids limits of a bottle's containers.
//!
//! A fork bomb or a runaway build in the agent must be the bottle's problem,
//! not the host's: the agent and the bundle always run with a memory limit
//! (swap included) and a pids limit. The defaults suit a coding agent
//! (a Node CLI plus compilers and test runners); a bottle's `limits:` key
//! overrides them per container and per key.

use std::fmt;

use crate::manifest::{LimitLayer, LimitsLayer};

/// One container's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Memory in bytes (also the memory+swap limit: no swap on top).
    pub memory: u64,
    /// The most processes and threads at once.
    pub pids: u32,
}

/// The limits of a bottle's agent and bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The agent container.
    pub agent: Limit,
    /// The sidecar bundle.
    pub bundle: Limit,
}

/// The agent's default: 8 GiB, 4096 tasks (a parallel build's threads fit).
pub const AGENT_DEFAULT: Limit = Limit {
    memory: 8 << 30,
    pids: 4096,
};
/// The bundle's default: 1 GiB, 512 tasks (three daemons and git children).
pub const BUNDLE_DEFAULT: Limit = Limit {
    memory: 1 << 30,
    pids: 512,
};
/// The network holder (a resolver, a sigwait, and the probe's few
/// threads when it is exec'd in): fixed.
pub const HOLDER: Limit = Limit {
    memory: 64 << 20,
    pids: 64,
};

/// Below these a container cannot even start its CLI.
const MIN_MEMORY: u64 = 64 << 20;
const MIN_PIDS: u32 = 16;

impl Default for Limits {
    fn default() -> Self {
        Self {
            agent: AGENT_DEFAULT,
            bundle: BUNDLE_DEFAULT,
        }
    }
}

impl Limits {
    /// The defaults overlaid with a bottle's `limits:`; errors name the key.
    pub fn from_layer(layer: Option<&LimitsLayer>) -> Result<Self, String> {
        let mut out = Self::default();
        if let Some(l) = layer {
            if let Some(a) = &l.agent {
                out.agent = overlay(out.agent, a, "limits.agent")?;
            }
            if let Some(b) = &l.bundle {
                out.bundle = overlay(out.bundle, b, "limits.bundle")?;
            }
        }
        Ok(out)
    }
}

fn overlay(base: Limit, layer: &LimitLayer, key: &str) -> Result<Limit, String> {
    let mut out = base;
    if let Some(m) = &layer.memory {
        out.memory = parse_size(m)
            .ok_or_else(|| format!("{key}.memory: `{m}` is not a size like `512m` or `8g`"))?;
        if out.memory < MIN_MEMORY {
            return Err(format!("{key}.memory: `{m}` is below the minimum of 64m"));
        }
    }
    if let Some(p) = layer.pids {
        if p < MIN_PIDS {
            return Err(format!(
                "{key}.pids: {p} is below the minimum of {MIN_PIDS}"
            ));
        }
        out.pids = p;
    }
    Ok(out)
}

/// `123`, `64k`, `512m`, `8g` (case-insensitive, optional `b`) in bytes.
#[must_use]
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, shift) = match t.as_bytes().last()? {
        b'k' => (&t[..t.len() - 1], 10),
        b'm' => (&t[..t.len() - 1], 20),
        b'g' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl Limit {
    /// `docker create` flags for this limit.
    #[must_use]
    pub fn docker_args(&self) -> Vec<String> {
        vec![
            "--memory".into(),
            self.memory.to_string(),
            "--memory-swap".into(),
            self.memory.to_string(),
            "--pids-limit".into(),
            self.pids.to_string(),
        ]
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.memory;
        if m.is_multiple_of(1 << 30) {
            write!(f, "memory {}g", m >> 30)?;
        } else if m.is_multiple_of(1 << 20) {
            write!(f, "memory {}m", m >> 20)?;
        } else {
            write!(f, "memory {m} bytes")?;
        }
        write!(f, ", {} pids", self.pids)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_are_named() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("100000000"), Some(100_000_000));
        assert_eq!(parse_size("1kb"), Some(1024));
        for bad in ["", "m", "1.5g", "-1g", "1t", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let layer = LimitsLayer {
            agent: Some(LimitLayer {
                memory: Some("lots".into()),
                pids: None,
            }),
            bundle: None,
        };
        let err = Limits::from_layer(Some(&layer)).unwrap_err();
        assert!(
            err.contains("limits.agent.memory") && err.contains("lots"),
            "{err}"
        );
        let layer = LimitsLayer {
            agent: None,
            bundle: Some(LimitLayer {
                memory: None,
                pids: Some(3),
            }),
        };
        assert!(
            Limits::from_layer(Some(&layer))
                .unwrap_err()
                .contains("limits.bundle.pids")
        );
    }

    #[test]
    fn a_layer_overrides_only_what_it_sets() {
        let layer = LimitsLayer {
            agent: Some(LimitLayer {
                memory: Some("2g".into()),
                pids: None,
            }),
            bundle: None,
        };
        let l = Limits::from_layer(Some(&layer)).unwrap();
        assert_eq!(l.agent.memory, 2 << 30);
        assert_eq!(l.agent.pids, AGENT_DEFAULT.pids);
        assert_eq!(l.bundle, BUNDLE_DEFAULT);
        assert_eq!(l.agent.to_string(), "memory 2g, 4096 pids");
    }
}
