//! Reading untrusted safetensors files and writing deterministic ones.
//!
//! Input files come from users' training scripts, so every header field is treated as hostile:
//! the `safetensors` crate checks the header length, JSON and that the offsets tile the data
//! exactly; this module adds dtype conversion with clear, one-line errors naming file and
//! tensor.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, View};

use crate::data::array::Array;
use crate::data::io::atomic_write;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range of the tensor's data inside `TensorFile::bytes`.
    range: Range<usize>,
}

/// A safetensors file read fully into memory and validated. Tensors are decoded on request.
#[derive(Debug, Clone)]
pub struct TensorFile {
    /// The file, for error messages.
    pub path: PathBuf,
    /// The `__metadata__` string map (empty when the file has none).
    pub metadata: HashMap<String, String>,
    bytes: Vec<u8>,
    entries: HashMap<String, Entry>,
}

pub(crate) fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    // serde_json messages can span lines in rare cases; the contract is one-line errors.
    let why = why.to_string().replace('\n', " ");
    Error::data(path, format!("truncated or corrupt safetensors file: {why}"))
}

/// A JSON value that refuses an object with the same key twice, at any depth. serde_json keeps
/// the last of two equal keys without a word, so a header listing a tensor twice (or
/// `__metadata__` listing `roi_names` twice) would silently read one of two contradicting
/// entries.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("key `{key}` appears twice")));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> std::result::Result<Self, E> {
        Ok(NoDuplicateKeys)
    }
}

