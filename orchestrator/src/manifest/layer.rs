//! The serde shape of one manifest file, and the `extends:` merge.
//!
//! Every field of a bottle layer is optional so that "not set" (inherit)
//! and "set to empty" (e.g. `repos: {}` clears) stay distinct until the
//! chain is merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One bottle file's frontmatter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BottleLayer {
    /// Name of the parent bottle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Environment for the agent: literal, `${HOST_VAR}` or `?prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Which agent runs and how it authenticates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_provider: Option<ProviderSpec>,
    /// Git identity and the upstreams the git gate serves.
    #[serde(default, rename = "git-gate", skip_serializing_if = "Option::is_none")]
    pub git_gate: Option<GitGateLayer>,
    /// The egress allowlist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressLayer>,
    /// Whether the supervise server runs (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<bool>,
    /// Memory and pids limits of the agent and the bundle; each key is
    /// replaced when the child sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsLayer>,
}

/// `limits:` of a bottle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsLayer {
    /// The agent container's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<LimitLayer>,
    /// The sidecar bundle's limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<LimitLayer>,
}

/// One container's `memory` (`512m`, `8g`) and `pids`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitLayer {
    /// Memory limit, a size with an optional `k`, `m` or `g` suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The most processes and threads at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

impl LimitLayer {
    fn overlay(&self, child: &LimitLayer) -> LimitLayer {
        LimitLayer {
            memory: child.memory.clone().or_else(|| self.memory.clone()),
            pids: child.pids.or(self.pids),
        }
    }
}

/// The provider of a bottle that names none (the seed's default too).
pub const DEFAULT_TEMPLATE: &str = "claude";

fn default_template() -> String {
    DEFAULT_TEMPLATE.to_owned()
}

/// `agent_provider:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// `claude` (the default), `codex`, `pi` or a plugin name.
    #[serde(default = "default_template")]
    pub template: String,
    /// A Dockerfile replacing the template's (path relative to the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The token egress injects for the provider's API, named by the
    /// secret rule ([`crate::env::SecretRef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// codex only: forward the host's device-auth login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_host_credentials: Option<bool>,
    /// pi only: model endpoint settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<BTreeMap<String, serde_norway::Value>>,
}

/// `git-gate:` in a bottle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitGateLayer {
    /// The commit identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<GitUserLayer>,
    /// Upstreams by name; an explicit `{}` clears inherited ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repos: Option<BTreeMap<String, RepoLayer>>,
}

/// `git-gate.user:`; merged per field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitUserLayer {
    /// `user.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `user.email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// One `git-gate.repos.<name>`; merged field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoLayer {
    /// The upstream URL the agent's git config rewrites to the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The push key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RepoKey>,
    /// The upstream's pinned SSH host key (default: the operator's
    /// `~/.ssh/known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

/// `key:` of a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoKey {
    /// `static` (a key file) or `gitea` (a deploy key minted per launch).
    pub provider: KeyProvider,
    /// `static`: the private key file on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `gitea`: the forge API token, named by the secret rule
    /// ([`crate::env::SecretRef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_token_env: Option<String>,
    /// `gitea`: the forge's API base URL (default `https://<host>/api/v1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Where a repo's push key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyProvider {
    /// A key file on the host.
    Static,
    /// A Gitea deploy key minted at launch and revoked at teardown.
    Gitea,
}

/// `egress:` in a bottle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressLayer {
    /// Routes in the manifest form; concatenated along the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<serde_norway::Value>>,
    /// routes.yaml `log` level; replaced by a child that sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<u8>,
}

/// One agent file's frontmatter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLayer {
    /// The bottle the agent runs in.
    pub bottle: String,
    /// Folders under `~/.claude/skills/` copied into the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    /// Overlay on the bottle's git identity.
    #[serde(default, rename = "git-gate", skip_serializing_if = "Option::is_none")]
    pub git_gate: Option<AgentGitGate>,
}

