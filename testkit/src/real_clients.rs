//! The stock MCP clients and servers the bridge is tested against, none of
//! them written here: `scripts/test.sh` installs them into `.tools` (see
//! `ensure_real_clients` in `scripts/env.sh`) and names them in these
//! variables.

use std::path::PathBuf;

const HOW: &str = "run scripts/test.sh, which installs MCP Inspector, server-everything, \
                   a Node 22 and the Python MCP SDK 2.x into .tools (or source scripts/env.sh \
                   and call ensure_real_clients)";

/// The file a variable names; panics with how to install it when the
/// variable is unset or the file does not exist.
fn installed(var: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: {HOW}"));
    assert!(
        path.is_file(),
        "{var}={} does not exist: {HOW}",
        path.display()
    );
    path
}

/// The Node 22 binary (`ASYNCMCP_NODE`) that runs Inspector and
/// server-everything.
pub fn node() -> PathBuf {
    installed("ASYNCMCP_NODE")
}

/// MCP Inspector's CLI entry point (`ASYNCMCP_INSPECTOR`), run with
/// [`node`]: `node INSPECTOR --cli …`.
pub fn inspector() -> PathBuf {
    installed("ASYNCMCP_INSPECTOR")
}

/// `@modelcontextprotocol/server-everything`'s entry point
/// (`ASYNCMCP_SERVER_EVERYTHING`), a stdio MCP server run with [`node`].
pub fn server_everything() -> PathBuf {
    installed("ASYNCMCP_SERVER_EVERYTHING")
}

/// A Python with the MCP SDK 2.x (`ASYNCMCP_MCP2_PYTHON`).
pub fn mcp2_python() -> PathBuf {
    installed("ASYNCMCP_MCP2_PYTHON")
}
