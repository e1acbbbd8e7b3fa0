//! File output that never leaves a half-written file behind.
//!
//! Every writer in the library goes through [`atomic_write`]: a crash, a full disk or a killed
//! training job must leave either the old file or the complete new one, because users resume
//! from these files (monitor state, fitted encoders) and a torn file would be read as corrupt.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::data::limits;
use crate::error::{Error, Result};

/// Distinguishes temp files of concurrent writers in one process (threads writing the same
/// target); the pid alone only separates processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temp_path_for(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "not a file path (no file name)")
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(parent_dir(path).join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        n
    )))
}

fn write_synced(tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    f.write_all(bytes)?;
    // Without the fsync the rename can reach the disk before the data, so a power loss would
    // leave a complete-looking but empty file.
    f.sync_all()
}

/// Writes `bytes` to `path` atomically: a hidden temp file in the same directory (so the rename
/// stays on one filesystem), fsync, then rename over the target. On failure the temp file is
/// removed and the error names `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path_for(path).map_err(|e| Error::io(path, e))?;
    let result = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Persist the directory entry too; some filesystems cannot sync a directory, and the data
    // itself is already safe, so a failure here is not worth failing the write for.
    if let Ok(d) = File::open(parent_dir(path)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Opens an input file for reading, refusing anything that is not a regular file (a directory,
/// device, FIFO or socket) before and after opening it.
pub fn open_input(path: &Path) -> Result<File> {
    let not_regular = |what: &str| {
        Error::data(path, format!("is {what}, not a regular file; factortopy reads only regular files"))
    };
    // `metadata` does not open the file, so a FIFO is refused before an `open` could block.
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let kind = |m: &fs::Metadata| -> Option<&'static str> {
        let t = m.file_type();
        if t.is_file() {
            None
        } else if t.is_dir() {
            Some("a directory")
        } else {
            Some("a device, FIFO or socket")
        }
    };
    if let Some(what) = kind(&meta) {
        return Err(not_regular(what));
    }
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    // Checked again on the open file: the path may have been replaced in between.
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if let Some(what) = kind(&meta) {
        return Err(not_regular(what));
    }
    Ok(f)
}

/// Reads a whole input file into memory (large feature files are read through
/// [`crate::data::TensorIndex`] instead, a block at a time).
///
/// Only regular files are read, since `/dev/zero` never ends, a FIFO blocks until a writer comes
/// and a directory has no bytes; files over [`limits::MAX_FILE_BYTES`] are refused, and the buffer
/// is allocated fallibly (a file larger than free memory is [`Error::Memory`], not an abort).
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut f = open_input(path)?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    let len = meta.len();
    if len > limits::MAX_FILE_BYTES {
        return Err(Error::data(
            path,
            format!("is {len} bytes, over the {} byte limit on input files", limits::MAX_FILE_BYTES),
        ));
    }
    let mut bytes: Vec<u8> = Vec::new();
    bytes.try_reserve_exact(len as usize).map_err(|e| {
        Error::Memory(format!("{}: cannot allocate {len} bytes to read it ({e})", path.display()))
    })?;
    // `take` bounds the read even if the file grows while it is read.
    (&mut f).take(len).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// An output directory made ready for a command: created (with its parents) if missing and
/// checked writable, so a long computation fails before it starts on a bad destination. Until
/// [`OutputDir::keep`] is called, dropping the guard (a failed run) removes again the folders
/// this guard created, with whatever the failed run had written into them, so a failed run
/// leaves no empty or half-filled folder behind. A folder that existed before is never removed,
/// and nothing inside one is touched.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    /// The folders this guard created, deepest first.
    created: Vec<PathBuf>,
    kept: bool,
}

impl OutputDir {
    /// Creates `dir` (and missing parents) or checks an existing one; dropped without
    /// [`OutputDir::keep`], the guard removes the folders it created.
    pub fn prepare(dir: &Path) -> Result<OutputDir> {
        let mut created = Vec::new();
        let mut p = Some(dir);
        while let Some(q) = p {
            if q.as_os_str().is_empty() || q.exists() {
                break;
            }
            created.push(q.to_path_buf());
            p = q.parent();
        }
        let guard = OutputDir { path: dir.to_path_buf(), created, kept: false };
        ensure_output_dir(dir)?;
        Ok(guard)
    }

    /// The output folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run succeeded: keep the folder.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.kept {
            // The outermost folder this guard created did not exist before the run, so all it
            // holds is this run's partial output.
            if let Some(top) = self.created.last() {
                let _ = fs::remove_dir_all(top);
            }
        }
    }
}

