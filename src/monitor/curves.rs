//! The monitor's pictures (DESIGN §7): forgetting and per-layer CKA over training steps.

use crate::error::Result;
use crate::monitor::Monitor;

/// A chart title that fits the chart's width: the model name only when it is short.
fn titled(what: &str, model: &str) -> String {
    if model.chars().count() + what.len() + 2 <= 44 {
        format!("{model}: {what}")
    } else {
        what.to_string()
    }
}

/// `forgetting.png` (overall and per ROI) and `cka.png` (per layer) over steps.
pub fn write_curves(dir: &std::path::Path, m: &Monitor) -> Result<()> {
    crate::data::write_into(dir, |stage| {
        let h = m.history();
        let mut series = vec![("all voxels".to_string(), h.iter().map(|r| (r.step as f64, r.forgetting)).collect())];
        for (k, name) in m.brain().roi_names.iter().enumerate() {
            let pts: Vec<(f64, f64)> =
                h.iter().map(|r| (r.step as f64, r.rois[k].forgetting.unwrap_or(f64::NAN))).collect();
            if pts.iter().any(|p| p.1.is_finite()) {
                series.push((name.clone(), pts));
            }
        }
        crate::plot::line_chart(
            &stage.join("forgetting.png"),
            &titled("forgetting", m.model()),
            "training step",
            "forgetting (1 - retention)",
            &series,
        )?;
        let cka: Vec<(String, Vec<(f64, f64)>)> = m
            .layer_names()
            .iter()
            .enumerate()
            .map(|(l, name)| (name.clone(), h.iter().map(|r| (r.step as f64, r.cka[l])).collect()))
            .collect();
        crate::plot::line_chart(
            &stage.join("cka.png"),
            &titled("layer CKA vs reference", m.model()),
            "training step",
            "linear CKA",
            &cka,
        )
    })
}
