//! Who launched a bottle: the `bot-bottle` process (pid, start time, boot).
//!
//! A bottle's containers, networks and `bottle.json` record their owner, so
//! `cleanup` can tell a bottle whose `bot-bottle` was killed (`kill -9`, a
//! closed terminal) from one still in use, even while its agent runs. A pid
//! alone is not enough (pids are reused): the process's start time (clock
//! ticks since boot, field 22 of `/proc/PID/stat`) and the boot's id must
//! match too.

use std::fmt;

/// The launching process of a bottle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
    /// `/proc/sys/kernel/random/boot_id` when it started.
    pub boot: String,
}

impl Owner {
    /// This process.
    #[must_use]
    pub fn current() -> Option<Self> {
        Self::of(std::process::id())
    }

    /// Process `pid`, while it exists (a child not yet waited for counts).
    #[must_use]
    pub fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start: start_time(pid)?,
            boot: boot_id()?,
        })
    }

    /// Whether that process still runs (same pid, start time and boot).
    #[must_use]
    pub fn alive(&self) -> bool {
        boot_id().as_deref() == Some(self.boot.as_str()) && start_time(self.pid) == Some(self.start)
    }

    /// Parses the label form, `PID:START:BOOT`.
    #[must_use]
    pub fn parse(label: &str) -> Option<Self> {
        let mut f = label.splitn(3, ':');
        Some(Self {
            pid: f.next()?.parse().ok()?,
            start: f.next()?.parse().ok()?,
            boot: f.next().filter(|b| !b.is_empty())?.to_owned(),
        })
    }
}

/// The label form, `PID:START:BOOT`.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.pid, self.start, self.boot)
    }
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Field 22 of `/proc/PID/stat`, read after the command name (which may
/// hold spaces and parentheses, so from the last `)`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": state is field 3, so start time (22) is the 20th here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.alive());
        assert_eq!(Owner::parse(&me.to_string()), Some(me.clone()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        let gone = Owner {
            pid,
            start: start.unwrap_or(1),
            boot: me.boot.clone(),
        };
        assert!(!gone.alive());
        let other_start = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        assert!(!other_start.alive(), "a reused pid is not the owner");
        let other_boot = Owner {
            boot: "x".into(),
            ..me
        };
        assert!(!other_boot.alive());
        assert_eq!(Owner::parse("12:34"), None);
        assert_eq!(Owner::parse("a:1:b"), None);
    }
}
