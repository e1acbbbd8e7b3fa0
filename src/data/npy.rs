//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0), for importing the layouts users
//! already have (Algonauts 2023 responses and ROI masks, plain arrays).
//!
//! Only little-endian numeric and boolean dtypes are read; anything else (big-endian, object,
//! strings, structured) is refused with a message saying how to convert it, rather than guessed.

use std::path::Path;

use crate::data::array::Array;
use crate::data::io::atomic_write;
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::I8 | Kind::U8 | Kind::Bool => 1,
            Kind::F16 | Kind::I16 | Kind::U16 => 2,
            Kind::F32 | Kind::I32 | Kind::U32 => 4,
            Kind::F64 | Kind::I64 | Kind::U64 => 8,
        }
    }
    fn is_float(self) -> bool {
        matches!(self, Kind::F16 | Kind::F32 | Kind::F64)
    }
}

#[derive(Debug)]
struct Header {
    kind: Kind,
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
    data_offset: usize,
}

fn parse_descr(path: &Path, descr: &str) -> Result<Kind> {
    let err = |why: String| Error::data(path, why);
    let mut chars = descr.chars();
    let order = chars.next().unwrap_or(' ');
    let code = chars.as_str();
    let (order, code) = if matches!(order, '<' | '>' | '|' | '=') {
        (order, code)
    } else {
        // NumPy always writes an order character, but hand-made headers sometimes omit it; NumPy
        // itself reads such a descriptor (`np.dtype('f4')`) in native byte order.
        ('=', descr)
    };
    let kind = match code {
        "f2" | "e" => Kind::F16,
        "f4" | "f" => Kind::F32,
        "f8" | "d" => Kind::F64,
        "i1" | "b" => Kind::I8,
        "i2" | "h" => Kind::I16,
        "i4" | "i" => Kind::I32,
        "i8" | "q" | "l" => Kind::I64,
        "u1" | "B" => Kind::U8,
        "u2" | "H" => Kind::U16,
        "u4" | "I" => Kind::U32,
        "u8" | "Q" | "L" => Kind::U64,
        "b1" | "?" => Kind::Bool,
        c if c.starts_with('O') => {
            return Err(err(format!(
                "object arrays (dtype '{descr}') cannot be read; save a numeric array instead"
            )))
        }
        _ => {
            return Err(err(format!(
                "unsupported .npy dtype '{descr}'; expected one of '<f4', '<f8', '<f2', '<i4', \
                 '<i8', '<i2', '|i1', '|u1', '|b1'"
            )))
        }
    };
    // '=' is native order; this library only runs on little-endian targets in practice, but
    // say so rather than silently misread on a big-endian one.
    let little = cfg!(target_endian = "little");
    let ok = kind.size() == 1 || order == '<' || (order == '=' && little);
    if !ok {
        return Err(err(format!(
            "big-endian .npy dtype '{descr}' is not supported; convert with \
             arr.astype(arr.dtype.newbyteorder('<'))"
        )));
    }
    Ok(kind)
}

/// A tiny parser for the Python dict literal of a .npy header:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
struct Lit<'a> {
    s: &'a [u8],
    i: usize,
}

#[derive(Debug)]
enum Val {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    Other,
}