/// Runs `write` to fill the folder `dir` (created if needed, see [`OutputDir`]): when `write`
/// fails, the folders created here are removed again with what it wrote. The one way library
/// functions that write a set of files into a folder create that folder.
pub fn write_into<T>(dir: &Path, write: impl FnOnce() -> Result<T>) -> Result<T> {
    let guard = OutputDir::prepare(dir)?;
    let out = write()?;
    guard.keep();
    Ok(out)
}

/// Creates `dir` (and its parents) if needed and checks that files can be created in it, so a
/// long computation fails before it starts rather than when it tries to save its result.
pub fn ensure_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::io(
            dir,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "output directory path exists but is not a directory",
            ),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| {
        Error::io(dir, io::Error::new(e.kind(), format!("cannot create output directory: {e}")))
    })?;
    let probe = dir.join(format!(
        ".factortopy-write-probe.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let created = OpenOptions::new().write(true).create_new(true).open(&probe);
    match created {
        Ok(f) => {
            drop(f);
            fs::remove_file(&probe).map_err(|e| {
                Error::io(
                    dir,
                    io::Error::new(
                        e.kind(),
                        format!(
                            "output directory is not writable (cannot remove a probe file): {e}"
                        ),
                    ),
                )
            })
        }
        Err(e) => Err(Error::io(
            dir,
            io::Error::new(e.kind(), format!("output directory is not writable: {e}")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") || n.contains("probe"))
            .collect()
    }

    #[test]
    fn atomic_write_creates_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        atomic_write(&p, b"first").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        atomic_write(&p, b"second, longer").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second, longer");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn atomic_write_failure_names_target_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename must fail after the temp file exists.
        let p = d.path().join("target");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"x").unwrap();
        let err = atomic_write(&p, b"data").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
        assert_eq!(fs::read(p.join("keep")).unwrap(), b"x");
    }

    #[test]
    fn atomic_write_missing_dir_is_io_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("no/such/dir/file.bin");
        let err = atomic_write(&p, b"data").unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("file.bin"));
    }

    #[test]
    fn ensure_output_dir_creates_nested_and_cleans_probe() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("x/y/z");
        ensure_output_dir(&out).unwrap();
        assert!(out.is_dir());
        assert!(leftovers(&out).is_empty());
        // Idempotent.
        ensure_output_dir(&out).unwrap();
    }

    /// Hostile input: a device that never ends, a FIFO that blocks and a directory are refused by
    /// the one reader of input files, before any read.
    #[test]
    fn read_input_refuses_non_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(read_input(&p).unwrap(), b"abc");
        for bad in [Path::new("/dev/zero"), d.path()] {
            let e = read_input(bad).unwrap_err().to_string();
            assert!(e.contains("not a regular file") && e.contains(&bad.display().to_string()), "{e}");
        }
        let fifo = d.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let e = read_input(&fifo).unwrap_err().to_string();
            assert!(e.contains("FIFO"), "{e}");
        }
    }

    /// Hostile input: a failed run removes the folders it created, with its partial output, and
    /// nothing else.
    #[test]
    fn output_dir_guard_removes_only_what_it_created() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/b/c");
        drop(OutputDir::prepare(&out).unwrap());
        assert!(!d.path().join("a").exists());
        let kept = OutputDir::prepare(&out).unwrap();
        kept.keep();
        assert!(out.is_dir());
        // Existing folder: never removed, even on failure.
        drop(OutputDir::prepare(&out).unwrap());
        assert!(out.is_dir());
        // A folder this run created goes with what the failed run wrote into it, up to the
        // outermost folder it created.
        let other = d.path().join("x/y");
        let g = OutputDir::prepare(&other).unwrap();
        fs::write(other.join("f"), b"1").unwrap();
        drop(g);
        assert!(!d.path().join("x").exists());
        // Failing inside an existing folder leaves the user's files there.
        fs::write(out.join("mine"), b"user").unwrap();
        let r: Result<()> = write_into(&out, || {
            fs::write(out.join("partial"), b"1").unwrap();
            Err(Error::invalid("failed"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(out.join("mine")).unwrap(), b"user");
        // write_into: a failure removes the new folder and what it held; success keeps it.
        let fresh = d.path().join("p/q");
        let r: Result<()> = write_into(&fresh, || {
            fs::write(fresh.join("half"), b"1").unwrap();
            Err(Error::invalid("failed"))
        });
        assert!(r.is_err() && !d.path().join("p").exists());
        write_into(&fresh, || {
            fs::write(fresh.join("whole"), b"1").unwrap();
            Ok(())
        }).unwrap();
        assert!(fresh.join("whole").is_file());
    }

    #[test]
    fn ensure_output_dir_rejects_a_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("file");
        fs::write(&f, b"x").unwrap();
        let err = ensure_output_dir(&f).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a directory") && msg.contains("file"), "{msg}");
    }
}
