//! What one observation of the monitor reports (DESIGN §5), as serde data: one JSON object per
//! observation in the history file, and the full report behind the C ABI's JSON string.
//!
//! Every float is finite or `null` (an `Option`), so the JSON never holds NaN and always parses
//! back to the same value.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scores::HierarchyScores;

/// Forgetting of one ROI: the mean held-out R² of its voxels under the reference encoder, and
/// that mean relative to the reference features'.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RoiForgetting {
    /// The ROI's name.
    pub name: String,
    /// `r2 / reference_r2`; `None` when the reference encoder does not predict this ROI
    /// (reference mean R² ≤ 0) or the ROI has no voxels.
    pub retention: Option<f64>,
    /// `1 − retention`.
    pub forgetting: Option<f64>,
    /// Mean held-out R² of the ROI's voxels under the reference encoder at this step.
    pub r2: Option<f64>,
    /// The same at the reference (step 0) features: the denominator of `retention`.
    pub reference_r2: Option<f64>,
}

/// The result of a warm-started refit of the encoder on the features of this step.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RefitReport {
    /// Hierarchy scores (DESIGN §4) of the refitted encoder.
    pub hierarchy: HierarchyScores,
    /// `mean_v |d_v(t) − d_v(0)|`: how far the layer map moved, in units of network depth.
    pub layer_shift: f64,
    /// Fraction of voxels whose argmax layer differs from the reference encoder's.
    pub argmax_moved: f64,
    /// Mean held-out R² of the refitted encoder on this step's features.
    pub r2: f64,
    /// Optimiser steps the refit took (bounded by the refit budget).
    pub steps: usize,
}

/// One observation: how much of the brain-aligned readout survives in the network at `step`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The caller's training step.
    pub step: u64,
    /// Index of this observation since the monitor was created (0 for the first); survives
    /// save/load.
    pub observation: usize,
    /// Mean held-out R² of the reference encoder on this step's features, divided by the same on
    /// the reference features. 1 means nothing of the readout was lost.
    pub retention: f64,
    /// `1 − retention`.
    pub forgetting: f64,
    /// Mean held-out R² (all voxels) of the reference encoder on this step's features.
    pub r2: f64,
    /// The same on the reference features (the denominator of `retention`).
    pub reference_r2: f64,
    /// Per ROI, in the brain file's ROI order.
    pub rois: Vec<RoiForgetting>,
    /// Linear CKA (unbiased HSIC, global tokens, all probe images) of each layer against the
    /// reference features.
    pub cka: Vec<f64>,
    /// `1 − cka`.
    pub drift: Vec<f64>,
    /// `forgetting` is above the configured threshold.
    pub should_stop: bool,
    /// Present on refit observations only.
    pub refit: Option<RefitReport>,
}

impl StepReport {
    /// One line of JSON (no newline): a line of the history file.
    pub fn to_json_line(&self) -> String {
        // Cannot fail: only strings, integers, booleans, finite-or-null floats and lists.
        serde_json::to_string(self).expect("a StepReport always serialises")
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a StepReport always serialises")
    }

    /// Parses a report written by [`StepReport::to_json`] or a history line.
    pub fn from_json(s: &str) -> Result<StepReport> {
        serde_json::from_str(s).map_err(|e| Error::invalid(format!("not a factortopy step report: {e}")))
    }

    /// The smallest per-layer CKA (the most changed layer), 1 for a network with no layers.
    pub fn min_cka(&self) -> f64 {
        let m = self.cka.iter().copied().fold(f64::INFINITY, f64::min);
        if m.is_finite() {
            m
        } else {
            1.0
        }
    }
}