/// `git-gate:` in an agent: only `user` may be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGitGate {
    /// Per-field overlay on the bottle's `git-gate.user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<GitUserLayer>,
}

impl GitUserLayer {
    /// `child` over `self`, per field.
    #[must_use]
    pub fn overlay(&self, child: &GitUserLayer) -> GitUserLayer {
        GitUserLayer {
            name: child.name.clone().or_else(|| self.name.clone()),
            email: child.email.clone().or_else(|| self.email.clone()),
        }
    }
}

impl RepoLayer {
    fn overlay(&self, child: &RepoLayer) -> RepoLayer {
        RepoLayer {
            url: child.url.clone().or_else(|| self.url.clone()),
            key: child.key.clone().or_else(|| self.key.clone()),
            host_key: child.host_key.clone().or_else(|| self.host_key.clone()),
        }
    }
}

fn merge_opt<T: Clone>(
    parent: Option<&T>,
    child: Option<&T>,
    f: impl FnOnce(&T, &T) -> T,
) -> Option<T> {
    match (parent, child) {
        (None, None) => None,
        (Some(p), None) => Some(p.clone()),
        (None, Some(c)) => Some(c.clone()),
        (Some(p), Some(c)) => Some(f(p, c)),
    }
}

/// The bottle `child` describes when it `extends:` `parent` (SPEC §4):
/// env merges (child wins), git user merges per field, repos merge by name
/// field by field (an explicit empty map clears), routes concatenate,
/// `log`, `agent_provider` and `supervise` are replaced when the child sets
/// them, and so is each `limits` key. The result's `extends` is the parent's (the chain goes on above).
///
/// Fold a chain from its root down (`merge(merge(root, mid), leaf)`), as
/// [`crate::manifest::resolve_chain`] does. `merge` is not associative
/// when a middle layer clears `repos: {}`: merging the two lower layers
/// first loses the fact that the clear happened above the root's repos.
#[must_use]
pub fn merge(parent: &BottleLayer, child: &BottleLayer) -> BottleLayer {
    BottleLayer {
        extends: parent.extends.clone(),
        env: merge_opt(parent.env.as_ref(), child.env.as_ref(), |p, c| {
            let mut out = p.clone();
            out.extend(c.iter().map(|(k, v)| (k.clone(), v.clone())));
            out
        }),
        agent_provider: child
            .agent_provider
            .clone()
            .or_else(|| parent.agent_provider.clone()),
        git_gate: merge_opt(parent.git_gate.as_ref(), child.git_gate.as_ref(), |p, c| {
            GitGateLayer {
                user: merge_opt(p.user.as_ref(), c.user.as_ref(), GitUserLayer::overlay),
                repos: merge_opt(p.repos.as_ref(), c.repos.as_ref(), |pr, cr| {
                    if cr.is_empty() {
                        return BTreeMap::new();
                    }
                    let mut out = pr.clone();
                    for (name, repo) in cr {
                        let merged = match pr.get(name) {
                            Some(base) => base.overlay(repo),
                            None => repo.clone(),
                        };
                        out.insert(name.clone(), merged);
                    }
                    out
                }),
            }
        }),
        egress: merge_opt(parent.egress.as_ref(), child.egress.as_ref(), |p, c| {
            EgressLayer {
                routes: merge_opt(p.routes.as_ref(), c.routes.as_ref(), |pr, cr| {
                    pr.iter().chain(cr).cloned().collect()
                }),
                log: c.log.or(p.log),
            }
        }),
        supervise: child.supervise.or(parent.supervise),
        limits: merge_opt(parent.limits.as_ref(), child.limits.as_ref(), |p, c| {
            LimitsLayer {
                agent: merge_opt(p.agent.as_ref(), c.agent.as_ref(), LimitLayer::overlay),
                bundle: merge_opt(p.bundle.as_ref(), c.bundle.as_ref(), LimitLayer::overlay),
            }
        }),
    }
}
