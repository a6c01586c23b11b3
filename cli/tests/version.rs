//! The built `asyncmcp` binary answers `--version` with this crate's version.

use std::process::Command;

#[test]
fn version_prints_the_crate_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_asyncmcp"))
        .arg("--version")
        .output()
        .expect("run asyncmcp --version");
    assert!(
        output.status.success(),
        "asyncmcp --version exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("asyncmcp {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        output.stderr.is_empty(),
        "nothing on stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
