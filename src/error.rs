//! The library's one error type. Every message names what went wrong and, for data problems,
//! the file and tensor, so a user can fix the input without reading the source.

#![warn(missing_docs)]

use std::path::Path;

/// Every failure of the library: the variant says what kind, the message (`Display`, one line
/// after [`one_line`]) says what exactly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file's content is invalid: bad shape, dtype, non-finite value, truncated header, ...
    #[error("{file}: {msg}")]
    Data {
        /// The file.
        file: String,
        /// What is wrong with it, naming the tensor.
        msg: String,
    },
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Two inputs that must agree do not (image counts, stimulus ids, layer counts).
    #[error("inputs do not match: {0}")]
    Mismatch(String),
    /// A caller-supplied value is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Training produced a non-finite loss or similar numeric failure.
    #[error("numerical failure: {0}")]
    Numeric(String),
    /// The tensor backend failed (should not happen with validated inputs).
    #[error("tensor backend: {0}")]
    Backend(#[from] candle_core::Error),
    /// The CUDA path is unavailable or failed.
    #[error("cuda: {0}")]
    Cuda(String),
    /// A fallible allocation sized by the input failed (see `data::limits`): the system does not
    /// have the memory, and the process goes on instead of aborting.
    #[error("out of memory: {0}")]
    Memory(String),
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// [`Error::Data`] for `file`.
    pub fn data(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data { file: file.as_ref().display().to_string(), msg: msg.into() }
    }
    /// [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
    /// [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    /// [`Error::Mismatch`].
    pub fn mismatch(msg: impl Into<String>) -> Self {
        Error::Mismatch(msg.into())
    }
}

/// A message made safe to print as one line: control characters (a newline or an escape
/// sequence in a tensor name, a file name or a model name) are written as escapes, so an error
/// is always exactly one line and cannot rewrite the user's terminal. The CLI and the C ABI pass
/// every error (and warning) through this.
pub fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_control_characters() {
        let s = super::one_line("tensor `a\nb\u{1b}[2J` in f\r.st: caf\u{e9} R\u{b2}");
        assert_eq!(s, "tensor `a\\nb\\u{1b}[2J` in f\\r.st: caf\u{e9} R\u{b2}");
        assert!(!s.chars().any(char::is_control));
    }
}
