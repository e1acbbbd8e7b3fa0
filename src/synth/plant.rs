//! Planting voxel responses on a network's features, and the ground truth that results.
//!
//! Every choice here keeps the planted response close to what the FactorTopy model (DESIGN §3)
//! can represent, so that a good fit has a right answer to find:
//! - a voxel with a receptive field (the default, `prf_size` > 0) reads its layer's map averaged
//!   over a box window of that side centred on its location, at the layer's own resolution (a
//!   112×112 map contributes all its pixels there, as it does to a real voxel), mixed with the
//!   global token by `(1−s, s)` (§3.4). Area resampling to the grid (`--resample area|auto`)
//!   represents a window of one grid cell exactly at cell centres;
//! - with `prf_size` 0, responses are read from the layer maps resampled bilinearly to G×G
//!   (§3.1), at one image location with the model's bilinear convention (§3.4), mixed the same
//!   way: exactly representable by a `bilinear` fit;
//! - a voxel's channel readout is `w_v = B_l·r_v` with a per-layer basis `B_l` of rank
//!   `K = min(16, C)`, which the model's shared channel bottleneck (§3.2, width D ≥ K) followed
//!   by a per-voxel readout can express;
//! - the clean response is standardised over images (absorbed by the model's readout scale and
//!   bias), and noise of variance `(1−NC)/NC` makes the explainable variance exactly NC.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use crate::data::safetensors_io::{write_tensors, OutTensor, TensorFile};
use crate::data::{Array, Brain, Features};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::synth::cortex::{self, ROI_LEVELS, ROI_NAMES};
use crate::synth::sample::{bilinear_taps, box_window, resize_layer, window_dot};
use crate::synth::{Scenario, SynthConfig};

/// Largest rank of the per-layer readout basis.
pub const MAX_RANK: usize = 16;

/// Planted scale (0 = patch token, 1 = global token) of hierarchy level `level`: early cortex
/// reads local detail, high-level cortex leans on the global summary.
pub fn planted_scale(level: i32) -> f32 {
    0.1 + 0.15 * level as f32
}

/// The layer each ROI (in `ROI_NAMES` order) reads from under `scenario` in a network of
/// `n_layers` layers.
pub fn planted_layers(scenario: Scenario, n_layers: usize, seed: u64) -> Vec<usize> {
    let top = cortex::N_LEVELS - 1;
    let hier = |level: i32| ((level as f64 * (n_layers - 1) as f64) / top as f64).round() as usize;
    let third = n_layers.div_ceil(3);
    let mut rng = Rng::derive(seed, &format!("synth.layers.{scenario}"));
    ROI_LEVELS
        .iter()
        .map(|&level| match scenario {
            Scenario::Hierarchical => hier(level),
            Scenario::Reversed => n_layers - 1 - hier(level),
            Scenario::FlatEarly => rng.below(third),
            Scenario::FlatLate => n_layers - third + rng.below(third),
            Scenario::Shuffled => rng.below(n_layers),
        })
        .collect()
}

/// The planted answer, one entry per voxel.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// `[V]` layer the voxel reads from.
    pub layer: Vec<i32>,
    /// `[V, 2]` image location `(x, y)` in [-1, 1]² (x along width, y along height), the
    /// selector's convention (DESIGN §3.3).
    pub space: Array,
    /// `[V]` scale in [0, 1] (0 = patch token, 1 = global token).
    pub scale: Vec<f32>,
    /// `[V]` 1 where the voxel carries planted signal, 0 for pure-noise voxels. Pure-noise
    /// voxels still carry their ROI's layer and scale and their retinotopic location, so maps of
    /// the truth have no holes; compare a fit with the truth on signal voxels only.
    pub signal: Vec<u8>,
}

impl Truth {
    /// Number of voxels V.
    pub fn n_voxels(&self) -> usize {
        self.layer.len()
    }

