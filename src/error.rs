//! The library's one error type. Every message names what went wrong and, for data problems,
//! the file and tensor, so a user can fix the input without reading the source.

#![warn(missing_docs)]

use std::path::Path;

/// Every failure of the library: the variant says what kind (what a caller branches on), the
/// message (`Display`, one line after [`one_line`]) says what exactly, naming the file, the
/// tensor and the problem. New kinds may be added: match with a `_` arm.
///
/// The C ABI's status of each variant is given in one place (`ffi`'s `From<Error>`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file's content is invalid: a truncated header, a non-finite value, inconsistent
    /// metadata, ... (a tensor of the wrong shape or dtype in a file is [`Error::Shape`] or
    /// [`Error::Dtype`] with its `file`).
    #[error("{file}: {msg}")]
    Data {
        /// The file.
        file: String,
        /// What is wrong with it, naming the tensor.
        msg: String,
    },
    /// A tensor or array has the wrong number of dimensions or a shape that does not fit.
    #[error("{}", located(file.as_deref(), msg))]
    Shape {
        /// The file the tensor was read from; `None` for a tensor the caller passed in memory.
        file: Option<String>,
        /// The tensor, as the file or the caller names it.
        tensor: String,
        /// What is wrong with its shape (the message names the tensor too).
        msg: String,
    },
    /// A tensor's element type is not one the library reads there.
    #[error("{}", located(file.as_deref(), msg))]
    Dtype {
        /// The file the tensor was read from; `None` for a tensor the caller passed in memory.
        file: Option<String>,
        /// The tensor, as the file or the caller names it.
        tensor: String,
        /// What is wrong with its element type (the message names the tensor too).
        msg: String,
    },
    /// A tensor lives in memory the library cannot read (CUDA device memory, say).
    #[error("{msg}")]
    Device {
        /// The tensor, as the caller names it.
        tensor: String,
        /// Where it lives and what the library can read instead.
        msg: String,
    },
    /// The device asked for cannot be used now: no CUDA in this build, no driver, NVRTC or
    /// cuBLAS, a driver too old, an ordinal the machine does not have.
    #[error("cuda: {reason}")]
    DeviceUnavailable {
        /// The device as asked for (`cuda:0`).
        device: String,
        /// Why it cannot be used and what to do about it.
        reason: String,
    },
    /// An input file or folder does not exist.
    #[error("{path}: {source}")]
    NotFound {
        /// The file or folder.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
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
    #[error("invalid argument: {msg}")]
    InvalidArgument {
        /// The argument, setting or flag as the caller wrote it (`lr`, `--val-fraction`), when
        /// one argument is at fault; `None` when the problem is a combination or a value
        /// without a name.
        name: Option<String>,
        /// What is wrong (the message names the argument too).
        msg: String,
    },
    /// Training produced a non-finite loss or similar numeric failure.
    #[error("numerical failure: {0}")]
    Numeric(String),
    /// The tensor backend failed (should not happen with validated inputs); its message.
    #[error("tensor backend: {0}")]
    Backend(String),
    /// A CUDA call failed on a device that could be used (launching a kernel, a copy, cuBLAS).
    #[error("cuda: {0}")]
    Cuda(String),
    /// A fallible allocation sized by the input failed (see `data::limits`): the system does not
    /// have the memory, and the process goes on instead of aborting.
    #[error("out of memory: {0}")]
    Memory(String),
}

/// `file: msg`, or `msg` alone for a tensor that did not come from a file.
fn located(file: Option<&str>, msg: &str) -> String {
    match file {
        Some(f) => format!("{f}: {msg}"),
        None => msg.to_string(),
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The tensor backend's errors become [`Error::Backend`] with their message, so that `?` works on
/// backend calls inside the library while no variant exposes the backend's own error type.
#[doc(hidden)]
impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Backend(backend_message(e))
    }
}

/// The backend's message on one line: without the stack trace it attaches when `RUST_BACKTRACE`
/// is set (many lines a user cannot act on), its context before the error it explains.
fn backend_message(e: candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => backend_message(*inner),
        candle_core::Error::Context { inner, context } => format!("{context}: {}", backend_message(*inner)),
        other => other.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; "),
    }
}

