//! Server software from Debian's packages, for the tests that start a real
//! server: found where Debian puts it, installed with `apt-get` when missing
//! and the test runs as root (CI, a fresh container), or else a failure that
//! names the package to install.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The first of `paths` that exists; if none does, installs `package` (as
/// root, once per test binary and package) and looks again. Panics with the
/// command to run when the binary is still missing.
pub fn binary(paths: &[&str], package: &str) -> PathBuf {
    let found = || paths.iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(path) = found() {
        return path;
    }
    // One install at a time, even with tests running in parallel.
    static INSTALLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !installed.iter().any(|p| p == package) {
        installed.push(package.to_owned());
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root {
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    drop(installed);
    found().unwrap_or_else(|| {
        panic!(
            "this test needs {} from Debian's package `{package}`: run `sudo apt-get install -y {package}`",
            paths.first().copied().unwrap_or(package)
        )
    })
}