    /// Writes `layer` `[V]` i32, `space` `[V, 2]` f32, `scale` `[V]` f32 and `signal` `[V]` u8.
    pub fn save(&self, path: &Path) -> Result<()> {
        let v = self.n_voxels();
        if self.space.shape != [v, 2] || self.scale.len() != v || self.signal.len() != v {
            return Err(Error::invalid(format!(
                "truth fields disagree on the voxel count: layer {v}, space {:?}, scale {}, signal {}",
                self.space.shape,
                self.scale.len(),
                self.signal.len()
            )));
        }
        let tensors = [
            (
                "layer".to_string(),
                OutTensor::I32 {
                    shape: vec![v],
                    data: &self.layer,
                },
            ),
            ("space".to_string(), OutTensor::from_array(&self.space)),
            (
                "scale".to_string(),
                OutTensor::F32 {
                    shape: vec![v],
                    data: &self.scale,
                },
            ),
            (
                "signal".to_string(),
                OutTensor::U8 {
                    shape: vec![v],
                    data: &self.signal,
                },
            ),
        ];
        let mut meta = BTreeMap::new();
        meta.insert(
            "content".to_string(),
            "factortopy planted truth".to_string(),
        );
        write_tensors(path, &tensors, &meta)
    }

    /// Reads a truth file written by [`Truth::save`], checking shapes and values.
    pub fn load(path: &Path) -> Result<Self> {
        let f = TensorFile::open(path)?;
        let (ls, layer) = f.i32("layer")?;
        let v = layer.len();
        let bad = |name: &str, msg: String| Error::data(path, format!("tensor `{name}`: {msg}"));
        if ls != [v] {
            return Err(bad("layer", format!("expected a vector, got shape {ls:?}")));
        }
        let space = f.f32("space")?;
        if space.shape != [v, 2] {
            return Err(bad(
                "space",
                format!("expected shape [{v}, 2], got {:?}", space.shape),
            ));
        }
        let scale = f.f32("scale")?;
        if scale.shape != [v] {
            return Err(bad(
                "scale",
                format!("expected shape [{v}], got {:?}", scale.shape),
            ));
        }
        let (ss, signal) = f.u8("signal")?;
        if ss != [v] {
            return Err(bad("signal", format!("expected shape [{v}], got {ss:?}")));
        }
        if let Some(i) = layer.iter().position(|&l| l < 0) {
            return Err(bad(
                "layer",
                format!("negative layer {} at voxel {i}", layer[i]),
            ));
        }
        if let Some(i) = space.first_non_finite() {
            return Err(bad(
                "space",
                format!("non-finite value at {:?}", space.unravel(i)),
            ));
        }
        if let Some(i) = scale.data.iter().position(|s| !s.is_finite()) {
            return Err(bad("scale", format!("non-finite value at voxel {i}")));
        }
        if let Some(i) = signal.iter().position(|&s| s > 1) {
            return Err(bad(
                "signal",
                format!("value {} at voxel {i} is not 0 or 1", signal[i]),
            ));
        }
        Ok(Self {
            layer,
            space,
            scale: scale.data,
            signal,
        })
    }
}

/// Everything planting produces, including the intermediate quantities tests check.
#[derive(Debug, Clone)]
pub struct Planted {
    /// The planted brain (responses z-scored per voxel).
    pub brain: Brain,
    /// Every voxel's planted layer, location and scale.
    pub truth: Truth,
    /// `[N, V]` clean response, standardised over images; zero for pure-noise voxels.
    pub clean: Array,
    /// Per voxel, the channel readout `w_v` (length `C` of its layer); empty for pure-noise
    /// voxels.
    pub readout: Vec<Vec<f32>>,
}

/// Plants a brain on `features` (see the module docs) and returns it with the truth.
pub fn plant(features: &Features, cfg: &SynthConfig) -> Result<(Brain, Truth)> {
    let p = plant_detailed(features, cfg)?;
    Ok((p.brain, p.truth))
}

