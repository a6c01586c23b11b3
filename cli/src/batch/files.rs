//! The two files `asyncmcp batch` keeps, both JSON lines appended with
//! group commit: a line counts once `fsync` returned for it.
//!
//! * the **out file**: one result line per key; an answer is deleted from
//!   the reply queue only after its line is synced.
//! * the **state file** (`<out>.state`): a header naming the server, the
//!   reply queue and the `ClientId`, then a `{"sending": KEY}` line synced
//!   before each call is sent. Removed when every key has its result.
//!
//! A process killed mid-write leaves at most a torn last line (no newline at
//! its end, since each write appends whole lines): [`recover`] drops it and
//! truncates the file to its last whole line. A bad line before the last is
//! not a torn write: it is reported, and nothing is changed.
//!
//! The state file is locked (`flock`, exclusive) while a run uses it, so two
//! runs cannot share one `ClientId` and reply queue at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// The header of the state file: what a resumed run reattaches to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Header {
    /// The format's version.
    pub(crate) asyncmcp_batch: u32,
    /// The server's request queue.
    pub(crate) queue_url: String,
    /// Where answers come back.
    pub(crate) reply_queue: String,
    /// Whether the run created the reply queue (and deletes it when done).
    pub(crate) created_reply_queue: bool,
    /// The `ClientId` of every call.
    pub(crate) client_id: String,
}

/// The state file's path for the out file `out`.
pub(crate) fn state_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

/// The whole lines of the file at `path`, parsed; a torn last line is cut
/// off the file (and said on stderr). A missing file has no lines.
pub(crate) fn recover(path: &Path) -> anyhow::Result<Vec<Value>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut values = Vec::new();
    for (index, line) in bytes[..whole].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() && values.len() == index {
            // The empty piece after the last newline.
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(value) => values.push(value),
            Err(error) => bail!(
                "{} line {}: not a line this command wrote ({error}); the file is damaged",
                path.display(),
                index + 1
            ),
        }
    }
    if whole < bytes.len() {
        eprintln!(
            "asyncmcp batch: {}: dropping a torn last line ({} bytes) left by an interrupted write",
            path.display(),
            bytes.len() - whole
        );
        file.set_len(whole as u64)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot truncate {}", path.display()))?;
    }
    Ok(values)
}

/// Opens `path` for appending (creating it), locked for this run.
pub(crate) fn open_locked(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another asyncmcp batch run; wait for it to end",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Opens `path` for appending, creating it.
pub(crate) fn open_append(path: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.seek(SeekFrom::End(0))?;
    Ok(file)
}

/// Removes a state file this run created, while it is still empty, when
/// the run stops before writing its header (a refused resume, say): left
/// behind, it would make the next run without `--resume` refuse to start.
#[derive(Debug)]
pub(crate) struct NewStateGuard {
    path: PathBuf,
    armed: bool,
}

impl NewStateGuard {
    /// Guards the state file at `path`.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            armed: true,
        }
    }

    /// The header is written: the file stays.
    pub(crate) fn keep(&mut self) {
        self.armed = false;
    }
}

impl Drop for NewStateGuard {
    fn drop(&mut self) {
        if self.armed && std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A write and who waits for it to be synced.
type Pending = (Vec<u8>, oneshot::Sender<Result<(), String>>);

/// A file of JSON lines appended with group commit: lines given while a
/// sync runs are written and synced together after it.
#[derive(Debug, Clone)]
pub(crate) struct AppendLog {
    sender: mpsc::UnboundedSender<Pending>,
}

impl AppendLog {
    /// Appends to `file` (opened for appending) from a task of its own.
    pub(crate) fn new(file: File, name: String) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            let mut file = Some(file);
            while let Some(first) = receiver.recv().await {
                let mut group = vec![first];
                while let Ok(more) = receiver.try_recv() {
                    group.push(more);
                }
                let Some(mut handle) = file.take() else {
                    return;
                };
                let bytes: Vec<u8> = group.iter().flat_map(|(b, _)| b.iter().copied()).collect();
                let result = tokio::task::spawn_blocking(move || {
                    let written = handle.write_all(&bytes).and_then(|()| handle.sync_data());
                    (handle, written)
                })
                .await;
                let outcome = match result {
                    Ok((handle, written)) => {
                        file = Some(handle);
                        written.map_err(|error| format!("cannot write {name}: {error}"))
                    }
                    Err(error) => Err(format!("cannot write {name}: {error}")),
                };
                for (_, done) in group {
                    let _ = done.send(outcome.clone());
                }
                if outcome.is_err() {
                    // Nothing is written after a failed write: what follows
                    // would sit after a hole.
                    return;
                }
            }
        });
        Self { sender }
    }

    /// Appends `lines` (each ending in a newline) and waits until they are
    /// synced.
    pub(crate) async fn append(&self, lines: Vec<u8>) -> anyhow::Result<()> {
        let (done, synced) = oneshot::channel();
        self.sender
            .send((lines, done))
            .map_err(|_| anyhow::anyhow!("the file writer stopped"))?;
        match synced.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => bail!(error),
            Err(_) => bail!("the file writer stopped"),
        }
    }
}

/// `value` as one line of JSON text with its newline.
pub(crate) fn line(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("asyncmcp-batch-{}-{name}", uuid_like()))
    }

    fn uuid_like() -> String {
        format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        )
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_off() {
        let path = temp("torn");
        std::fs::write(&path, b"{\"key\":1}\n{\"key\":2}\n{\"key\":3,\"res").expect("write");
        let values = recover(&path).expect("recovered");
        assert_eq!(values.len(), 2);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"key\":1}\n{\"key\":2}\n"
        );
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_bad_line_before_the_last_is_damage_not_a_torn_write() {
        let path = temp("damaged");
        let damaged: &[u8] = b"{\"key\":1}\ngarbage\n{\"key\":3}\n{\"key\":4";
        std::fs::write(&path, damaged).expect("write");
        let error = recover(&path).expect_err("damaged");
        assert!(error.to_string().contains("line 2"), "{error}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            damaged,
            "left as it is"
        );
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_missing_file_has_no_lines() {
        assert!(recover(&temp("missing")).expect("fine").is_empty());
    }

    #[test]
    fn a_second_lock_is_refused() {
        let path = temp("lock");
        let _first = open_locked(&path).expect("locked");
        let error = open_locked(&path).expect_err("in use");
        assert!(error.to_string().contains("in use"), "{error}");
        std::fs::remove_file(&path).ok();
    }
}
