//! A directory of its own where a test's stdio server leaves marks (files
//! named for what happened, holding when), removed when dropped.

use std::path::{Path, PathBuf};

use asyncmcp_testkit::unique_name;

/// The mark directory; see the [module docs](self).
pub struct MarkDir(PathBuf);

impl MarkDir {
    /// A new, empty directory named after `prefix`.
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&dir).expect("create the mark directory");
        Self(dir)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The time in the mark `name`.
    pub fn read(&self, name: &str) -> u128 {
        let text = std::fs::read_to_string(self.0.join(name))
            .unwrap_or_else(|e| panic!("mark {name}: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("mark {name}: {text:?}: {e}"))
    }
}

impl Drop for MarkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