/// Bytes per element of a safetensors dtype name; `None` for names this library does not know
/// (the crate then decides).
fn dtype_bytes(name: &str) -> Option<usize> {
    Some(match name {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Checks the header before the `safetensors` crate parses it: no duplicate keys anywhere, and
/// each tensor's dtype, shape and data offsets consistent, with errors that name the tensor (the
/// crate's own messages do not). Anything this check does not understand is left to the crate.
fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
        return Ok(());
    };
    let Some(header) = usize::try_from(len).ok().and_then(|n| bytes.get(8..8usize.checked_add(n)?)) else {
        return Ok(());
    };
    let Ok(text) = std::str::from_utf8(header) else {
        return Ok(());
    };
    check_header_text(path, text, (bytes.len() - 8 - header.len()) as u64)
}

/// [`check_header`] on the header's JSON text, for a file whose data section holds `data_len`
/// bytes.
pub(crate) fn check_header_text(path: &Path, text: &str, data_len: u64) -> Result<()> {
    if let Err(e) = serde_json::from_str::<NoDuplicateKeys>(text) {
        if e.is_data() {
            return Err(corrupt(path, format!("header: {e}")));
        }
        // Syntax errors are reported by the crate.
        return Ok(());
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(());
    };
    for (name, info) in &map {
        if name == "__metadata__" {
            continue;
        }
        let bad = |why: String| corrupt(path, format!("tensor `{name}`: {why}"));
        let dtype = info.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<u64>> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let offsets: Option<Vec<u64>> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let (Some(dtype), Some(shape), Some(offsets)) = (dtype, shape, offsets) else {
            return Err(bad("needs a `dtype` string, a `shape` list of sizes and two `data_offsets`".into()));
        };
        let Some(size) = dtype_bytes(dtype) else {
            continue;
        };
        let [start, end] = offsets[..] else {
            return Err(bad(format!("has {} data offsets; expected 2", offsets.len())));
        };
        if start > end || end > data_len {
            return Err(bad(format!(
                "data offsets [{start}, {end}] are outside the file's {data_len} data bytes"
            )));
        }
        let need = shape.iter().try_fold(size as u64, |a, &d| a.checked_mul(d));
        if need != Some(end - start) {
            return Err(bad(format!(
                "shape {shape:?} of {dtype} needs {} bytes but its data offsets [{start}, {end}] hold {}",
                need.map_or("more than 2^64".to_string(), |n| n.to_string()),
                end - start
            )));
        }
    }
    Ok(())
}

/// Decodes little-endian floating-point values (F32, F16, BF16 or F64) to f32, appending to
/// `out`; `None` for any other dtype. F64 values beyond the f32 range become infinite and are
/// caught by the loaders' finiteness checks.
pub(crate) fn decode_f32(dtype: Dtype, raw: &[u8], out: &mut Vec<f32>) -> Option<()> {
    match dtype {
        Dtype::F32 => out.extend(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        Dtype::F16 => out.extend(raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())),
        Dtype::BF16 => out.extend(raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        Dtype::F64 => out.extend(
            raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32),
        ),
        _ => return None,
    }
    Some(())
}

pub(crate) fn not_float(path: &Path, name: &str, dtype: Dtype) -> Error {
    Error::dtype_in(
        path,
        name,
        format!("tensor `{name}` has dtype {dtype}; expected a floating-point dtype (F32, F16, BF16 or F64)"),
    )
}

impl TensorFile {
    /// Reads and validates the whole file. A short, empty, truncated or otherwise malformed file
    /// is an [`Error::Data`] naming the file.
    pub fn open(path: &Path) -> Result<TensorFile> {
        Self::from_bytes(path, crate::data::io::read_input(path)?)
    }

    /// Parses an in-memory safetensors buffer; `path` is only used in error messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<TensorFile> {
        if bytes.is_empty() {
            return Err(corrupt(path, "file is empty (0 bytes)"));
        }
        if bytes.len() < 8 {
            return Err(corrupt(
                path,
                format!("file is {} bytes, shorter than the 8-byte header length", bytes.len()),
            ));
        }
        check_header(path, &bytes)?;
        let (header_len, meta) =
            SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(path, e))?;
        let data_start = 8 + header_len;
        let mut entries = HashMap::new();
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            // read_metadata already proved the offsets tile the data section exactly; the
            // checked arithmetic only keeps a future crate change from turning into a panic.
            let range = data_start
                .checked_add(s)
                .zip(data_start.checked_add(e))
                .filter(|(a, b)| a <= b && *b <= bytes.len())
                .map(|(a, b)| a..b)
                .ok_or_else(|| corrupt(path, format!("invalid offsets for tensor `{name}`")))?;
            entries.insert(name, Entry { dtype: info.dtype, shape: info.shape.clone(), range });
        }
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(TensorFile { path: path.to_path_buf(), metadata, bytes, entries })
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

    /// Shape of a tensor without decoding it.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.entry(name)?.shape)
    }

    /// The stored dtype of a tensor, as the safetensors name ("F32", "BF16", ...).
    pub fn dtype_name(&self, name: &str) -> Result<String> {
        Ok(self.entry(name)?.dtype.to_string())
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::data(&self.path, format!("tensor `{name}` is missing")))
    }

    fn raw(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.range.clone()]
    }

    /// Decodes a floating-point tensor (F32, F16, BF16 or F64) to f32. F64 values beyond the
    /// f32 range become infinite and are caught by the loaders' finiteness checks.
    pub fn f32(&self, name: &str) -> Result<Array> {
        let e = self.entry(name)?;
        let raw = self.raw(e);
        let mut data = crate::data::limits::try_with_capacity(name, raw.len() / (e.dtype.bitsize() / 8).max(1))?;
        decode_f32(e.dtype, raw, &mut data).ok_or_else(|| not_float(&self.path, name, e.dtype))?;
        Ok(Array { shape: e.shape.clone(), data })
    }

    /// Decodes an integer tensor to i32. Accepts I32, I64, I16, I8, U8, U16, U32 and BOOL;
    /// values outside the i32 range are an error naming the tensor and the flat index.
    pub fn i32(&self, name: &str) -> Result<(Vec<usize>, Vec<i32>)> {
        let e = self.entry(name)?;
        let raw = self.raw(e);
        let wide: Vec<i64> = match e.dtype {
            Dtype::I32 => {
                let v = raw
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                return Ok((e.shape.clone(), v));
            }
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            Dtype::U32 => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect(),
            Dtype::I16 => {
                raw.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()
            }
            Dtype::U16 => {
                raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()
            }
            Dtype::I8 => raw.iter().map(|&b| b as i8 as i64).collect(),
            Dtype::U8 | Dtype::BOOL => raw.iter().map(|&b| b as i64).collect(),
            other => {
                return Err(Error::dtype_in(
                    &self.path,
                    name,
                    format!(
                        "tensor `{name}` has dtype {other}; expected an integer dtype \
                         (I32, I64, I16, I8, U8, U16, U32 or BOOL)"
                    ),
                ))
            }
        };
        let mut out = Vec::with_capacity(wide.len());
        for (i, &v) in wide.iter().enumerate() {
            let Ok(x) = i32::try_from(v) else {
                return Err(Error::data(
                    &self.path,
                    format!(
                        "tensor `{name}` ({}) has value {v} at flat index {i}, outside the i32 range",
                        e.dtype
                    ),
                ));
            };
            out.push(x);
        }
        Ok((e.shape.clone(), out))
    }

    /// Raw bytes of a U8 or BOOL tensor.
    pub fn u8(&self, name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
        let e = self.entry(name)?;
        match e.dtype {
            Dtype::U8 | Dtype::BOOL => Ok((e.shape.clone(), self.raw(e).to_vec())),
            other => Err(Error::dtype_in(
                &self.path,
                name,
                format!("tensor `{name}` has dtype {other}; expected U8 or BOOL"),
            )),
        }
    }
}

