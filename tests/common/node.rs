//! Node for the tests that run LeanCloud's own npm packages
//! (tests/leanengine.rs, tests/leancloud_sdk.rs). They fail rather than skip
//! without node or their `node_modules`: a skipped compatibility test would
//! pass CI while proving nothing. `.ci/run` installs both.

use std::path::{Path, PathBuf};

/// `node` on PATH; panics with what to install when it is missing.
pub fn find_node() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .expect("this test needs `node` on PATH (.ci/run installs nodejs and npm)")
}

/// Asserts that `npm ci` ran in `dir`: each of `packages` is installed.
pub fn require_packages(dir: &Path, packages: &[&str]) {
    for p in packages {
        assert!(
            dir.join("node_modules")
                .join(p)
                .join("package.json")
                .is_file(),
            "{}/node_modules/{p} is missing: run `npm ci` in {} (.ci/run does)",
            dir.display(),
            dir.display()
        );
    }
}
