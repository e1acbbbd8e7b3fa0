//! `factortopy fit --method ridge`: the layer-wise ridge baseline (src/baseline), with the same
//! inputs, split and output directory layout as a FactorTopy fit, plus `ridge.json` and an
//! optional comparison with a FactorTopy fit of the same brain (`--compare DIR`).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::baseline::{agreement, write_ridge_outputs_with, RidgeBaseline, RidgeBaselineConfig};
use crate::data::Brain;
use crate::error::{Error, Result};
use crate::scores::Report;

/// Settings that only `--method ridge` uses.
#[derive(Args, Debug, Clone)]
pub struct RidgeArgs {
    /// Ridge penalty grid: `LO:HI:N` (N values from 10^LO to 10^HI) or a comma-separated list
    /// (default `-1:8:19`).
    #[arg(long, value_name = "GRID")]
    pub alphas: Option<String>,
    /// Cross-validation folds (inside the training images) for choosing each voxel's penalty
    /// (default 5).
    #[arg(long, value_name = "K")]
    pub folds: Option<usize>,
    /// A FactorTopy output directory of the same brain (report.json, and selectors.safetensors
    /// if present) to compare the ridge layer map with, ROI by ROI.
    #[arg(long, value_name = "DIR")]
    pub compare: Option<PathBuf>,
}

/// Parses `LO:HI:N` or `a,b,c`.
pub fn parse_alphas(s: &str) -> Result<Vec<f64>> {
    let bad = || Error::invalid(format!("--alphas `{s}`: expected LO:HI:N (log10 range) or a comma-separated list"));
    let alphas: Vec<f64> = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        let lo: f64 = parts[0].trim().parse().map_err(|_| bad())?;
        let hi: f64 = parts[1].trim().parse().map_err(|_| bad())?;
        let n: usize = parts[2].trim().parse().map_err(|_| bad())?;
        let limits = crate::data::limits::MAX_ALPHAS;
        crate::data::limits::positive_at_most(&format!("--alphas `{s}`: the count N"), n, limits)?;
        if !(lo.is_finite() && hi.is_finite()) {
            return Err(bad());
        }
        crate::baseline::logspace(lo, hi, n)
    } else {
        let list = s.split(',').map(|x| x.trim().parse::<f64>().map_err(|_| bad())).collect::<Result<Vec<f64>>>()?;
        crate::data::limits::positive_at_most(&format!("--alphas `{s}`: the number of penalties"), list.len(), crate::data::limits::MAX_ALPHAS)?;
        list
    };
    if alphas.is_empty() || alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(Error::invalid(format!("--alphas `{s}`: penalties must be positive and finite")));
    }
    Ok(alphas)
}

impl RidgeArgs {
    /// The ridge settings these flags name (the split's seed and fraction come from the
    /// estimator's training flags).
    pub fn config(&self) -> Result<RidgeBaselineConfig> {
        let base = RidgeBaselineConfig::default();
        let alphas = match &self.alphas {
            Some(s) => parse_alphas(s)?,
            None => base.alphas.clone(),
        };
        Ok(RidgeBaselineConfig { alphas, n_folds: self.folds.unwrap_or(base.n_folds), ..base })
    }

    /// The first ridge-only flag given, if any (refused with `--method factortopy`, where it
    /// would change nothing).
    pub fn given_flag(&self) -> Option<&'static str> {
        [("--alphas", self.alphas.is_some()), ("--folds", self.folds.is_some()), ("--compare", self.compare.is_some())]
            .into_iter()
            .find_map(|(flag, given)| given.then_some(flag))
    }
}

/// A FactorTopy fit to compare the ridge map with: its report and, when saved, its selections.
pub type Comparison = (Report, Option<crate::model::Selections>);

/// Reads `--compare DIR` (before the fit, so a bad path fails early).
pub fn read_compare(dir: &Path) -> Result<Comparison> {
    let report = Report::read_json(&dir.join("report.json"))?;
    let sel_path = dir.join("selectors.safetensors");
    let sel = if sel_path.is_file() { Some(read_selections(&sel_path)?) } else { None };
    Ok((report, sel))
}

/// Writes the ridge baseline's outputs (and the comparison; the pictures unless `pictures` is
/// false) and prints where they are.
pub fn finish(out: &Path, fit: &RidgeBaseline, brain: &Brain, reference: Option<Comparison>, pictures: bool) -> Result<i32> {
    let ag = match &reference {
        None => None,
        Some((rep, sel)) => {
            let voxels = sel.as_ref().map(|s| (&fit.selections, s, brain));
            Some(agreement(&fit.report, rep, voxels)?)
        }
    };
    crate::cli::warn_undefined(&fit.report.model, &fit.report.hierarchy);
    let outputs = write_ridge_outputs_with(out, fit, brain, reference.as_ref().map(|(r, _)| r).zip(ag.as_ref()), pictures)?;
    println!("{}", fit.report.headline());
    if let Some(a) = &ag {
        println!("{}", a.table());
    }
    println!("report:    {}", outputs.report.display());
    println!("ridge:     {}", outputs.summary.display());
    for p in &outputs.pictures {
        println!("picture:   {}", p.display());
    }
    println!("selectors: {}", outputs.selectors.display());
    Ok(0)
}

/// `layer_probs`, `space`, `scale` of a saved selectors file.
fn read_selections(path: &Path) -> Result<crate::model::Selections> {
    let f = crate::data::TensorFile::open(path)?;
    let layer_probs = f.f32("layer_probs")?;
    let space = f.f32("space")?;
    let scale = f.f32("scale")?.data;
    let v = scale.len();
    if layer_probs.shape.len() != 2 || layer_probs.shape[0] != v || space.shape != [v, 2] {
        return Err(Error::data(
            path,
            format!(
                "inconsistent selectors: layer_probs {:?}, space {:?}, scale [{v}]",
                layer_probs.shape, space.shape
            ),
        ));
    }
    Ok(crate::model::Selections { layer_probs, space, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_grids() {
        let a = parse_alphas("-1:8:19").unwrap();
        assert_eq!(a.len(), 19);
        assert!((a[0] - 0.1).abs() < 1e-12 && (a[18] - 1e8).abs() < 1e-3);
        assert_eq!(parse_alphas("1, 10,100").unwrap(), vec![1.0, 10.0, 100.0]);
        assert!(parse_alphas("1:2").is_err());
        assert!(parse_alphas("0,1").is_err());
        assert!(parse_alphas("x").is_err());
    }
}
