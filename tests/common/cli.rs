//! Running the `factortopy` binary as a user does: the command, its output, and the checks
//! every command-line test makes of it.

use std::path::Path;
use std::process::{Command, Output};

/// The `factortopy` binary cargo built for these tests, ready for arguments.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_factortopy"))
}

/// Runs `factortopy args…` to the end.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run factortopy")
}

/// The standard output of a run that must have succeeded (exit status 0); otherwise the test
/// fails with the run's standard error.
#[track_caller]
pub fn stdout_ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).expect("UTF-8 standard output")
}

/// Runs `factortopy args…`, which must succeed, and returns its standard output.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    stdout_ok(&run(args))
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Exit status 1 and exactly one `error: ` line on stderr, the last one, mentioning every word;
/// returns that line.
#[track_caller]
pub fn fails_cleanly(o: &Output, words: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "expected exit 1, got {:?}; stderr:\n{err}", o.status);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{err}");
    assert_eq!(err.lines().last(), Some(errors[0]), "the error must be the last line:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in words {
        assert!(errors[0].contains(w), "error {:?} does not mention {w:?}", errors[0]);
    }
    errors[0].to_string()
}
