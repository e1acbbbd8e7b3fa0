//! File output that never leaves a half-written file or a half-finished set behind.
//!
//! Every writer in the library goes through [`atomic_write`]: a crash, a full disk or a killed
//! training job must leave either the old file or the complete new one, because users resume
//! from these files (monitor state, fitted encoders) and a torn file would be read as corrupt.
//! Every command that fills a folder with a set of files (a fit's encoder, selectors, pictures
//! and report; a monitor's history, charts and state) goes through [`write_into`], which stages
//! the set in a hidden folder beside the destination and moves it in only once all of it is
//! written, so a failed run leaves the folder exactly as it found it.
//!
//! A process killed between creating a temporary file and renaming it leaves that file behind;
//! the next successful write to the same folder removes the temporaries of processes that no
//! longer exist ([`remove_stale_temporaries`]).

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

/// The leading part of the hidden folder a set of files is staged in (see [`write_into`]).
const STAGING_PREFIX: &str = ".factortopy-staging";
/// The leading part of the probe file that checks an output folder is writable.
const PROBE_PREFIX: &str = ".factortopy-write-probe";

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
    remove_stale_temporaries(parent_dir(path));
    Ok(())
}

/// The process id a temporary name of this library carries, when `name` is one:
/// `.<file>.<pid>.<n>.tmp` (an [`atomic_write`] temp file, also the Python converter's),
/// `.factortopy-staging.<pid>.<n>` (a staged set) or `.factortopy-write-probe.<pid>.<n>`.
fn temporary_owner(name: &str) -> Option<u32> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rest = name.strip_prefix('.')?;
    let stem = match rest.strip_suffix(".tmp") {
        Some(stem) => stem,
        None if name.starts_with(STAGING_PREFIX) || name.starts_with(PROBE_PREFIX) => rest,
        None => return None,
    };
    let (stem, n) = stem.rsplit_once('.')?;
    let (file, pid) = stem.rsplit_once('.')?;
    if file.is_empty() || !digits(n) || !digits(pid) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists. Only answered where `/proc` lists processes (Linux); elsewhere
/// every process counts as alive, so nothing is removed that might still be written.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Removes from `dir` the temporary files and staging folders of this library (see
/// `temporary_owner`) whose process no longer exists: what a run killed between writing a
/// temporary and renaming it left behind. Names of live processes (this one included) are
/// never touched, nor any name of another pattern. Best effort: a temporary that cannot be
/// removed stays, and the write that triggered the sweep still succeeds.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temporary_owner) else { continue };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = e.path();
        // `symlink_metadata`: a link is removed as a link, never followed.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => {}
        }
    }
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

/// A set of files staged in a hidden folder inside their destination (same filesystem, so each
/// file moves in with one rename). Dropped without [`Staging::commit`] (a failed run), the
/// staging folder goes with everything written into it and the destination is untouched.
#[derive(Debug)]
struct Staging {
    dir: PathBuf,
    stage: PathBuf,
    committed: bool,
}

impl Staging {
    fn new(dir: &Path) -> Result<Staging> {
        let stage = dir.join(format!(
            "{STAGING_PREFIX}.{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&stage).map_err(|e| {
            Error::io(&stage, io::Error::new(e.kind(), format!("cannot create a staging folder: {e}")))
        })?;
        Ok(Staging { dir: dir.to_path_buf(), stage, committed: false })
    }

    /// Moves every staged file into the destination, replacing files of the same name. Checked
    /// first that no destination name is a folder (the one rename that would fail on a healthy
    /// filesystem), so that the set moves in whole.
    fn commit(mut self) -> Result<()> {
        let mut names = Vec::new();
        for e in fs::read_dir(&self.stage).map_err(|e| Error::io(&self.stage, e))? {
            let e = e.map_err(|e| Error::io(&self.stage, e))?;
            let target = self.dir.join(e.file_name());
            if e.file_type().map_err(|x| Error::io(e.path(), x))?.is_dir() {
                return Err(Error::io(
                    e.path(),
                    io::Error::new(io::ErrorKind::InvalidInput, "a staged output is a folder; outputs are files"),
                ));
            }
            if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                return Err(Error::io(
                    &target,
                    io::Error::new(io::ErrorKind::AlreadyExists, "is a folder; cannot replace it with an output file"),
                ));
            }
            names.push(e.file_name());
        }
        names.sort();
        for name in &names {
            let target = self.dir.join(name);
            fs::rename(self.stage.join(name), &target).map_err(|e| Error::io(&target, e))?;
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.committed = true;
        let _ = fs::remove_dir(&self.stage);
        remove_stale_temporaries(&self.dir);
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.stage);
        }
    }
}