/// A tensor to write. The data is borrowed so large arrays are not copied before
/// serialisation.
#[derive(Debug, Clone)]
pub enum OutTensor<'a> {
    /// An f32 tensor.
    F32 {
        /// The size of each dimension.
        shape: Vec<usize>,
        /// The values, row-major.
        data: &'a [f32],
    },
    /// An i32 tensor.
    I32 {
        /// The size of each dimension.
        shape: Vec<usize>,
        /// The values, row-major.
        data: &'a [i32],
    },
    /// A u8 tensor.
    U8 {
        /// The size of each dimension.
        shape: Vec<usize>,
        /// The values, row-major.
        data: &'a [u8],
    },
}

impl<'a> OutTensor<'a> {
    /// Convenience for the common case of writing an [`Array`].
    pub fn from_array(a: &'a Array) -> Self {
        OutTensor::F32 { shape: a.shape.clone(), data: &a.data }
    }

    fn parts(&self) -> (Dtype, &[usize], usize) {
        match self {
            OutTensor::F32 { shape, data } => (Dtype::F32, shape, data.len()),
            OutTensor::I32 { shape, data } => (Dtype::I32, shape, data.len()),
            OutTensor::U8 { shape, data } => (Dtype::U8, shape, data.len()),
        }
    }

    fn le_bytes(&self) -> Vec<u8> {
        match self {
            OutTensor::F32 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            OutTensor::I32 { data, .. } => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            OutTensor::U8 { data, .. } => data.to_vec(),
        }
    }
}

