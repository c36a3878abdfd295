//! A realistic Debian image for Docker end-to-end tests, built once per
//! machine.
//!
//! [`image`] returns the tag of a Debian bookworm image made with
//! `debootstrap --variant=minbase` and the union package set every e2e test
//! shares ([`PACKAGES`]: git, an SSH server and client, curl, iproute2,
//! python3, dig, nc…), plus a user `agent` (uid 1000, home `/home/agent`).
//! It is `docker import`ed as `bb-test-debian:<hash>`, the hash covering
//! the suite, the packages and [`SCRIPT_VERSION`], so changing any of them
//! builds a new image and an existing tag is reused as is.
//!
//! Built at most once per machine: a `OnceLock` within a test binary, and
//! an exclusive lock on `$TMPDIR/bb-test-debian.lock` across test binaries
//! and concurrent test runs (the first builds, the others wait and reuse).
//! Needs root, Docker and Debian's `debootstrap` (`.ci/run` installs it); a
//! build takes a couple of minutes and about 450 MB.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Debian suite.
pub const SUITE: &str = "bookworm";
/// The mirror debootstrap reads.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Packages on top of minbase: the union every e2e test needs. Add to it
/// rather than building another image.
pub const PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "dnsutils",
    "git",
    "iproute2",
    "netcat-openbsd",
    "openssh-client",
    "openssh-server",
    "procps",
    "python3-minimal",
];
/// Bumped whenever the build steps below change.
pub const SCRIPT_VERSION: u32 = 1;

/// The image's tag: `bb-test-debian:<hash of suite, packages, version>`.
#[must_use]
pub fn tag() -> String {
    // FNV-1a: a cache key, not a security boundary.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    feed(SUITE.as_bytes());
    for p in PACKAGES {
        feed(p.as_bytes());
    }
    feed(&SCRIPT_VERSION.to_le_bytes());
    let mut out = String::from("bb-test-debian:");
    let _ = write!(out, "{h:016x}");
    out
}

/// The tag of the Debian test image, building it first when no image
/// with that tag exists.
///
/// # Panics
///
/// When the image cannot be built (no root, no Docker, no debootstrap, no
/// mirror), with what failed: tests that need it cannot run without it.
#[must_use]
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let tag = tag();
            if let Err(e) = ensure(&tag) {
                panic!("building the Debian test image {tag}: {e}");
            }
            tag
        })
        .clone()
}

fn exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure(tag: &str) -> Result<(), String> {
    if exists(tag) {
        return Ok(());
    }
    let lock_path = std::env::temp_dir().join("bb-test-debian.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // Another test binary or run may be building: wait for it.
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    if exists(tag) {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("bb-test-debian-")
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| e.to_string())?;
    let root = dir.path().join("rootfs");
    build_rootfs(&root)?;
    import(&root, tag)?;
    drop(lock);
    Ok(())
}

fn run(c: &mut Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e} (apt-get install -y debootstrap)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

fn build_rootfs(root: &Path) -> Result<(), String> {
    run(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(SUITE)
            .arg(root)
            .arg(MIRROR),
        "debootstrap",
    )?;
    run(
        Command::new("chroot").arg(root).args([
            "useradd",
            "-m",
            "-u",
            "1000",
            "-s",
            "/bin/bash",
            "agent",
        ]),
        "useradd agent",
    )?;
    // What a container never needs: package caches, lists, docs.
    for sub in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
    ] {
        let p = root.join(sub);
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
            let _ = std::fs::create_dir_all(&p);
        }
    }
    Ok(())
}

fn import(root: &Path, tag: &str) -> Result<(), String> {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tar: {e}"))?;
    let stdout = tar.stdout.take().ok_or("tar: no stdout")?;
    let out = Command::new("docker")
        .args([
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "CMD [\"/bin/bash\"]",
            "--change",
            "LABEL bb-test-debian=1",
            "-",
            tag,
        ])
        .stdin(stdout)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("docker import: {e}"))?;
    let tar_ok = tar.wait().is_ok_and(|s| s.success());
    if !out.status.success() || !tar_ok {
        return Err(format!(
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tag_is_stable_and_names_the_content() {
        assert_eq!(super::tag(), super::tag());
        assert!(super::tag().starts_with("bb-test-debian:"));
        assert_eq!(super::tag().len(), "bb-test-debian:".len() + 16);
    }
}