fn check_features(features: &Features) -> Result<usize> {
    features.validate("features to plant on")?;
    let n = features.n_images();
    if n < 2 {
        return Err(Error::invalid(format!(
            "need at least 2 images to plant responses, got {n}"
        )));
    }
    Ok(n)
}

/// Which voxels carry signal: a random `1 − signal_fraction` of them do not, but every ROI keeps
/// at least one signal voxel so each ROI's planted layer is observable.
fn choose_signal(roi: &[i32], fraction: f64, seed: u64) -> Vec<u8> {
    let v = roi.len();
    let mut rng = Rng::derive(seed, "synth.signal");
    let n_off = (((1.0 - fraction) * v as f64).round() as usize).min(v);
    let mut signal = vec![1u8; v];
    for &i in rng.permutation(v).iter().take(n_off) {
        signal[i] = 0;
    }
    for r in 0..ROI_NAMES.len() as i32 {
        let members: Vec<usize> = (0..v).filter(|&i| roi[i] == r).collect();
        if !members.is_empty() && members.iter().all(|&i| signal[i] == 0) {
            signal[members[0]] = 1;
        }
    }
    signal
}

/// `[N, C, G, G]` → `[N, G·G, C]`.
fn cell_major(a: &Array) -> Vec<f32> {
    let (c, gg) = (a.shape[1], a.shape[2] * a.shape[3]);
    let mut out = vec![0.0f32; a.numel()];
    out.par_chunks_mut(gg * c)
        .zip(a.data.par_chunks(c * gg))
        .for_each(|(dst, src)| {
            for (ch, plane) in src.chunks_exact(gg).enumerate() {
                for (cell, &x) in plane.iter().enumerate() {
                    dst[cell * c + ch] = x;
                }
            }
        });
    out
}