impl<'a> Lit<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> Option<String> {
        self.ws();
        let q = *self.s.get(self.i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == q)?;
        self.i = start + len + 1;
        Some(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }
    fn int(&mut self) -> Option<usize> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let v = std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()?;
        // Python 2 era files write long integers as `3L`.
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        Some(v)
    }
    fn value(&mut self) -> Option<Val> {
        self.ws();
        match *self.s.get(self.i)? {
            b'\'' | b'"' => self.string().map(Val::Str),
            b'(' => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(b')') {
                        return Some(Val::Tuple(dims));
                    }
                    dims.push(self.int()?);
                    if !self.eat(b',') {
                        return self.eat(b')').then_some(Val::Tuple(dims));
                    }
                }
            }
            b'T' if self.s[self.i..].starts_with(b"True") => {
                self.i += 4;
                Some(Val::Bool(true))
            }
            b'F' if self.s[self.i..].starts_with(b"False") => {
                self.i += 5;
                Some(Val::Bool(false))
            }
            // Structured dtypes are lists; recognise them only to refuse them clearly.
            b'[' => Some(Val::Other),
            _ => None,
        }
    }
    fn dict(&mut self) -> Option<Vec<(String, Val)>> {
        if !self.eat(b'{') {
            return None;
        }
        let mut out = Vec::new();
        loop {
            if self.eat(b'}') {
                return Some(out);
            }
            let k = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            let v = self.value()?;
            let structured = matches!(v, Val::Other);
            out.push((k, v));
            if structured {
                return Some(out);
            }
            if !self.eat(b',') {
                return self.eat(b'}').then_some(out);
            }
        }
    }
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let err = |why: &str| Error::data(path, why.to_string());
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(err(
            "not a .npy file (missing the \\x93NUMPY magic) or truncated before its header",
        ));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("truncated .npy header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => {
            return Err(Error::data(
                path,
                format!("unsupported .npy format version {v}.{}", bytes[7]),
            ))
        }
    };
    let end = start + len;
    let text = bytes.get(start..end).ok_or_else(|| {
        Error::data(
            path,
            format!(
                "truncated .npy header: it declares {len} bytes but the file has {}",
                bytes.len() - start
            ),
        )
    })?;
    let bad = || {
        let shown: String = String::from_utf8_lossy(text).chars().take(120).collect();
        Error::data(path, format!("malformed .npy header: {:?}", shown.trim_end()))
    };
    let dict = Lit { s: text, i: 0 }.dict().ok_or_else(bad)?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in dict {
        match (k.as_str(), v) {
            ("descr", Val::Str(s)) => descr = Some(s),
            ("descr", Val::Other) => {
                return Err(err("structured .npy dtypes (record arrays) are not supported"))
            }
            ("fortran_order", Val::Bool(b)) => fortran = Some(b),
            ("shape", Val::Tuple(t)) => shape = Some(t),
            _ => return Err(bad()),
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err(err("malformed .npy header: needs 'descr', 'fortran_order' and 'shape'"));
    };
    let kind = parse_descr(path, &descr)?;
    Ok(Header { kind, descr, fortran, shape, data_offset: end })
}

/// Parsed header plus the raw little-endian element bytes in row-major order.
fn read_raw(path: &Path) -> Result<(Header, Vec<u8>)> {
    let bytes = crate::data::io::read_input(path)?;
    let h = parse_header(path, &bytes)?;
    let count = h.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let need = count.and_then(|c| c.checked_mul(h.kind.size()));
    let Some(need) = need else {
        return Err(Error::data(path, format!("shape {:?} is too large", h.shape)));
    };
    let have = bytes.len() - h.data_offset;
    if have < need {
        return Err(Error::data(
            path,
            format!(
                "truncated .npy data: shape {:?} of '{}' needs {need} bytes, the file has {have}",
                h.shape, h.descr
            ),
        ));
    }
    if have > need {
        return Err(Error::data(
            path,
            format!(
                "{} unexpected bytes after the .npy data (shape {:?}, '{}')",
                have - need,
                h.shape,
                h.descr
            ),
        ));
    }
    let mut data = bytes[h.data_offset..].to_vec();
    if h.fortran && h.shape.len() > 1 {
        data = fortran_to_c(&data, &h.shape, h.kind.size());
    }
    Ok((h, data))
}

