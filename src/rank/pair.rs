//! One (network, subject) pair of a ranking grid: its fit, what the fit leaves for the ranking
//! (the report, the bootstrap replicates that paired tests need, optionally the per-layer scores
//! of the layer-wise ridge baseline), and the digest of its inputs and settings that lets an
//! interrupted grid resume without refitting the pairs it finished.
//!
//! A pair's outcome is plain JSON so that it can be produced anywhere: in this process, in a
//! worker process (`rank --jobs`), or on a cluster node through the C ABI (`ft_rank_pair`), and
//! combined afterwards (`ft_rank_combine`). Every outcome goes through that JSON, even in this
//! process, so a ranking does not depend on where its pairs ran.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::baseline::layerwise::fit_ridge_baseline;
use crate::data::{Brain, FeatureSource};
use crate::engine::{Estimator, Fitted, OnEvent};
use crate::error::{Error, Result};
use crate::scores::bootstrap::Replicates;
use crate::scores::Report;

/// Layout version of a pair file; a file of another version is refitted, never misread.
pub const PAIR_FORMAT: u32 = 1;

/// The per-layer held-out accuracy of the layer-wise ridge baseline: which layers carry the
/// signal in each ROI, from the same split as the pair's fit.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LayerScores {
    /// The network's layers, in depth order.
    pub layer_names: Vec<String>,
    /// The brain's ROIs.
    pub roi_names: Vec<String>,
    /// `r2[roi][layer]`: mean held-out R² over the ROI's voxels of a ridge fit on that layer
    /// alone (`null` for an ROI without voxels).
    pub r2: Vec<Vec<Option<f64>>>,
}

impl LayerScores {
    /// Means of `val_r2` (`[L, V]`, layer-major) over each ROI of `brain`.
    pub fn from_layer_r2(layer_names: &[String], val_r2: &[f32], brain: &Brain) -> Result<LayerScores> {
        let v = brain.n_voxels();
        let l = layer_names.len();
        if val_r2.len() != l * v {
            return Err(Error::mismatch(format!("{} per-layer R² values for {l} layers × {v} voxels", val_r2.len())));
        }
        let n_roi = brain.roi_names.len();
        let mut sum = vec![vec![0.0f64; l]; n_roi];
        let mut count = vec![0usize; n_roi];
        for (voxel, &roi) in brain.roi.iter().enumerate() {
            let Ok(r) = usize::try_from(roi) else { continue };
            if r >= n_roi {
                continue;
            }
            count[r] += 1;
            for (layer, s) in sum[r].iter_mut().enumerate() {
                *s += val_r2[layer * v + voxel] as f64;
            }
        }
        let r2 = sum
            .into_iter()
            .zip(&count)
            .map(|(s, &c)| s.into_iter().map(|x| (c > 0).then(|| x / c as f64)).collect())
            .collect();
        Ok(LayerScores { layer_names: layer_names.to_vec(), roi_names: brain.roi_names.clone(), r2 })
    }
}

/// What one pair's fit leaves for the ranking.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PairOutcome {
    /// [`PAIR_FORMAT`].
    pub format: u32,
    /// [`pair_digest`] of the inputs and settings that produced it.
    pub digest: String,
    /// Position of the network and of the subject in the grid's input lists.
    pub network: usize,
    /// See `network`.
    pub subject: usize,
    /// The subject's name (the brain's `subject` metadata, else the file's stem).
    pub subject_name: String,
    /// Wall time of the fit (not part of any ranking's JSON, which is the same wherever and
    /// however fast its pairs ran).
    pub seconds: f64,
    /// The pair's full report.
    pub report: Report,
    /// Bootstrap replicates of the headline numbers (`None` without a bootstrap).
    pub replicates: Option<Replicates>,
    /// Per-layer scores when the grid asked for them.
    pub layers: Option<LayerScores>,
}

impl PairOutcome {
    /// Compact JSON (NaN replicates as `null`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a pair outcome always serialises")
    }

    /// Parses a pair outcome; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<PairOutcome> {
        let mut p: PairOutcome = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("{origin}: not a pair outcome: {}", crate::error::one_line(&e.to_string()))))?;
        if p.format != PAIR_FORMAT {
            return Err(Error::invalid(format!("{origin}: pair format {} (this version reads {PAIR_FORMAT})", p.format)));
        }
        // The report does not serialise its replicates; the paired tests between networks read
        // them from there.
        if let (Some(u), Some(r)) = (p.report.uncertainty.as_mut(), p.replicates.as_ref()) {
            u.replicates = r.clone();
        }
        Ok(p)
    }

    /// The network's display name before de-duplication (the features' `model` metadata).
    pub fn network_name(&self) -> &str {
        &self.report.model
    }
}

