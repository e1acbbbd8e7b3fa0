//! The precision features are kept in, and a flat buffer of values in that precision.
//!
//! A subject-scale feature set is gigabytes: 16-bit features (what the Python collectors write)
//! kept as f32 take twice the memory for no gain in information. So features stay in the
//! precision they arrive in (or one the user asks for) and are widened to f32 a batch at a
//! time, where the arithmetic happens.

use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};

use crate::error::{Error, Result};

/// How feature values are stored between reading and computing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit IEEE floats.
    #[default]
    F32,
    /// 16-bit IEEE floats.
    F16,
    /// bfloat16: f32's exponent range with 8 bits of mantissa.
    Bf16,
}

impl Precision {
    /// Every precision.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The name used on the command line, in Python, in the C ABI and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
        }
    }

    /// The precision a safetensors dtype arrives in: 16-bit types stay 16-bit, everything else
    /// (F32, F64) is kept as f32.
    pub fn of_dtype(dtype: safetensors::Dtype) -> Precision {
        match dtype {
            safetensors::Dtype::F16 => Precision::F16,
            safetensors::Dtype::BF16 => Precision::Bf16,
            _ => Precision::F32,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::invalid(format!("unknown precision `{s}`; expected f32, f16 or bf16")))
    }
}

/// A flat buffer of values in one [`Precision`]. Writes round to nearest even (the `half`
/// crate's conversions); reads widen exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Store {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<f16>),
    /// bf16 values.
    Bf16(Vec<bf16>),
}

impl Store {
    /// `n` zeros in `precision`, allocated fallibly (an allocation the system cannot satisfy is
    /// an error, not an abort).
    pub fn zeroed(what: &str, precision: Precision, n: usize) -> Result<Store> {
        use crate::data::limits::try_zeroed;
        Ok(match precision {
            Precision::F32 => Store::F32(try_zeroed(what, n)?),
            Precision::F16 => Store::F16(try_zeroed(what, n)?),
            Precision::Bf16 => Store::Bf16(try_zeroed(what, n)?),
        })
    }

    /// The precision the values are kept in.
    pub fn precision(&self) -> Precision {
        match self {
            Store::F32(_) => Precision::F32,
            Store::F16(_) => Precision::F16,
            Store::Bf16(_) => Precision::Bf16,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Store::F32(v) => v.len(),
            Store::F16(v) => v.len(),
            Store::Bf16(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values themselves when they are stored as f32 (no widening needed).
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Store::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Widens `out.len()` values starting at `at` into `out`. Panics when the range is outside
    /// the buffer (callers index with sizes the store was built from).
    pub fn read(&self, at: usize, out: &mut [f32]) {
        let end = at + out.len();
        match self {
            Store::F32(v) => out.copy_from_slice(&v[at..end]),
            Store::F16(v) => half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[at..end], out),
            Store::Bf16(v) => half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[at..end], out),
        }
    }

    /// Stores `src` at `at`, rounding to the store's precision.
    pub fn write(&mut self, at: usize, src: &[f32]) {
        let end = at + src.len();
        match self {
            Store::F32(v) => v[at..end].copy_from_slice(src),
            Store::F16(v) => half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut v[at..end], src),
            Store::Bf16(v) => half::slice::HalfFloatSliceExt::convert_from_f32_slice(&mut v[at..end], src),
        }
    }

