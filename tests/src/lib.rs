//! Shared helpers for mcp-edge's end-to-end tests: find (and build) the real
//! `mcp-edge` binary, run it, and read what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The `mcp-edge` binary of this build profile, built once per test process.
///
/// Integration tests of this crate cannot see another package's binaries through
/// `CARGO_BIN_EXE_*`, so the binary is built here with the cargo that runs the tests
/// (a no-op when it is fresh) and found next to the test executable.
pub fn mcp_edge() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(repo_root()).args([
            "build",
            "--quiet",
            "-p",
            "mcp-edge-gateway",
            "--bin",
            "mcp-edge",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("could not run cargo to build mcp-edge: {e}"));
        assert!(status.success(), "building mcp-edge failed");
        let bin = profile_dir.join(format!("mcp-edge{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "mcp-edge was built but is not at {}",
            bin.display()
        );
        bin
    })
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `mcp-edge args…` in `dir` with a clean `MCP_EDGE_ROUTES`, to completion.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    Command::new(mcp_edge())
        .current_dir(dir)
        .env_remove("MCP_EDGE_ROUTES")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run mcp-edge: {e}"))
        .into()
}

/// A fresh, empty directory for one test, in the system temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-edge-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}