/// Fills the folder `dir` (created if needed, see [`OutputDir`]) with a whole set of files or
/// not at all: `write` gets a hidden staging folder inside `dir` and writes every file of the set
/// there (under its final name); when it succeeds, the files are renamed into `dir`, replacing
/// files of the same names, and the staging folder is removed. When `write` fails, the staged
/// files go, and so do the folders created here: `dir` is left exactly as it was found. The one
/// way library functions that write a set of files into a folder do it (paths that `write`
/// returns should name the files in `dir`, not in the staging folder).
pub fn write_into<T>(dir: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let guard = OutputDir::prepare(dir)?;
    let stage = Staging::new(dir)?;
    let out = write(&stage.stage)?;
    stage.commit()?;
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
        "{PROBE_PREFIX}.{}.{}",
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
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
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
        let r: Result<()> = write_into(&out, |stage| {
            fs::write(stage.join("partial"), b"1").unwrap();
            Err(Error::invalid("failed"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(out.join("mine")).unwrap(), b"user");
        assert!(!out.join("partial").exists());
        // write_into: a failure removes the new folder and what it held; success keeps it.
        let fresh = d.path().join("p/q");
        let r: Result<()> = write_into(&fresh, |stage| {
            fs::write(stage.join("half"), b"1").unwrap();
            Err(Error::invalid("failed"))
        });
        assert!(r.is_err() && !d.path().join("p").exists());
        write_into(&fresh, |stage| {
            fs::write(stage.join("whole"), b"1").unwrap();
            Ok(())
        }).unwrap();
        assert!(fresh.join("whole").is_file());
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// Hostile failure: a set that fails part-way (the last file cannot be written) leaves the
    /// folder exactly as it was, the user's older files of the same names included; a set that
    /// succeeds replaces them all at once and leaves no staging folder.
    #[test]
    fn a_set_moves_in_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        for f in ["encoder.safetensors", "layer_map.png", "report.json"] {
            fs::write(out.join(f), b"old").unwrap();
        }
        fs::write(out.join("notes.txt"), b"mine").unwrap();
        let before = names(out);
        let r: Result<()> = write_into(out, |stage| {
            atomic_write(&stage.join("encoder.safetensors"), b"new")?;
            atomic_write(&stage.join("layer_map.png"), b"new")?;
            Err(Error::invalid("report.json cannot be written"))
        });
        assert!(r.is_err());
        assert_eq!(names(out), before);
        for f in ["encoder.safetensors", "layer_map.png", "report.json"] {
            assert_eq!(fs::read(out.join(f)).unwrap(), b"old", "{f}");
        }
        write_into(out, |stage| {
            for f in ["encoder.safetensors", "layer_map.png", "report.json", "selectors.safetensors"] {
                atomic_write(&stage.join(f), b"new")?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(names(out), ["encoder.safetensors", "layer_map.png", "notes.txt", "report.json", "selectors.safetensors"]);
        for f in ["encoder.safetensors", "layer_map.png", "report.json", "selectors.safetensors"] {
            assert_eq!(fs::read(out.join(f)).unwrap(), b"new", "{f}");
        }
        assert_eq!(fs::read(out.join("notes.txt")).unwrap(), b"mine");
        // A destination name that is a folder is refused before anything moves.
        fs::create_dir(out.join("report.json.d")).unwrap();
        let r = write_into(out, |stage| {
            atomic_write(&stage.join("encoder.safetensors"), b"newer")?;
            atomic_write(&stage.join("report.json.d"), b"newer")
        });
        assert!(r.unwrap_err().to_string().contains("is a folder"));
        assert_eq!(fs::read(out.join("encoder.safetensors")).unwrap(), b"new");
        assert!(!names(out).iter().any(|n| n.starts_with(STAGING_PREFIX)));
    }

    /// Hostile leftovers: temporaries of a killed run (a dead pid) are removed by the next
    /// successful write to the folder; those of live processes and look-alike user files stay.
    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        // A pid that does not exist: above the kernel's pid_max.
        let dead = 4_194_305u32 + 7;
        let live = std::process::id();
        let stale = [
            format!(".encoder.safetensors.{dead}.3.tmp"),
            format!(".history.jsonl.{dead}.0.tmp"),
            format!(".factortopy-write-probe.{dead}.1"),
        ];
        for n in &stale {
            fs::write(out.join(n), b"x").unwrap();
        }
        let staged = out.join(format!(".factortopy-staging.{dead}.2"));
        fs::create_dir(&staged).unwrap();
        fs::write(staged.join("report.json"), b"x").unwrap();
        let keep = [
            format!(".encoder.safetensors.{live}.999.tmp"),
            format!(".encoder.safetensors.1.{dead}.tmp.bak"),
            "notes.1.2.tmp".to_string(),
            format!(".{dead}.1.tmp"),
            "mine.tmp".to_string(),
        ];
        for n in &keep {
            fs::write(out.join(n), b"x").unwrap();
        }
        atomic_write(&out.join("report.json"), b"{}").unwrap();
        let mut want: Vec<String> = keep.to_vec();
        want.push("report.json".into());
        want.sort();
        assert_eq!(names(out), want);
        assert_eq!(temporary_owner(".a.b.12.3.tmp"), Some(12));
        assert_eq!(temporary_owner(".factortopy-staging.77.0"), Some(77));
        assert_eq!(temporary_owner("a.12.3.tmp"), None);
        assert_eq!(temporary_owner(".a.12.x.tmp"), None);
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