impl Error {
    /// [`Error::Data`] for `file`.
    pub fn data(file: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data { file: file.as_ref().display().to_string(), msg: msg.into() }
    }
    /// [`Error::Io`] for `path`, or [`Error::NotFound`] when the operating system says the file
    /// or folder does not exist.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound { path, source }
        } else {
            Error::Io { path, source }
        }
    }
    /// [`Error::InvalidArgument`] without a single argument to blame.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument { name: None, msg: msg.into() }
    }
    /// [`Error::InvalidArgument`] naming the argument, setting or flag `name` at fault.
    pub fn invalid_arg(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { name: Some(name.into()), msg: msg.into() }
    }
    /// [`Error::Mismatch`].
    pub fn mismatch(msg: impl Into<String>) -> Self {
        Error::Mismatch(msg.into())
    }
    /// [`Error::Shape`] of the tensor `tensor` the caller passed in memory.
    pub fn shape(tensor: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape { file: None, tensor: tensor.into(), msg: msg.into() }
    }
    /// [`Error::Shape`] of the tensor `tensor` read from `file`.
    pub fn shape_in(file: impl AsRef<Path>, tensor: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape { file: Some(file.as_ref().display().to_string()), tensor: tensor.into(), msg: msg.into() }
    }
    /// [`Error::Dtype`] of the tensor `tensor` the caller passed in memory.
    pub fn dtype(tensor: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Dtype { file: None, tensor: tensor.into(), msg: msg.into() }
    }
    /// [`Error::Dtype`] of the tensor `tensor` read from `file`.
    pub fn dtype_in(file: impl AsRef<Path>, tensor: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Dtype { file: Some(file.as_ref().display().to_string()), tensor: tensor.into(), msg: msg.into() }
    }
    /// [`Error::DeviceUnavailable`] for `device`.
    pub fn device_unavailable(device: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::DeviceUnavailable { device: device.to_string(), reason: reason.into() }
    }
    /// The argument, setting or flag at fault, when the error is an [`Error::InvalidArgument`]
    /// that names one.
    pub fn argument(&self) -> Option<&str> {
        match self {
            Error::InvalidArgument { name, .. } => name.as_deref(),
            _ => None,
        }
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
    use super::Error;

    /// Every variant's message: one line, naming the file (when there is one), the tensor or
    /// argument and the problem, as the constructors are given them.
    #[test]
    fn every_variant_displays_one_line_naming_what_and_where() {
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
        let not_found_text = not_found.to_string();
        let cases: Vec<(Error, String)> = vec![
            (Error::data("b.st", "tensor `roi` has value 7"), "b.st: tensor `roi` has value 7".into()),
            (
                Error::shape_in("f.st", "layers.0.local", "tensor `layers.0.local` has shape [2]"),
                "f.st: tensor `layers.0.local` has shape [2]".into(),
            ),
            (Error::shape("coords", "coords must be [V, 3], got [4]"), "coords must be [V, 3], got [4]".into()),
            (Error::dtype_in("f.st", "roi", "tensor `roi` has dtype F32"), "f.st: tensor `roi` has dtype F32".into()),
            (Error::dtype("x", "x has dtype complex64"), "x has dtype complex64".into()),
            (
                Error::Device { tensor: "x".into(), msg: "x is on CUDA device 0".into() },
                "x is on CUDA device 0".into(),
            ),
            (Error::device_unavailable("cuda:3", "no driver"), "cuda: no driver".into()),
            (Error::io("missing.st", not_found), format!("missing.st: {not_found_text}")),
            (Error::io("ro", std::io::Error::other("read-only")), "ro: read-only".into()),
            (Error::mismatch("3 images vs 4"), "inputs do not match: 3 images vs 4".into()),
            (Error::invalid("a and b together"), "invalid argument: a and b together".into()),
            (Error::invalid_arg("lr", "lr must be positive, got -1"), "invalid argument: lr must be positive, got -1".into()),
            (Error::Numeric("loss became NaN".into()), "numerical failure: loss became NaN".into()),
            (Error::Backend("matmul failed".into()), "tensor backend: matmul failed".into()),
            (Error::Cuda("launching k: fault".into()), "cuda: launching k: fault".into()),
            (Error::Memory("cannot allocate 9 bytes".into()), "out of memory: cannot allocate 9 bytes".into()),
        ];
        for (e, want) in cases {
            let got = e.to_string();
            assert_eq!(got, want, "{e:?}");
            assert!(!got.contains('\n'), "{got}");
        }
    }

    /// The structured fields callers branch on are filled by the constructors; a missing file
    /// is told apart from other refusals; the backend's errors arrive as a message.
    #[test]
    fn constructors_fill_the_fields_callers_branch_on() {
        let e = Error::io("in.st", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(&e, Error::NotFound { path, .. } if path == "in.st"), "{e:?}");
        let e = Error::io("in.st", std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(matches!(&e, Error::Io { path, .. } if path == "in.st"), "{e:?}");
        assert_eq!(Error::invalid_arg("--epochs", "x").argument(), Some("--epochs"));
        assert_eq!(Error::invalid("x").argument(), None);
        assert_eq!(Error::mismatch("x").argument(), None);
        let e = Error::shape_in("f.st", "coords", "m");
        assert!(matches!(&e, Error::Shape { file: Some(f), tensor, .. } if f == "f.st" && tensor == "coords"), "{e:?}");
        let e = Error::dtype("x", "m");
        assert!(matches!(&e, Error::Dtype { file: None, tensor, .. } if tensor == "x"), "{e:?}");
        let e = Error::device_unavailable(crate::engine::Device::Cuda(2), "gone");
        assert!(matches!(&e, Error::DeviceUnavailable { device, reason } if device == "cuda:2" && reason == "gone"));
        let backend = candle_core::Tensor::zeros(2, candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap()
            .reshape(3)
            .unwrap_err();
        // Its message, without the stack trace candle appends when RUST_BACKTRACE is set.
        let text = backend.to_string();
        let e = Error::from(backend);
        assert!(matches!(&e, Error::Backend(m) if text.starts_with(m.as_str()) && m.contains("shape") && !m.contains('\n')), "{e:?}");
        // A stack trace is dropped and a context kept, on one line.
        let traced = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("bad op".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(Error::from(traced).to_string(), "tensor backend: bad op");
        let explained = candle_core::Error::Msg("bad op".into()).context("loading `w`");
        assert_eq!(Error::from(explained).to_string(), "tensor backend: loading `w`: bad op");
    }

    #[test]
    fn one_line_escapes_control_characters() {
        let s = super::one_line("tensor `a\nb\u{1b}[2J` in f\r.st: caf\u{e9} R\u{b2}");
        assert_eq!(s, "tensor `a\\nb\\u{1b}[2J` in f\\r.st: caf\u{e9} R\u{b2}");
        assert!(!s.chars().any(char::is_control));
    }
}