/// Reorders column-major element bytes into row-major order.
fn fortran_to_c(src: &[u8], shape: &[usize], size: usize) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = vec![0u8; src.len()];
    // Column-major strides: the first axis varies fastest.
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    for c in 0..n {
        let f: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out[c * size..(c + 1) * size].copy_from_slice(&src[f * size..(f + 1) * size]);
        // Advance the row-major multi-index (last axis fastest).
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

fn decode_f64(kind: Kind, raw: &[u8]) -> Vec<f64> {
    let sz = kind.size();
    raw.chunks_exact(sz)
        .map(|c| match kind {
            Kind::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
            Kind::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            Kind::F64 => f64::from_le_bytes(c.try_into().unwrap()),
            _ => unreachable!("integer kinds go through decode_i64"),
        })
        .collect()
}

fn decode_i64(kind: Kind, raw: &[u8]) -> Vec<i128> {
    let sz = kind.size();
    raw.chunks_exact(sz)
        .map(|c| match kind {
            Kind::I8 => c[0] as i8 as i128,
            Kind::U8 => c[0] as i128,
            // NumPy stores booleans as 0/1 bytes; anything non-zero is true.
            Kind::Bool => (c[0] != 0) as i128,
            Kind::I16 => i16::from_le_bytes([c[0], c[1]]) as i128,
            Kind::U16 => u16::from_le_bytes([c[0], c[1]]) as i128,
            Kind::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            Kind::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            Kind::I64 => i64::from_le_bytes(c.try_into().unwrap()) as i128,
            Kind::U64 => u64::from_le_bytes(c.try_into().unwrap()) as i128,
            _ => unreachable!("float kinds go through decode_f64"),
        })
        .collect()
}

/// Reads a `.npy` array as f32 (any supported dtype; integers and booleans convert exactly up
/// to 2^24). Fortran-ordered arrays are returned in row-major order with the same shape.
pub fn read_npy(path: &Path) -> Result<Array> {
    let (h, raw) = read_raw(path)?;
    let data: Vec<f32> = if h.kind == Kind::F32 {
        raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else if h.kind.is_float() {
        decode_f64(h.kind, &raw).into_iter().map(|v| v as f32).collect()
    } else {
        decode_i64(h.kind, &raw).into_iter().map(|v| v as f32).collect()
    };
    Ok(Array { shape: h.shape, data })
}

/// Reads an integer or boolean `.npy` array (masks, label maps) as i64. Float arrays are
/// accepted only when every value is a whole number, since label maps are often saved as
/// floats; the first non-integral value is reported otherwise.
pub fn read_npy_i64(path: &Path) -> Result<(Vec<usize>, Vec<i64>)> {
    let (h, raw) = read_raw(path)?;
    let mut out = Vec::with_capacity(raw.len() / h.kind.size());
    let index = |flat: usize| Array { shape: h.shape.clone(), data: Vec::new() }.unravel(flat);
    if h.kind.is_float() {
        for (i, v) in decode_f64(h.kind, &raw).into_iter().enumerate() {
            if !v.is_finite() || v.fract() != 0.0 || v.abs() > 9.0e15 {
                return Err(Error::data(
                    path,
                    format!(
                        "expected integer labels but '{}' array has value {v} at {:?}",
                        h.descr,
                        index(i)
                    ),
                ));
            }
            out.push(v as i64);
        }
    } else {
        for (i, v) in decode_i64(h.kind, &raw).into_iter().enumerate() {
            let Ok(x) = i64::try_from(v) else {
                return Err(Error::data(
                    path,
                    format!("value {v} at {:?} does not fit in i64", index(i)),
                ));
            };
            out.push(x);
        }
    }
    Ok((h.shape, out))
}

fn shape_literal(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Encodes an array as `.npy` bytes: '<f4', C order, header padded to a multiple of 64 bytes
/// (format 1.0, or 2.0 if the header would not fit in 65535 bytes).
pub fn npy_bytes(a: &Array) -> Result<Vec<u8>> {
    let n = a.shape.iter().try_fold(1usize, |x, &d| x.checked_mul(d));
    if n != Some(a.data.len()) {
        return Err(Error::shape("array", format!(
            "array of shape {:?} does not match its {} values",
            a.shape,
            a.data.len()
        )));
    }
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        shape_literal(&a.shape)
    );
    let build = |prefix: usize| {
        // The header ends with '\n' and the whole preamble is a multiple of 64 bytes so that
        // the data is aligned for memory mapping, as NumPy does.
        let unpadded = prefix + dict.len() + 1;
        let pad = unpadded.next_multiple_of(64) - unpadded;
        let mut h = dict.clone().into_bytes();
        h.resize(h.len() + pad, b' ');
        h.push(b'\n');
        h
    };
    let mut out = Vec::with_capacity(128 + 4 * a.data.len());
    out.extend_from_slice(MAGIC);
    let h = build(10);
    if h.len() <= u16::MAX as usize {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
    } else {
        let h = build(12);
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        out.extend_from_slice(&h);
    }
    for v in &a.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Writes an array as a '<f4' `.npy` file, atomically.
pub fn write_npy(path: &Path, a: &Array) -> Result<()> {
    let bytes = npy_bytes(a)?;
    atomic_write(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        let mut h = dict.as_bytes().to_vec();
        h.push(b'\n');
        if version == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn err(p: &Path) -> String {
        let e = read_npy(p).unwrap_err();
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains(&p.display().to_string()), "{s}");
        s
    }

    #[test]
    fn round_trip_shapes() {
        let d = tempfile::tempdir().unwrap();
        for shape in [vec![], vec![5], vec![2, 3], vec![2, 1, 3, 2], vec![0, 4]] {
            let n: usize = shape.iter().product();
            let a =
                Array::new(shape.clone(), (0..n).map(|i| i as f32 * 0.5 - 1.0).collect()).unwrap();
            let p = d.path().join("a.npy");
            write_npy(&p, &a).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(bytes[6], 1);
            let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hl) % 64, 0);
            assert_eq!(bytes[10 + hl - 1], b'\n');
            assert_eq!(read_npy(&p).unwrap(), a, "{shape:?}");
        }
    }

    /// Hostile input: a descriptor without a byte-order character (`'f4'`, as `np.dtype('f4')`
    /// accepts) is native order, not refused as big-endian.
    #[test]
    fn descriptor_without_byte_order_is_native() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = write(d.path(), "a.npy", &npy(1, "{'descr': 'f4', 'fortran_order': False, 'shape': (2,), }", &data));
        assert_eq!(read_npy(&p).unwrap().data, vec![1.5, -2.0]);
        let ints: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let q = write(d.path(), "b.npy", &npy(1, "{'descr': 'i8', 'fortran_order': False, 'shape': (2,), }", &ints));
        assert_eq!(read_npy_i64(&q).unwrap().1, vec![7, -1]);
    }

    #[test]
    fn header_text_matches_numpy() {
        let a = Array::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
        let b = npy_bytes(&a).unwrap();
        // The 58-byte dict does not fit a 64-byte preamble, so NumPy's rule pads it to 128.
        let text = std::str::from_utf8(&b[10..128]).unwrap();
        assert!(text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"));
        assert!(text.ends_with(" \n"));
        assert_eq!(b.len(), 128 + 12);
    }

    #[test]
    fn dtypes_by_hand() {
        let d = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>, Vec<f32>)> = vec![
            ("<f8", [1.5f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![1.5, -2.0]),
            (
                "<f2",
                [0.5f32, 3.0].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                vec![0.5, 3.0],
            ),
            ("<i4", [-7i32, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![-7.0, 9.0]),
            ("<i8", [-7i64, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![-7.0, 9.0]),
            ("<i2", [-7i16, 9].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![-7.0, 9.0]),
            ("|i1", vec![0xF9, 9], vec![-7.0, 9.0]),
            ("|u1", vec![250, 9], vec![250.0, 9.0]),
            ("|b1", vec![1, 0], vec![1.0, 0.0]),
        ];
        for (descr, data, want) in cases {
            let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
            let p = write(d.path(), "x.npy", &npy(1, &dict, &data));
            let a = read_npy(&p).unwrap();
            assert_eq!(a.shape, vec![2], "{descr}");
            assert_eq!(a.data, want, "{descr}");
            if descr != "<f8" && descr != "<f2" {
                let (s, v) = read_npy_i64(&p).unwrap();
                assert_eq!(s, vec![2]);
                assert_eq!(v, want.iter().map(|x| *x as i64).collect::<Vec<_>>(), "{descr}");
            }
        }
    }

    #[test]
    fn fortran_order_is_transposed_to_row_major() {
        let d = tempfile::tempdir().unwrap();
        // Logical 2x3 array [[0,1,2],[3,4,5]] stored column-major: 0,3,1,4,2,5.
        let col: Vec<u8> = [0i32, 3, 1, 4, 2, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dict = "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }";
        let p = write(d.path(), "f.npy", &npy(1, dict, &col));
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // 3-D: value = 100*i + 10*j + k at [i,j,k], shape (2,3,4), written with i fastest.
        let (n0, n1, n2) = (2, 3, 4);
        let mut f = Vec::new();
        for k in 0..n2 {
            for j in 0..n1 {
                for i in 0..n0 {
                    f.extend_from_slice(&((100 * i + 10 * j + k) as f32).to_le_bytes());
                }
            }
        }
        let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 4), }";
        let p = write(d.path(), "f3.npy", &npy(1, dict, &f));
        let a = read_npy(&p).unwrap();
        for i in 0..n0 {
            for j in 0..n1 {
                for k in 0..n2 {
                    let v = a.data[(i * n1 + j) * n2 + k];
                    assert_eq!(v, (100 * i + 10 * j + k) as f32);
                }
            }
        }
        let (_, v) = read_npy_i64(&write(d.path(), "fi.npy", &npy(1, dict, &f))).unwrap();
        assert_eq!(v[1], 1);
        assert_eq!(v[4], 10);
    }

    #[test]
    fn v2_and_v3_headers() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dict = "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 2L)}";
        for v in [2u8, 3] {
            let p = write(d.path(), "v.npy", &npy(v, dict, &data));
            let a = read_npy(&p).unwrap();
            assert_eq!(a.shape, vec![2, 2]);
            assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0]);
        }
    }

    #[test]
    fn refusals_are_clear() {
        let d = tempfile::tempdir().unwrap();
        let data = [0u8; 8];
        let p = write(
            d.path(),
            "be.npy",
            &npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", &data),
        );
        assert!(err(&p).contains("big-endian"));
        let p = write(
            d.path(),
            "o.npy",
            &npy(1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", &data),
        );
        assert!(err(&p).contains("object arrays"));
        let p = write(
            d.path(),
            "u.npy",
            &npy(1, "{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", &data),
        );
        assert!(err(&p).contains("unsupported .npy dtype '<U3'"));
        let p = write(
            d.path(),
            "s.npy",
            &npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", &data),
        );
        assert!(err(&p).contains("structured"));
        let p = write(d.path(), "m.npy", &npy(1, "{'descr': '<f4', 'shape': (2,), }", &data));
        assert!(err(&p).contains("malformed"));
        let p = write(d.path(), "g.npy", b"hello world, not numpy");
        assert!(err(&p).contains("not a .npy file"));
        let p = write(d.path(), "e.npy", b"");
        assert!(err(&p).contains("not a .npy file"));
        let p = write(d.path(), "v9.npy", &npy(9, "{}", &data));
        assert!(err(&p).contains("version 9"));
        // Single-byte types ignore the order character.
        let p = write(
            d.path(),
            "b.npy",
            &npy(1, "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }", &[1, 2]),
        );
        assert_eq!(read_npy(&p).unwrap().data, vec![1.0, 2.0]);
    }

    #[test]
    fn truncation_and_trailing_bytes() {
        let d = tempfile::tempdir().unwrap();
        let a = Array::new(vec![4, 4], (0..16).map(|i| i as f32).collect()).unwrap();
        let p = d.path().join("a.npy");
        write_npy(&p, &a).unwrap();
        let full = std::fs::read(&p).unwrap();
        let q = write(d.path(), "cut.npy", &full[..full.len() - 3]);
        let s = err(&q);
        assert!(s.contains("truncated .npy data") && s.contains("needs 64 bytes"), "{s}");
        let q = write(d.path(), "cuthead.npy", &full[..30]);
        assert!(err(&q).contains("truncated .npy header"));
        let mut long = full.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        let q = write(d.path(), "long.npy", &long);
        assert!(err(&q).contains("unexpected bytes"));
    }

    #[test]
    fn i64_reader_float_labels() {
        let d = tempfile::tempdir().unwrap();
        let ok = Array::new(vec![3], vec![0.0, 2.0, -1.0]).unwrap();
        let p = d.path().join("ok.npy");
        write_npy(&p, &ok).unwrap();
        assert_eq!(read_npy_i64(&p).unwrap(), (vec![3], vec![0, 2, -1]));
        let bad = Array::new(vec![2, 2], vec![0.0, 2.0, 1.5, 1.0]).unwrap();
        let p = d.path().join("bad.npy");
        write_npy(&p, &bad).unwrap();
        let s = read_npy_i64(&p).unwrap_err().to_string();
        assert!(s.contains("1.5") && s.contains("[1, 0]") && s.contains("bad.npy"), "{s}");
    }
}
