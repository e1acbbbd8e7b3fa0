//! A safetensors file opened by its header alone: tensors are read from the file on request, a
//! block of rows at a time, so a feature set of many gigabytes is never held whole in memory.
//!
//! The header gets the same checks as [`crate::data::TensorFile`]'s (no duplicate keys, every
//! tensor's dtype, shape and offsets consistent, the offsets tiling the data section exactly),
//! against the file's length instead of a buffer.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

use crate::data::safetensors_io::{check_header_text, corrupt, decode_f32, not_float};
use crate::error::{Error, Result};

/// The safetensors format's own limit on the header (100 MB): a longer one is refused before it
/// is read.
const MAX_HEADER_BYTES: u64 = 100_000_000;

#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte offset of the tensor's data in the file, and its length.
    start: u64,
    len: u64,
}

/// An open safetensors file whose header has been validated; no tensor data is read yet.
#[derive(Debug)]
pub struct TensorIndex {
    path: PathBuf,
    file: File,
    metadata: HashMap<String, String>,
    entries: HashMap<String, Entry>,
}

impl TensorIndex {
    /// Opens `path` and validates its header. A file that is not regular, too short, truncated
    /// or whose header is malformed is an [`Error::Data`] naming it.
    pub fn open(path: &Path) -> Result<TensorIndex> {
        let file = crate::data::io::open_input(path)?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if file_len == 0 {
            return Err(corrupt(path, "file is empty (0 bytes)"));
        }
        if file_len < 8 {
            return Err(corrupt(path, format!("file is {file_len} bytes, shorter than the 8-byte header length")));
        }
        let mut len8 = [0u8; 8];
        file.read_exact_at(&mut len8, 0).map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(len8);
        if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
            return Err(corrupt(
                path,
                format!("header length {header_len} does not fit the file's {file_len} bytes (or the 100 MB limit)"),
            ));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(&mut header, 8).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&header).map_err(|e| corrupt(path, format!("header is not UTF-8: {e}")))?;
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        check_header_text(path, text, data_len)?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(path, format!("header: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(corrupt(path, "header is not a JSON object"));
        };
        let mut metadata = HashMap::new();
        let mut entries = HashMap::new();
        for (name, info) in map {
            if name == "__metadata__" {
                metadata = serde_json::from_value(info)
                    .map_err(|e| corrupt(path, format!("`__metadata__` must map strings to strings: {e}")))?;
                continue;
            }
            let bad = |why: String| corrupt(path, format!("tensor `{name}`: {why}"));
            let dtype: Dtype = info
                .get("dtype")
                .cloned()
                .and_then(|d| serde_json::from_value(d).ok())
                .ok_or_else(|| bad("unknown dtype".into()))?;
            // check_header_text has proved shape, offsets and byte length consistent.
            let shape: Vec<usize> = serde_json::from_value(info["shape"].clone()).map_err(|e| bad(e.to_string()))?;
            let offsets: [u64; 2] =
                serde_json::from_value(info["data_offsets"].clone()).map_err(|e| bad(e.to_string()))?;
            entries.insert(name, Entry { dtype, shape, start: data_start + offsets[0], len: offsets[1] - offsets[0] });
        }
        // The offsets must tile the data section exactly, as the format (and TensorFile) demands.
        let mut spans: Vec<(u64, u64, &str)> =
            entries.iter().map(|(n, e)| (e.start - data_start, e.start - data_start + e.len, n.as_str())).collect();
        spans.sort();
        let mut at = 0u64;
        for (s, e, name) in &spans {
            if *s != at {
                return Err(corrupt(path, format!("tensor `{name}`: data starts at byte {s}, expected {at} (offsets must tile the data)")));
            }
            at = *e;
        }
        if at != data_len {
            return Err(corrupt(path, format!("the tensors cover {at} of the file's {data_len} data bytes")));
        }
        Ok(TensorIndex { path: path.to_path_buf(), file, metadata, entries })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether the file holds a tensor of this name.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The `__metadata__` string map.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::data(&self.path, format!("tensor `{name}` is missing")))
    }

    /// A tensor's shape; an error naming the file when it is missing.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.entry(name)?.shape)
    }

    /// A tensor's dtype; an error naming the file when it is missing.
    pub fn dtype(&self, name: &str) -> Result<Dtype> {
        Ok(self.entry(name)?.dtype)
    }

    /// Checks that a tensor holds floating-point values this library decodes.
    pub fn check_float(&self, name: &str) -> Result<()> {
        let e = self.entry(name)?;
        match e.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64 => Ok(()),
            other => Err(not_float(&self.path, name, other)),
        }
    }

    /// Rows `rows` (along the first dimension) of a floating-point tensor, decoded to f32 into
    /// `out` (cleared first). The bytes are read straight from the file, one block at a time.
    pub fn read_rows(&self, name: &str, rows: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        let e = self.entry(name)?;
        self.check_float(name)?;
        let n = e.shape.first().copied().unwrap_or(1);
        if rows.start > rows.end || rows.end > n {
            return Err(Error::invalid(format!("rows {rows:?} of tensor `{name}` with {n} rows")));
        }
        let row_bytes = e.len / n.max(1) as u64;
        let size = (e.dtype.bitsize() / 8).max(1) as u64;
        let count = ((rows.end - rows.start) as u64 * row_bytes / size) as usize;
        out.clear();
        out.try_reserve_exact(count).map_err(|err| {
            Error::Memory(format!("{}: tensor `{name}`: cannot allocate {count} values ({err})", self.path.display()))
        })?;
        // Read in blocks of at most 16 MiB so that the raw bytes never double a large read.
        const BLOCK: u64 = 16 << 20;
        let rows_per_block = (BLOCK / row_bytes.max(1)).max(1) as usize;
        let mut raw = Vec::new();
        let mut r = rows.start;
        while r < rows.end {
            let k = rows_per_block.min(rows.end - r);
            raw.resize(k * row_bytes as usize, 0);
            let at = e.start + r as u64 * row_bytes;
            self.file.read_exact_at(&mut raw, at).map_err(|err| {
                Error::data(&self.path, format!("tensor `{name}`: cannot read rows {r}..{}: {err}", r + k))
            })?;
            decode_f32(e.dtype, &raw, out).expect("checked floating-point dtype");
            r += k;
        }
        Ok(())
    }

    /// A whole floating-point tensor decoded to f32.
    pub fn read_f32(&self, name: &str) -> Result<crate::data::Array> {
        let shape = self.shape(name)?.to_vec();
        let mut data = Vec::new();
        let n = shape.first().copied().unwrap_or(1);
        if shape.is_empty() {
            // A scalar: one row of one value.
            let e = self.entry(name)?;
            let mut raw = vec![0u8; e.len as usize];
            self.file.read_exact_at(&mut raw, e.start).map_err(|err| Error::io(&self.path, err))?;
            decode_f32(e.dtype, &raw, &mut data).ok_or_else(|| not_float(&self.path, name, e.dtype))?;
        } else {
            self.read_rows(name, 0..n, &mut data)?;
        }
        Ok(crate::data::Array { shape, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::safetensors_io::tests::{f16_bytes, write_raw};
    use crate::data::TensorFile;

    fn f32b(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_rows_as_the_whole_file_reader_does() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        let a: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..6).map(|i| i as f32 * 0.25).collect();
        write_raw(
            &p,
            &[("a", Dtype::F32, vec![4, 3, 2], f32b(&a)), ("b", Dtype::F16, vec![3, 2], f16_bytes(&b))],
            &[("model", "m")],
        );
        let idx = TensorIndex::open(&p).unwrap();
        let whole = TensorFile::open(&p).unwrap();
        assert_eq!(idx.names(), whole.names());
        assert_eq!(idx.metadata().get("model").map(String::as_str), Some("m"));
        assert_eq!(idx.read_f32("a").unwrap(), whole.f32("a").unwrap());
        assert_eq!(idx.read_f32("b").unwrap(), whole.f32("b").unwrap());
        let mut out = vec![99.0];
        idx.read_rows("a", 1..3, &mut out).unwrap();
        assert_eq!(out, a[6..18]);
        idx.read_rows("a", 2..2, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(idx.read_rows("a", 3..5, &mut out).is_err());
        assert!(idx.read_rows("c", 0..1, &mut out).unwrap_err().to_string().contains("`c` is missing"));
    }

    #[test]
    fn refuses_what_the_whole_file_reader_refuses() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        write_raw(&p, &[("a", Dtype::F32, vec![2, 2], f32b(&[1.0, 2.0, 3.0, 4.0]))], &[]);
        let bytes = std::fs::read(&p).unwrap();
        let q = d.path().join("bad.safetensors");
        for cut in [0, 3, 12, bytes.len() - 1] {
            std::fs::write(&q, &bytes[..cut]).unwrap();
            let e = TensorIndex::open(&q).unwrap_err().to_string();
            assert!(e.contains("bad.safetensors") && !e.contains('\n'), "{cut}: {e}");
            assert!(TensorFile::open(&q).is_err());
        }
        // Extra bytes after the data are not covered by any tensor.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        std::fs::write(&q, &longer).unwrap();
        assert!(TensorIndex::open(&q).unwrap_err().to_string().contains("cover"));
        assert!(TensorFile::open(&q).is_err());
        assert!(TensorIndex::open(d.path()).unwrap_err().to_string().contains("not a regular file"));
    }
}