/// Dot product in f64 with a fixed summation order (four interleaved accumulators), so it
/// pipelines and gives the same bits everywhere.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let mut qa = a.chunks_exact(4);
    let mut qb = b.chunks_exact(4);
    for (x, y) in qa.by_ref().zip(qb.by_ref()) {
        for k in 0..4 {
            acc[k] += x[k] as f64 * y[k] as f64;
        }
    }
    for (k, (&x, &y)) in qa.remainder().iter().zip(qb.remainder()).enumerate() {
        acc[k] += x as f64 * y as f64;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// How a signal voxel reads its layer's local map.
enum Read {
    /// Point sampling of the G×G resampled map: bilinear taps, weights already multiplied by
    /// `1 − s` (`prf_size` 0).
    Taps([(usize, f32); 4]),
    /// Box-window average at the layer's own resolution: row and column weights (`box_window`).
    Window { wy: Vec<(usize, f64)>, wx: Vec<(usize, f64)> },
}

/// A signal voxel's planting recipe.
struct Recipe {
    layer: usize,
    read: Read,
    scale: f32,
    w: Vec<f32>,
}

/// [`plant`], also returning the clean responses and readouts.
pub fn plant_detailed(features: &Features, cfg: &SynthConfig) -> Result<Planted> {
    cfg.validate_planting()?;
    let n = check_features(features)?;
    crate::data::limits::elements("planted responses [images, voxels]", &[n, cfg.n_voxels])?;
    crate::data::limits::elements("resampled features [layers, images, width, G, G]", &[
        features.layers.len(),
        n,
        features.layers.iter().map(|l| l.local.shape.get(1).copied().unwrap_or(0)).max().unwrap_or(0),
        cfg.grid,
        cfg.grid,
    ])?;
    let n_layers = features.layers.len();
    let g = cfg.grid;
    let gg = g * g;
    let v = cfg.n_voxels;
    let prf = cfg.prf();

    // Point sampling reads every layer resampled to G×G as the model sees it (DESIGN §3.1),
    // stored cell-major ([N, G·G, C]) so each bilinear tap is a contiguous dot product.
    // Receptive fields read the features as they are.
    let cells: Vec<Vec<f32>> = if prf == 0.0 {
        features
            .layers
            .iter()
            .map(|l| resize_layer(&l.local, g).map(|a| cell_major(&a)))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let dims: Vec<(usize, usize, usize)> =
        features.layers.iter().map(|l| (l.local.shape[1], l.local.shape[2], l.local.shape[3])).collect();
    let globals: Vec<Array> = (0..n_layers).map(|l| features.global(l)).collect();
    let widths: Vec<usize> = features.layers.iter().map(|l| l.local.shape[1]).collect();

    let sheet = cortex::layout(v, cfg.seed)?;
    let roi_layer = planted_layers(cfg.scenario, n_layers, cfg.seed);
    let signal = choose_signal(&sheet.roi, cfg.signal_fraction, cfg.seed);
    let layer: Vec<i32> = sheet
        .roi
        .iter()
        .map(|&r| roi_layer[r as usize] as i32)
        .collect();
    let scale: Vec<f32> = sheet
        .roi
        .iter()
        .map(|&r| planted_scale(ROI_LEVELS[r as usize]))
        .collect();

    let bases: Vec<Vec<f32>> = widths
        .iter()
        .enumerate()
        .map(|(l, &c)| {
            let k = c.min(MAX_RANK);
            let mut rng = Rng::derive(cfg.seed, &format!("synth.basis.{l}"));
            let sd = 1.0 / (c as f64).sqrt();
            (0..c * k).map(|_| (rng.normal() * sd) as f32).collect()
        })
        .collect();
    let readout: Vec<Vec<f32>> = (0..v)
        .map(|i| {
            if signal[i] == 0 {
                return Vec::new();
            }
            let l = layer[i] as usize;
            let c = widths[l];
            let k = c.min(MAX_RANK);
            let mut rng = Rng::derive(cfg.seed, &format!("synth.readout.{i}"));
            let r: Vec<f64> = (0..k).map(|_| rng.normal()).collect();
            let b = &bases[l];
            (0..c)
                .map(|ch| (0..k).map(|j| b[ch * k + j] as f64 * r[j]).sum::<f64>() as f32)
                .collect()
        })
        .collect();
    let recipes: Vec<Option<Recipe>> = (0..v)
        .map(|i| {
            (signal[i] == 1).then(|| {
                let s = scale[i];
                let (x, y) = (sheet.space.data[2 * i], sheet.space.data[2 * i + 1]);
                let l = layer[i] as usize;
                let read = if prf == 0.0 {
                    let mut taps = bilinear_taps(x, y, g, g);
                    for t in taps.iter_mut() {
                        t.1 *= 1.0 - s;
                    }
                    Read::Taps(taps)
                } else {
                    let (_, h, w) = dims[l];
                    Read::Window { wy: box_window(y, prf, h), wx: box_window(x, prf, w) }
                };
                Recipe {
                    layer: l,
                    read,
                    scale: s,
                    w: readout[i].clone(),
                }
            })
        })
        .collect();

    // Image-major, so each image's maps stay in cache while every voxel reads them.
    let mut raw = vec![0.0f64; n * v];
    raw.par_chunks_mut(v).enumerate().for_each(|(img, row)| {
        for (out, rec) in row.iter_mut().zip(recipes.iter()) {
            let Some(rec) = rec else { continue };
            let c = widths[rec.layer];
            let glob = &globals[rec.layer].data[img * c..(img + 1) * c];
            let mut y = rec.scale as f64 * dot(&rec.w, glob);
            match &rec.read {
                Read::Taps(taps) => {
                    let map = &cells[rec.layer][img * gg * c..(img + 1) * gg * c];
                    for &(idx, wt) in taps {
                        y += wt as f64 * dot(&rec.w, &map[idx * c..(idx + 1) * c]);
                    }
                }
                Read::Window { wy, wx } => {
                    let (_, h, w) = dims[rec.layer];
                    let plane = c * h * w;
                    let map = &features.layers[rec.layer].local.data[img * plane..(img + 1) * plane];
                    y += (1.0 - rec.scale as f64) * window_dot(map, c, h, w, wy, wx, &rec.w);
                }
            }
            *out = y;
        }
    });

    let mut mean = vec![0.0f64; v];
    let mut sq = vec![0.0f64; v];
    for row in raw.chunks(v) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    for row in raw.chunks(v) {
        for ((s, &x), &m) in sq.iter_mut().zip(row).zip(&mean) {
            *s += (x - m) * (x - m);
        }
    }
    let mut inv_sd = vec![0.0f64; v];
    for i in 0..v {
        if signal[i] == 0 {
            continue;
        }
        let sd = (sq[i] / n as f64).sqrt();
        let varies = sd.is_finite() && sd > 1e-9 * (1.0 + mean[i].abs());
        if !varies {
            return Err(Error::invalid(format!(
                "planted response of voxel {i} (ROI {}, layer {}) does not vary over images; \
                 the features of that layer are constant or non-finite at the planted location",
                ROI_NAMES[sheet.roi[i] as usize], layer[i]
            )));
        }
        inv_sd[i] = 1.0 / sd;
    }
    let clean: Vec<f32> = raw
        .chunks(v)
        .flat_map(|row| {
            row.iter()
                .zip(&mean)
                .zip(&inv_sd)
                .map(|((&x, &m), &k)| ((x - m) * k) as f32)
        })
        .collect();
    drop(raw);

    let nc = cfg.noise_ceiling;
    let noise_sd = ((1.0 - nc) / nc).sqrt();
    let noise: Vec<Vec<f32>> = (0..v)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::derive(cfg.seed, &format!("synth.noise.{i}"));
            let sd = if signal[i] == 1 { noise_sd } else { 1.0 };
            (0..n).map(|_| (rng.normal() * sd) as f32).collect()
        })
        .collect();
    let mut responses = clean.clone();
    for (img, row) in responses.chunks_mut(v).enumerate() {
        for (i, r) in row.iter_mut().enumerate() {
            *r += noise[i][img];
        }
    }

    let brain = Brain {
        responses: Array::new(vec![n, v], responses)?.into(),
        coords: sheet.coords,
        roi: sheet.roi,
        noise_ceiling: Some(
            signal
                .iter()
                .map(|&s| if s == 1 { nc as f32 } else { 0.0 })
                .collect(),
        ),
        flat: Some(sheet.flat),
        hemisphere: None,
        roi_names: ROI_NAMES.iter().map(|s| s.to_string()).collect(),
        roi_levels: ROI_LEVELS.to_vec(),
        stimulus_ids: features.stimulus_ids.clone(),
        subject: Some("synthetic".to_string()),
    };
    let truth = Truth {
        layer,
        space: sheet.space,
        scale,
        signal,
    };
    Ok(Planted {
        brain,
        truth,
        clean: Array::new(vec![n, v], clean)?,
        readout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchical_layers_for_six() {
        assert_eq!(
            planted_layers(Scenario::Hierarchical, 6, 0),
            vec![0, 1, 3, 4, 5, 5, 5]
        );
        assert_eq!(
            planted_layers(Scenario::Reversed, 6, 0),
            vec![5, 4, 2, 1, 0, 0, 0]
        );
        assert_eq!(planted_layers(Scenario::Hierarchical, 1, 0), vec![0; 7]);
    }

    #[test]
    fn every_roi_keeps_a_signal_voxel() {
        let roi: Vec<i32> = (0..14).map(|i| i / 2).collect();
        let s = choose_signal(&roi, 0.0, 1);
        for r in 0..7 {
            assert!((0..14).any(|i| roi[i] == r && s[i] == 1));
        }
        assert_eq!(choose_signal(&roi, 1.0, 1), vec![1; 14]);
    }
}