    /// All values widened to f32 (a copy; for the paths that hand a whole layer on, such as the
    /// GPU upload).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = crate::data::limits::try_zeroed("widened features", self.len())?;
        self.read(0, &mut out);
        Ok(out)
    }

    /// Bytes the values take.
    pub fn bytes(&self) -> usize {
        self.len() * self.precision().bytes()
    }

    /// Per channel sums and the sum of squares of all values, in f64, for a buffer of rows of
    /// `c` channels; widened a block of rows at a time in parallel (a pass over a subject's
    /// features takes seconds, and no copy).
    pub fn channel_moments(&self, c: usize) -> (Vec<f64>, f64) {
        use rayon::prelude::*;
        let c = c.max(1);
        let rows = (1usize << 16).div_ceil(c).max(1) * c;
        let parts: Vec<(Vec<f64>, f64)> = (0..self.len().div_ceil(rows))
            .into_par_iter()
            .map(|b| {
                let at = b * rows;
                let mut buf = vec![0f32; rows.min(self.len() - at)];
                self.read(at, &mut buf);
                let mut sums = vec![0f64; c];
                let mut sq = 0f64;
                for row in buf.chunks(c) {
                    for (s, &x) in sums.iter_mut().zip(row) {
                        *s += x as f64;
                        sq += (x as f64) * (x as f64);
                    }
                }
                (sums, sq)
            })
            .collect();
        // Summed in block order: the same numbers on every run and thread count.
        let mut sums = vec![0f64; c];
        let mut sq = 0f64;
        for (s, q) in parts {
            sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
            sq += q;
        }
        (sums, sq)
    }

    /// Replaces every value `x` of channel `j` (rows of `mean.len()` channels) by
    /// `(x − mean[j])·k`, rounding once to the store's precision.
    pub fn affine(&mut self, mean: &[f32], k: f32) {
        use rayon::prelude::*;
        let c = mean.len().max(1);
        let rows = (1usize << 16).div_ceil(c).max(1) * c;
        let f = |x: f32, j: usize| (x - mean.get(j).copied().unwrap_or(0.0)) * k;
        match self {
            Store::F32(v) => v.par_chunks_mut(rows).for_each(|b| {
                for row in b.chunks_mut(c) {
                    row.iter_mut().enumerate().for_each(|(j, x)| *x = f(*x, j));
                }
            }),
            Store::F16(v) => v.par_chunks_mut(rows).for_each(|b| {
                for row in b.chunks_mut(c) {
                    row.iter_mut().enumerate().for_each(|(j, x)| *x = half::f16::from_f32(f(x.to_f32(), j)));
                }
            }),
            Store::Bf16(v) => v.par_chunks_mut(rows).for_each(|b| {
                for row in b.chunks_mut(c) {
                    row.iter_mut().enumerate().for_each(|(j, x)| *x = half::bf16::from_f32(f(x.to_f32(), j)));
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("f64".parse::<Precision>().unwrap_err().to_string().contains("f32, f16 or bf16"));
        assert_eq!(Precision::of_dtype(safetensors::Dtype::BF16), Precision::Bf16);
        assert_eq!(Precision::of_dtype(safetensors::Dtype::F64), Precision::F32);
    }

    #[test]
    fn writes_round_to_nearest_even_and_reads_widen_exactly() {
        // 1 + 2^-11 lies halfway between two f16 values (1 and 1 + 2^-10): ties go to even (1).
        let tie = 1.0 + 2f32.powi(-11);
        let above = 1.0 + 2f32.powi(-11) + 2f32.powi(-20);
        let vals = [0.0, -2.5, tie, above, 65504.0, 1e-8, 2.7182817];
        for p in Precision::ALL {
            let mut s = Store::zeroed("t", p, vals.len() + 2).unwrap();
            s.write(1, &vals);
            let mut back = vec![9.0; vals.len()];
            s.read(1, &mut back);
            for (&v, &b) in vals.iter().zip(&back) {
                let want = match p {
                    Precision::F32 => v,
                    Precision::F16 => f16::from_f32(v).to_f32(),
                    Precision::Bf16 => bf16::from_f32(v).to_f32(),
                };
                assert_eq!(b.to_bits(), want.to_bits(), "{p} {v}");
            }
            assert_eq!(s.bytes(), (vals.len() + 2) * p.bytes());
            let mut edge = [7.0; 1];
            s.read(0, &mut edge);
            assert_eq!(edge[0], 0.0);
        }
        let mut s = Store::zeroed("t", Precision::F16, 2).unwrap();
        s.write(0, &[tie, above]);
        let mut back = [0.0; 2];
        s.read(0, &mut back);
        assert_eq!(back, [1.0, 1.0 + 2f32.powi(-10)]);
    }
}