struct Prepared {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Prepared {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Serialises tensors and string metadata to safetensors bytes. Output is byte-for-byte
/// deterministic: data is laid out by the crate (alignment class, then name) and the JSON header
/// is re-emitted with sorted keys, because the crate takes the metadata as a `HashMap` whose
/// iteration order changes from run to run.
pub fn serialize_tensors(
    tensors: &[(String, OutTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut prepared = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(Error::invalid(format!("tensor `{name}` is given twice")));
        }
        let (dtype, shape, len) = t.parts();
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(len) {
            return Err(Error::shape(
                name.as_str(),
                format!("tensor `{name}`: shape {shape:?} does not match its {len} values"),
            ));
        }
        prepared
            .push((name.clone(), Prepared { dtype, shape: shape.to_vec(), bytes: t.le_bytes() }));
    }
    prepared.sort_by(|a, b| a.0.cmp(&b.0));
    let meta: Option<HashMap<String, String>> = if metadata.is_empty() {
        None
    } else {
        Some(metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    };
    let raw = safetensors::serialize(prepared.iter().map(|(n, p)| (n.as_str(), p)), meta)
        .map_err(|e| Error::invalid(format!("cannot serialise safetensors: {e}")))?;
    canonical_header(raw)
}

fn canonical_header(raw: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::invalid(format!("safetensors serialiser produced {why}"));
    let n = u64::from_le_bytes(raw[..8].try_into().map_err(|_| bad("a short buffer"))?) as usize;
    let header = raw.get(8..8 + n).ok_or_else(|| bad("a short header"))?;
    let mut value: serde_json::Value =
        serde_json::from_slice(header).map_err(|_| bad("an unparsable header"))?;
    sort_keys(&mut value);
    let mut out_header = serde_json::to_vec(&value).map_err(|_| bad("an unprintable header"))?;
    // Same padding rule as the crate: the data section starts on an 8-byte boundary so that
    // readers that map the file can view f32/i32 data in place.
    out_header.resize(out_header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + out_header.len() + raw.len() - 8 - n);
    out.extend_from_slice(&(out_header.len() as u64).to_le_bytes());
    out.extend_from_slice(&out_header);
    out.extend_from_slice(&raw[8 + n..]);
    Ok(out)
}

fn sort_keys(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.sort_keys();
        for (_, child) in m.iter_mut() {
            sort_keys(child);
        }
    }
}

/// Writes tensors and metadata as a safetensors file, atomically (see [`atomic_write`]).
pub fn write_tensors(
    path: &Path,
    tensors: &[(String, OutTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes = serialize_tensors(tensors, metadata)?;
    atomic_write(path, &bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    /// Writes raw (dtype, shape, little-endian bytes) tensors with the safetensors crate
    /// directly, to build inputs this module never writes itself (F16, BF16, F64, I64, ...).
    pub(crate) fn write_raw(
        path: &Path,
        tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
        metadata: &[(&str, &str)],
    ) {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let meta: HashMap<String, String> =
            metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let bytes =
            safetensors::serialize(views, if meta.is_empty() { None } else { Some(meta) }).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub(crate) fn f16_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
    }
    pub(crate) fn bf16_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect()
    }

    fn one_line(e: &Error) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "multi-line error: {s}");
        s
    }

    #[test]
    fn round_trip_all_out_dtypes_and_metadata() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        let f = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0];
        let i = [-1i32, 0, 5];
        let u = [0u8, 1, 255];
        let mut meta = BTreeMap::new();
        meta.insert("b".to_string(), "[\"x\"]".to_string());
        meta.insert("a".to_string(), "hello".to_string());
        write_tensors(
            &p,
            &[
                ("zeta".into(), OutTensor::F32 { shape: vec![2, 3], data: &f }),
                ("alpha".into(), OutTensor::I32 { shape: vec![3], data: &i }),
                ("mask".into(), OutTensor::U8 { shape: vec![3], data: &u }),
            ],
            &meta,
        )
        .unwrap();
        let t = TensorFile::open(&p).unwrap();
        assert_eq!(t.names(), vec!["alpha", "mask", "zeta"]);
        assert!(t.has("mask") && !t.has("nope"));
        assert_eq!(t.metadata().get("a").unwrap(), "hello");
        assert_eq!(t.metadata().len(), 2);
        let a = t.f32("zeta").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, f);
        assert_eq!(t.i32("alpha").unwrap(), (vec![3], i.to_vec()));
        assert_eq!(t.u8("mask").unwrap(), (vec![3], u.to_vec()));
        // U8 also reads as i32.
        assert_eq!(t.i32("mask").unwrap().1, vec![0, 1, 255]);
        assert_eq!(t.shape("zeta").unwrap(), &[2, 3]);
        assert_eq!(t.dtype_name("alpha").unwrap(), "I32");
    }

    #[test]
    fn output_is_deterministic() {
        let f = [1.0f32; 4];
        let mut meta = BTreeMap::new();
        for k in 0..20 {
            meta.insert(format!("key{k}"), format!("value{k}"));
        }
        let ts = |order: bool| -> Vec<(String, OutTensor)> {
            let mut v = vec![
                ("b".to_string(), OutTensor::F32 { shape: vec![4], data: &f[..] }),
                ("a".to_string(), OutTensor::F32 { shape: vec![2, 2], data: &f[..] }),
            ];
            if order {
                v.reverse();
            }
            v
        };
        let first = serialize_tensors(&ts(false), &meta).unwrap();
        for k in 0..5 {
            assert_eq!(serialize_tensors(&ts(k % 2 == 0), &meta).unwrap(), first);
        }
        let header_len = u64::from_le_bytes(first[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        let header = std::str::from_utf8(&first[8..8 + header_len]).unwrap();
        assert!(header.find("\"a\"").unwrap() < header.find("\"b\"").unwrap());
        assert!(header.find("key0").unwrap() < header.find("key1\"").unwrap());
        // The crate itself accepts the canonicalised bytes.
        SafeTensors::deserialize(&first).unwrap();
    }

    #[test]
    fn write_rejects_bad_shape_and_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        let f = [1.0f32; 5];
        let e = write_tensors(
            &p,
            &[("x".into(), OutTensor::F32 { shape: vec![2, 3], data: &f })],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(one_line(&e).contains("`x`"));
        let e = write_tensors(
            &p,
            &[
                ("x".into(), OutTensor::F32 { shape: vec![5], data: &f }),
                ("x".into(), OutTensor::F32 { shape: vec![5], data: &f }),
            ],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(one_line(&e).contains("twice"));
        assert!(!p.exists());
    }

    #[test]
    fn reads_f16_bf16_f64_and_wide_ints() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        let vals = [0.5f32, -1.25, 2.0, 1024.0];
        let f64b: Vec<u8> = vals.iter().flat_map(|v| (*v as f64).to_le_bytes()).collect();
        let i64b: Vec<u8> = [-1i64, 3, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let i16b: Vec<u8> = [-300i16, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let big: Vec<u8> = [1i64 << 40].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_raw(
            &p,
            &[
                ("h", Dtype::F16, vec![2, 2], f16_bytes(&vals)),
                ("b", Dtype::BF16, vec![4], bf16_bytes(&vals)),
                ("d", Dtype::F64, vec![4], f64b),
                ("l", Dtype::I64, vec![3], i64b),
                ("s", Dtype::I16, vec![2], i16b),
                ("big", Dtype::I64, vec![1], big),
            ],
            &[],
        );
        let t = TensorFile::open(&p).unwrap();
        assert!(t.metadata().is_empty());
        for name in ["h", "b", "d"] {
            assert_eq!(t.f32(name).unwrap().data, vals, "{name}");
        }
        assert_eq!(t.f32("h").unwrap().shape, vec![2, 2]);
        assert_eq!(t.i32("l").unwrap().1, vec![-1, 3, 7]);
        assert_eq!(t.i32("s").unwrap().1, vec![-300, 2]);
        let e = t.i32("big").unwrap_err();
        let s = one_line(&e);
        assert!(
            s.contains("`big`") && s.contains("i32 range") && s.contains("t.safetensors"),
            "{s}"
        );
        let s = one_line(&t.f32("l").unwrap_err());
        assert!(s.contains("`l`") && s.contains("I64"), "{s}");
        let s = one_line(&t.i32("h").unwrap_err());
        assert!(s.contains("`h`") && s.contains("F16"), "{s}");
        let s = one_line(&t.u8("l").unwrap_err());
        assert!(s.contains("`l`") && s.contains("I64"), "{s}");
        let s = one_line(&t.f32("nope").unwrap_err());
        assert!(s.contains("tensor `nope` is missing") && s.contains("t.safetensors"), "{s}");
    }

    #[test]
    fn truncated_empty_and_garbage_files_are_data_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.safetensors");
        let f = [1.0f32; 64];
        write_tensors(
            &p,
            &[("x".into(), OutTensor::F32 { shape: vec![64], data: &f })],
            &BTreeMap::new(),
        )
        .unwrap();
        let full = std::fs::read(&p).unwrap();
        // Cut in the data, in the header, in the length prefix, and to nothing.
        for cut in [full.len() - 1, full.len() - 100, 20, 5, 0] {
            let q = d.path().join(format!("cut{cut}.safetensors"));
            std::fs::write(&q, &full[..cut]).unwrap();
            let e = TensorFile::open(&q).unwrap_err();
            assert!(matches!(e, Error::Data { .. }), "cut {cut}: {e}");
            let s = one_line(&e);
            assert!(s.contains("truncated or corrupt safetensors file"), "{s}");
            assert!(s.contains(&format!("cut{cut}.safetensors")), "{s}");
        }
        // An absurd header length.
        let q = d.path().join("huge.safetensors");
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        std::fs::write(&q, &b).unwrap();
        assert!(one_line(&TensorFile::open(&q).unwrap_err()).contains("corrupt"));
        // Extra trailing bytes.
        let q = d.path().join("long.safetensors");
        let mut b = full.clone();
        b.push(0);
        std::fs::write(&q, &b).unwrap();
        assert!(one_line(&TensorFile::open(&q).unwrap_err()).contains("corrupt"));
        // Hostile input: duplicate keys in the header (a tensor, or a metadata entry, given twice)
        // are refused, and a shape that does not match its bytes names the tensor.
        for (header, want) in [
            (r#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, "key `x` appears twice"),
            (r#"{"__metadata__":{"a":"1","a":"2"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, "key `a` appears twice"),
            (r#"{"weights":{"dtype":"F32","shape":[3],"data_offsets":[0,4]}}"#, "tensor `weights`: shape [3] of F32 needs 12 bytes"),
        ] {
            let q = d.path().join("dup.safetensors");
            let mut b = (header.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(&[0u8; 4]);
            std::fs::write(&q, &b).unwrap();
            let s = one_line(&TensorFile::open(&q).unwrap_err());
            assert!(s.contains(want) && s.contains("dup.safetensors"), "{s}");
        }
        // A missing file is `NotFound`, naming the path.
        let q = d.path().join("absent.safetensors");
        let e = TensorFile::open(&q).unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("absent.safetensors"));
    }
}
