//! Sinusoidal encoding of voxel positions (DESIGN §3.3): the selectors are functions of where a
//! voxel sits, so neighbouring voxels make similar choices.

use crate::data::Array;
use crate::error::{Error, Result};

/// Number of frequencies per axis.
pub const N_FREQ: usize = 32;
/// Encoded width: 3 axes × 32 frequencies × (sin, cos).
pub const ENC_DIM: usize = 3 * N_FREQ * 2;

/// `ω_k = 1000^(−k/F)`.
pub fn frequency(k: usize) -> f64 {
    1000f64.powf(-(k as f64) / N_FREQ as f64)
}

/// Normalisation constants, stored with the model so a reloaded encoder sees the same inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordNorm {
    /// Per-axis minimum of the coordinates, subtracted first.
    pub min: [f64; 3],
    /// Multiplier `100 / max_axis(max − min)`.
    pub scale: f64,
}

impl CoordNorm {
    /// The constants of DESIGN §3.3 for voxel positions `[V, 3]`.
    pub fn from_coords(coords: &Array) -> Result<Self> {
        check_coords(coords)?;
        let v = coords.shape[0];
        let mut min = [f64::INFINITY; 3];
        let mut max = [f64::NEG_INFINITY; 3];
        for i in 0..v {
            for a in 0..3 {
                let c = coords.data[i * 3 + a] as f64;
                min[a] = min[a].min(c);
                max[a] = max[a].max(c);
            }
        }
        let extent = (0..3).map(|a| max[a] - min[a]).fold(0.0, f64::max);
        // A single voxel (or all at one point) has no extent; any scale gives the same encoding.
        let scale = if extent > 0.0 { 100.0 / extent } else { 1.0 };
        Ok(Self { min, scale })
    }

    /// `[V, 192]` encoding, ordered axis-major, then frequency, then (sin, cos).
    pub fn encode(&self, coords: &Array) -> Result<Array> {
        check_coords(coords)?;
        let v = coords.shape[0];
        let freqs: Vec<f64> = (0..N_FREQ).map(frequency).collect();
        let mut out = vec![0f32; v * ENC_DIM];
        for i in 0..v {
            for a in 0..3 {
                let pos = (coords.data[i * 3 + a] as f64 - self.min[a]) * self.scale;
                for (k, w) in freqs.iter().enumerate() {
                    let o = i * ENC_DIM + a * N_FREQ * 2 + k * 2;
                    out[o] = (w * pos).sin() as f32;
                    out[o + 1] = (w * pos).cos() as f32;
                }
            }
        }
        Array::new(vec![v, ENC_DIM], out)
    }
}

fn check_coords(coords: &Array) -> Result<()> {
    if coords.ndim() != 2 || coords.shape[1] != 3 || coords.shape[0] == 0 {
        return Err(Error::shape("coords", format!("coords must be [V, 3] with V > 0, got {:?}", coords.shape)));
    }
    if let Some(i) = coords.first_non_finite() {
        return Err(Error::invalid(format!("coords has a non-finite value at {:?}", coords.unravel(i))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_match_design() {
        assert_eq!(frequency(0), 1.0);
        assert!((frequency(1) - 0.805842).abs() < 1e-6);
        assert!((frequency(31) - 0.00124094).abs() < 1e-8);
    }

    #[test]
    fn encoding_order_and_normalisation() {
        // Axis 0 spans 0..4 (largest extent), axis 1 spans 1..2, axis 2 is constant at 7.
        let coords = Array::new(vec![2, 3], vec![0.0, 1.0, 7.0, 4.0, 2.0, 7.0]).unwrap();
        let norm = CoordNorm::from_coords(&coords).unwrap();
        assert_eq!(norm.min, [0.0, 1.0, 7.0]);
        assert!((norm.scale - 25.0).abs() < 1e-12);
        let enc = norm.encode(&coords).unwrap();
        assert_eq!(enc.shape, vec![2, 192]);
        // Second voxel: pos = (100, 25, 0).
        let row = &enc.data[192..];
        for k in [0usize, 1, 5, 31] {
            let w = frequency(k);
            let x = w * 100.0;
            assert!((row[k * 2] as f64 - x.sin()).abs() < 1e-5);
            assert!((row[k * 2 + 1] as f64 - x.cos()).abs() < 1e-5);
            let y = w * 25.0;
            assert!((row[64 + k * 2] as f64 - y.sin()).abs() < 1e-5);
            assert!((row[64 + k * 2 + 1] as f64 - y.cos()).abs() < 1e-5);
            assert!((row[128 + k * 2]).abs() < 1e-7);
            assert!((row[128 + k * 2 + 1] - 1.0).abs() < 1e-7);
        }
    }
}
