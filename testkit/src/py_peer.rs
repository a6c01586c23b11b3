//! The Python asyncmcp 0.2.1 peer that the interoperability tests and the
//! bench run against: `scripts/test.sh` installs it into `.venv/py-peer` and
//! names its interpreter in `ASYNCMCP_PY_PEER`.

use std::path::PathBuf;

/// The Python interpreter of the asyncmcp 0.2.1 peer (`ASYNCMCP_PY_PEER`);
/// panics with how to install it when it is not set or does not exist.
pub fn py_peer_python() -> PathBuf {
    const HOW: &str =
        "run scripts/test.sh, which installs the Python asyncmcp 0.2.1 peer into .venv/py-peer";
    let path = std::env::var_os("ASYNCMCP_PY_PEER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("ASYNCMCP_PY_PEER is not set: {HOW}"));
    if !path.is_file() {
        panic!("ASYNCMCP_PY_PEER={} does not exist: {HOW}", path.display());
    }
    path
}
