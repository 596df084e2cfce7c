//! The spec's samples (`config/samples/*.yaml`), verbatim, as the tests and the drill load them.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where the samples are, relative to the repository root.
pub const DIR: &str = "config/samples";

/// The repository root: the nearest directory holding `Cargo.lock` above the package under test
/// (cargo sets `CARGO_MANIFEST_DIR` when it runs a test), else above the current directory (a
/// binary such as `redis-drill`, run from the repository by `make`), else above this crate's
/// compile-time path. Found at run time: the compile-time path is wrong whenever a build is
/// reused by a checkout elsewhere (a git worktree sharing the target directory, a moved clone).
pub fn repo_root() -> PathBuf {
    let candidates = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    candidates
        .iter()
        .flatten()
        .find_map(|start| {
            start
                .ancestors()
                .find(|d| d.join("Cargo.lock").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| panic!("no Cargo.lock above {candidates:?}"))
}

/// The path of sample `file` (e.g. `dr-redis.yaml`).
pub fn path(file: &str) -> PathBuf {
    repo_root().join(DIR).join(file)
}

/// The text of sample `file` under `root`; the error names the file.
pub fn read_in(root: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(DIR).join(file)).map_err(|e| format!("{file}: {e}"))
}

/// The text of sample `file`; fails the test when it cannot be read.
pub fn text(file: &str) -> String {
    read_in(&repo_root(), file).unwrap_or_else(|e| panic!("{e}"))
}

/// Sample `file` parsed (as a `RedisCluster`, a `serde_json::Value`, ...); fails the test when it
/// does not parse.
pub fn load<T: DeserializeOwned>(file: &str) -> T {
    serde_yaml::from_str(&text(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_are_found_from_here() {
        assert!(repo_root().join("Cargo.toml").is_file());
        let dr: serde_yaml::Value = load("dr-redis.yaml");
        assert_eq!(dr["kind"].as_str(), Some("RedisCluster"));
        assert!(
            read_in(&repo_root(), "no-such.yaml")
                .unwrap_err()
                .starts_with("no-such.yaml: ")
        );
    }
}
