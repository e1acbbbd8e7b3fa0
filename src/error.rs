//! The library's one error type. Every message names what went wrong and, for data problems,
//! the file and tensor, so a user can fix the input without reading the source.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file's content is invalid: bad shape, dtype, non-finite value, truncated header, ...
    #[error("{file}: {msg}")]
    Data { file: String, msg: String },
    /// The operating system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        path: String,
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
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn data(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data { file: file.as_ref().display().to_string(), msg: msg.into() }
    }
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    pub fn mismatch(msg: impl Into<String>) -> Self {
        Error::Mismatch(msg.into())
    }
}