/// Fits one pair. `digest` is recorded in the outcome (see [`pair_digest`]).
#[allow(clippy::too_many_arguments)]
pub fn fit_pair(
    estimator: &Estimator,
    with_layers: bool,
    features: &dyn FeatureSource,
    brain: &Brain,
    network: usize,
    subject: usize,
    subject_name: &str,
    digest: &str,
    on_event: OnEvent<'_>,
) -> Result<PairOutcome> {
    let t0 = Instant::now();
    let fitted = estimator.fit(features, brain, on_event)?;
    let layers = if !with_layers {
        None
    } else {
        let names = layer_names(features);
        Some(match &fitted {
            // The ridge fit already scored every layer on the held-out images.
            Fitted::Ridge(r) => LayerScores::from_layer_r2(&names, &r.val_r2.data, brain)?,
            Fitted::Encoder(_) => {
                // Same split and seed as the encoder's fit; the intervals of this side fit
                // are not reported, so it resamples nothing.
                let mut cfg = estimator.ridge_config();
                cfg.uncertainty = cfg.uncertainty.without_resampling();
                let r = fit_ridge_baseline(features, brain, &cfg, estimator.weighted, None)?;
                LayerScores::from_layer_r2(&names, &r.val_r2.data, brain)?
            }
        })
    };
    let report = fitted.report().clone();
    let replicates = report.uncertainty.as_ref().filter(|u| u.n_resamples > 0).map(|u| u.replicates.clone());
    Ok(PairOutcome {
        format: PAIR_FORMAT,
        digest: digest.to_string(),
        network,
        subject,
        subject_name: subject_name.to_string(),
        seconds: t0.elapsed().as_secs_f64(),
        report,
        replicates,
        layers,
    })
}

fn layer_names(f: &dyn FeatureSource) -> Vec<String> {
    (0..f.n_layers()).map(|i| f.layer_names().get(i).cloned().unwrap_or_else(|| format!("layer{i}"))).collect()
}

/// The settings text a digest covers: everything that changes a fit's result (method, device,
/// schedule, split, seed, uncertainty settings), whether per-layer scores are wanted, and the
/// library version.
pub fn settings_text(estimator: &Estimator, with_layers: bool) -> String {
    format!("factortopy {} | {estimator:?} | with_layers {with_layers}", env!("CARGO_PKG_VERSION"))
}

/// SHA-256 of files' contents, each file read once however many pairs use it.
#[derive(Debug, Default)]
pub struct FileDigests {
    known: HashMap<PathBuf, [u8; 32]>,
}

impl FileDigests {
    /// The digest of `path`'s contents.
    pub fn of(&mut self, path: &Path) -> Result<[u8; 32]> {
        if let Some(d) = self.known.get(path) {
            return Ok(*d);
        }
        let mut file = crate::data::io::open_input(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let d: [u8; 32] = hasher.finalize().into();
        self.known.insert(path.to_path_buf(), d);
        Ok(d)
    }
}

/// The digest of a pair: its two input files' contents and the settings text. Equal digests
/// mean the same fit, so a pair file with the current digest need not be refitted.
pub fn pair_digest(files: &mut FileDigests, features: &Path, brain: &Path, settings: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(files.of(features)?);
    h.update(files.of(brain)?);
    h.update(settings.as_bytes());
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Where a grid keeps its finished pairs: `DIR/pairs/<digest>.json`.
#[derive(Debug, Clone)]
pub struct PairStore {
    dir: PathBuf,
}

impl PairStore {
    /// The store under the output folder `out` (its `pairs` folder is created on first write).
    pub fn new(out: &Path) -> PairStore {
        PairStore { dir: out.join("pairs") }
    }

    /// Where the pair with `digest` is kept.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.json"))
    }

    /// The finished pair with this digest, if the store has a readable one. A file that cannot
    /// be read or parsed, or whose digest does not match, is treated as absent (the pair is
    /// fitted again and the file replaced).
    pub fn load(&self, digest: &str) -> Option<PairOutcome> {
        let path = self.path(digest);
        let text = std::fs::read_to_string(&path).ok()?;
        PairOutcome::from_json(&text, &path.display().to_string()).ok().filter(|p| p.digest == digest)
    }

    /// Whether any pair file is there.
    pub fn has_any(&self) -> bool {
        std::fs::read_dir(&self.dir).map(|mut d| d.next().is_some()).unwrap_or(false)
    }

    /// Writes a finished pair (atomically).
    pub fn save(&self, outcome: &PairOutcome) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.path(&outcome.digest);
        crate::data::io::atomic_write(&path, outcome.to_json().as_bytes())?;
        Ok(path)
    }
}
