//! Ranking candidate networks by how brain-like their hierarchy is (DESIGN §1.3, §6 `rank`):
//! every network is fitted against the same brain with the same split and seed, scored with
//! DESIGN §4, and sorted by the alignment slope. Every row carries the slope's bootstrap interval
//! and permutation p-value, and adjacent rows a paired bootstrap test of their difference (same
//! held-out images and voxels in every resample, so the two share their noise). The CLI (`factortopy rank`) gates on
//! the best slope or its interval's lower bound; the C ABI wraps [`rank`] and
//! [`Ranking::to_json`].
//!
//! Over several subjects (one brain each, the same images), [`grid`] fits every network ×
//! subject pair (here, in worker processes or anywhere through [`pair`]'s outcomes) and
//! [`subjects`] ranks the networks with subjects as the random effect.
#![warn(missing_docs)]

pub mod grid;
pub mod pair;
pub mod subjects;

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Brain, FeatureSource, Features};
use crate::error::{Error, Result};
use crate::engine::{Estimator, Method};
use crate::scores::bootstrap::paired_difference;
use crate::scores::{Interval, PairedDifference, Report};

/// Settings of a ranking: every network is fitted by the same estimator (method, device, split,
/// seed, and the uncertainty settings, so that the networks' bootstrap replicates are paired).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RankConfig {
    /// The estimator every network is fitted with.
    pub estimator: Estimator,
}

/// What `--min-slope` is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankGate {
    /// The best network's slope.
    #[default]
    Point,
    /// The lower bound of the best network's slope interval: passes only when the slope is above
    /// the threshold beyond the noise of the estimate.
    Lower,
}

impl std::str::FromStr for RankGate {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "point" => Ok(RankGate::Point),
            "lower" => Ok(RankGate::Lower),
            _ => Err(Error::invalid(format!("unknown gate `{s}`; valid gates: point, lower"))),
        }
    }
}

/// One network's row of the ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankRow {
    /// 1 = best (largest slope).
    pub rank: usize,
    /// Position of the network in the input list.
    pub index: usize,
    /// The features file's `model` metadata (made unique with `#k` when repeated).
    pub name: String,
    /// Hierarchy scores; `None` (`null`) when undefined (see [`crate::scores::HierarchyScores`]).
    pub slope: Option<f64>,
    /// Fitted depth at the bottom of the hierarchy.
    pub b0: Option<f64>,
    /// Fitted depth at the top of the hierarchy.
    pub b1: Option<f64>,
    /// Spearman ρ between ROI position and voxel depth.
    pub spearman: Option<f64>,
    /// Mean held-out R².
    pub r2_mean: f64,
    /// Median held-out R².
    pub r2_median: f64,
    /// Noise-normalised accuracy (mean, median) where the brain has a noise ceiling.
    pub noise_normalized_mean: Option<f64>,
    /// Median noise-normalised accuracy.
    pub noise_normalized_median: Option<f64>,
    /// Wall-clock seconds of this network's fit: printed in tables, left out of the JSON, which
    /// is the same wherever and however fast the fits ran.
    #[serde(skip_serializing, default)]
    pub fit_seconds: f64,
    /// Mean voxel depth per ROI, in the brain's ROI order (`None` for an empty ROI).
    pub roi_depth: Vec<Option<f64>>,
    /// Bootstrap interval of the slope (`None` without a bootstrap).
    pub slope_interval: Option<Interval>,
    /// Permutation p-value of the slope (ROI levels shuffled across ROIs).
    pub p_slope: Option<f64>,
    /// Paired bootstrap test of `slope − slope of the next row` (`None` on the last row).
    pub vs_next: Option<PairedDifference>,
    /// Per-layer held-out R² per ROI of the layer-wise ridge baseline (`rank --with-layers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<pair::LayerScores>,
}

/// A finished ranking: rows sorted best first, plus what is needed to print and plot it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    /// How every network was fitted.
    pub method: Method,
    /// Confidence level of the intervals and of the paired tests.
    pub level: f64,
    /// Bootstrap resamples behind them (0 = none).
    pub n_resamples: usize,
    /// The brain's subject, when known.
    pub subject: Option<String>,
    /// The brain's ROIs, in the order of [`RankRow::roi_depth`].
    pub roi_names: Vec<String>,
    /// One row per network, best first.
    pub rows: Vec<RankRow>,
    /// The full report of every network, in row order.
    #[serde(skip)]
    pub reports: Vec<Report>,
}

fn row_of(index: usize, name: String, report: &Report, seconds: f64) -> RankRow {
    let h = &report.hierarchy;
    RankRow {
        rank: 0,
        index,
        name,
        slope: h.slope,
        b0: h.b0,
        b1: h.b1,
        spearman: h.spearman,
        r2_mean: report.r2.mean,
        r2_median: report.r2.median,
        noise_normalized_mean: report.noise_ceiling.map(|c| c.normalized.mean),
        noise_normalized_median: report.noise_ceiling.map(|c| c.normalized.median),
        fit_seconds: seconds,
        roi_depth: report.rois.iter().map(|r| r.mean_depth).collect(),
        slope_interval: report.uncertainty.as_ref().and_then(|u| u.slope),
        p_slope: report.uncertainty.as_ref().and_then(|u| u.permutation).map(|p| p.p_slope),
        vs_next: None,
        layers: None,
    }
}

/// Paired test of two networks' slopes from their reports' bootstrap replicates.
fn slope_difference(a: &Report, b: &Report, level: f64) -> Option<PairedDifference> {
    let (ua, ub) = (a.uncertainty.as_ref()?, b.uncertainty.as_ref()?);
    if ua.n_resamples == 0 || ua.seed != ub.seed || ua.n_images_resampled != ub.n_images_resampled {
        return None;
    }
    // An undefined slope has nothing to compare.
    paired_difference(a.hierarchy.slope?, &ua.replicates.slope, b.hierarchy.slope?, &ub.replicates.slope, level)
}

/// Unique display names: the model name (`unnamed` when empty), with ` #k` appended to repeats.
fn unique_names<'a>(models: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    grid::unique(models.into_iter().map(|m| if m.trim().is_empty() { "unnamed".to_string() } else { m.to_string() }))
}

/// Called with (index, name) before each network's fit.
pub type OnNetwork<'a> = Option<&'a mut dyn FnMut(usize, &str)>;

/// Fits every network against `brain` (same split and seed) and returns the rows sorted by
/// slope, best first (ties: larger Spearman ρ, then input order). `progress` is called with
/// (index, name) before each fit, `on_event` with each fit's epochs (or ridge layers).
pub fn rank_with_progress(
    brain: &Brain,
    networks: &[&dyn FeatureSource],
    cfg: &RankConfig,
    mut progress: OnNetwork<'_>,
    mut on_event: crate::engine::OnEvent<'_>,
) -> Result<Ranking> {
    if networks.is_empty() {
        return Err(Error::invalid("rank needs at least one network"));
    }
    cfg.estimator.validate()?;
    for (i, f) in networks.iter().enumerate() {
        crate::data::check_pair(*f, &format!("network {i} ({})", f.model()), brain, "brain")?;
    }
    let names = unique_names(networks.iter().map(|f| f.model()));
    let mut rows = Vec::with_capacity(networks.len());
    let mut reports = Vec::with_capacity(networks.len());
    for (i, f) in networks.iter().enumerate() {
        if let Some(cb) = progress.as_mut() {
            cb(i, &names[i]);
        }
        let t0 = Instant::now();
        let events: crate::engine::OnEvent<'_> = match on_event.as_mut() {
            Some(cb) => Some(&mut **cb),
            None => None,
        };
        let report = cfg.estimator.fit(*f, brain, events)?.report().clone();
        rows.push(row_of(i, names[i].clone(), &report, t0.elapsed().as_secs_f64()));
        reports.push(report);
    }
    Ok(Ranking::from_rows(
        cfg.estimator.method,
        cfg.estimator.uncertainty.bootstrap.level,
        cfg.estimator.uncertainty.bootstrap.n_resamples,
        brain.subject.clone(),
        brain.roi_names.clone(),
        rows,
        reports,
    ))
}

impl Ranking {
    /// Sorts unranked rows (in input order, with their reports) by slope, best first (ties:
    /// larger Spearman ρ, then input order), numbers them and tests each against the next.
    pub fn from_rows(
        method: Method,
        level: f64,
        n_resamples: usize,
        subject: Option<String>,
        roi_names: Vec<String>,
        rows: Vec<RankRow>,
        reports: Vec<Report>,
    ) -> Ranking {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&rows[a], &rows[b]);
            // Undefined scores rank after every defined one (`None < Some` in `Option`'s order).
            cmp_opt(y.slope, x.slope).then(cmp_opt(y.spearman, x.spearman)).then(x.index.cmp(&y.index))
        });
        let mut sorted_rows = Vec::with_capacity(rows.len());
        let mut sorted_reports = Vec::with_capacity(rows.len());
        for (k, &i) in order.iter().enumerate() {
            let mut r = rows[i].clone();
            r.rank = k + 1;
            sorted_rows.push(r);
            sorted_reports.push(reports[i].clone());
        }
        for k in 0..sorted_rows.len().saturating_sub(1) {
            sorted_rows[k].vs_next = slope_difference(&sorted_reports[k], &sorted_reports[k + 1], level);
        }
        Ranking { method, level, n_resamples, subject, roi_names, rows: sorted_rows, reports: sorted_reports }
    }

    /// The ranking of one subject's pairs (every network against one brain, in network order).
    pub fn from_outcomes(outcomes: &[&pair::PairOutcome]) -> Result<Ranking> {
        let first = outcomes.first().ok_or_else(|| Error::invalid("a ranking needs at least one network"))?;
        let (method, level, n_resamples) = settings_of(&first.report)?;
        let names = unique_names(outcomes.iter().map(|p| p.network_name()));
        let mut rows = Vec::with_capacity(outcomes.len());
        let mut reports = Vec::with_capacity(outcomes.len());
        for (i, p) in outcomes.iter().enumerate() {
            let mut row = row_of(p.network, names[i].clone(), &p.report, p.seconds);
            row.layers = p.layers.clone();
            rows.push(row);
            reports.push(p.report.clone());
        }
        let roi_names = first.report.rois.iter().map(|r| r.name.clone()).collect();
        Ok(Ranking::from_rows(method, level, n_resamples, first.report.subject.clone(), roi_names, rows, reports))
    }
}

/// The method and the bootstrap's level and resample count a report was made with.
fn settings_of(report: &Report) -> Result<(Method, f64, usize)> {
    let method: Method = report.method.parse()?;
    let (level, n) = report
        .settings
        .uncertainty
        .as_ref()
        .map(|u| (u.bootstrap.level, u.bootstrap.n_resamples))
        .unwrap_or((crate::scores::BootstrapConfig::default().level, 0));
    Ok((method, level, n))
}

/// Total order on optional scores: `None` below every number, numbers by `total_cmp`.
pub(crate) fn cmp_opt(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// [`rank_with_progress`] without progress, returning only the rows (best first).
pub fn rank(brain: &Brain, networks: &[Features], cfg: &RankConfig) -> Result<Vec<RankRow>> {
    let refs: Vec<&dyn FeatureSource> = networks.iter().map(|f| f as &dyn FeatureSource).collect();
    Ok(rank_with_progress(brain, &refs, cfg, None, None)?.rows)
}

/// Pretty JSON of ranked rows (what [`rank`] returns), for the C ABI and other hosts.
pub fn rows_to_json(rows: &[RankRow]) -> String {
    serde_json::to_string_pretty(rows).expect("rank rows always serialise")
}

/// Output formats of a ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankFormat {
    /// Aligned columns for a terminal, with a legend.
    #[default]
    Table,
    /// The ranking as JSON.
    Json,
    /// A Markdown table, e.g. for a CI job's summary.
    Markdown,
}

impl std::str::FromStr for RankFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(RankFormat::Table),
            "json" => Ok(RankFormat::Json),
            "markdown" | "md" => Ok(RankFormat::Markdown),
            _ => Err(Error::invalid(format!("unknown format `{s}`; valid formats: table, json, markdown"))),
        }
    }
}

pub(crate) fn interval_text(i: Option<Interval>) -> String {
    i.map(|i| format!("[{:.3}, {:.3}]", i.lo, i.hi)).unwrap_or_else(|| "-".into())
}

/// `> (p 0.000)` when the difference with the next row is significant, `≈ (p 0.412)` when not.
fn vs_text(d: Option<PairedDifference>) -> String {
    match d {
        None => String::new(),
        Some(d) => format!("{} Δ {:.3} (p {:.3})", if d.significant { ">" } else { "≈" }, d.estimate, d.p_value),
    }
}

/// Widest network name a table prints; longer names are cut with `…` (the JSON keeps them
/// whole). Padding a column to an unbounded width would panic in `format!`.
const MAX_NAME_WIDTH: usize = 48;

/// A network name for a table: control characters escaped, cut to [`MAX_NAME_WIDTH`].
pub(crate) fn table_name(name: &str) -> String {
    let clean = crate::error::one_line(name);
    if clean.chars().count() <= MAX_NAME_WIDTH {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_NAME_WIDTH - 1).collect();
    cut.push('…');
    cut
}

pub(crate) fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".to_string())
}

impl Ranking {
    /// The best row (largest slope).
    pub fn best(&self) -> Option<&RankRow> {
        self.rows.first()
    }

    /// The number `gate` compares with a threshold: the best slope, or its interval's lower
    /// bound (`None` when there is no interval or the slope is undefined: an undefined slope
    /// reaches no threshold).
    pub fn gated_value(&self, gate: RankGate) -> Option<f64> {
        let b = self.best()?;
        match gate {
            RankGate::Point => b.slope,
            RankGate::Lower => b.slope_interval.map(|i| i.lo),
        }
    }

    /// True when there is no threshold or the gated value reaches it (a missing interval under
    /// the `lower` gate fails).
    pub fn passes(&self, min_slope: Option<f64>, gate: RankGate) -> bool {
        match min_slope {
            None => true,
            Some(m) => self.gated_value(gate).is_some_and(|x| x >= m),
        }
    }

    /// Stable, pretty JSON (no NaN: undefined values are `null`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Ranking always serialises")
    }

    fn has_nc(&self) -> bool {
        self.rows.iter().any(|r| r.noise_normalized_mean.is_some())
    }

    /// A fixed-width table for a terminal, with a legend of the uncertainty columns.
    pub fn table(&self) -> String {
        let names: Vec<String> = self.rows.iter().map(|r| table_name(&r.name)).collect();
        let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(7).max(7);
        let nc = self.has_nc();
        let ci_head = format!("{:.0}% CI", 100.0 * self.level);
        let mut s = format!(
            "{:>4}  {:<w$}  {:>7} {:>16} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8}{} {:>8}  {}\n",
            "rank",
            "network",
            "slope",
            ci_head,
            "p(null)",
            "b0",
            "b1",
            "spearman",
            "R² mean",
            "R² med",
            if nc { format!(" {:>8}", "NC-norm") } else { String::new() },
            "fit s",
            "vs next",
        );
        for (r, name) in self.rows.iter().zip(&names) {
            s += &format!(
                "{:>4}  {:<w$}  {:>7} {:>16} {:>7} {:>7} {:>7} {:>8} {:>8.4} {:>8.4}{} {:>8.1}  {}\n",
                r.rank,
                name,
                opt(r.slope),
                interval_text(r.slope_interval),
                r.p_slope.map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into()),
                opt(r.b0),
                opt(r.b1),
                opt(r.spearman),
                r.r2_mean,
                r.r2_median,
                if nc { format!(" {:>8}", opt(r.noise_normalized_mean)) } else { String::new() },
                r.fit_seconds,
                vs_text(r.vs_next),
            );
        }
        s += &self.legend();
        s += &self.layers_text();
        s
    }

    /// The per-layer scores of the rows that have them (`rank --with-layers`).
    fn layers_text(&self) -> String {
        self.rows.iter().filter_map(|r| r.layers.as_ref().map(|l| subjects::layer_table(&r.name, l))).collect()
    }

    /// What the uncertainty columns mean (one line).
    fn legend(&self) -> String {
        if self.n_resamples == 0 {
            return "no bootstrap (--bootstrap 0): no intervals and no paired tests\n".to_string();
        }
        // FactorTopy fits carry optimisation noise that these refit-free resamples do not see
        // (docs/uncertainty.md: fit-to-fit slope differences of 0.01–0.2 on planted data); the
        // ridge baseline's closed-form fit has none.
        let refits = if self.method == Method::Factortopy {
            "; refit-free: another fit of a network can move its slope by more than its interval, so a '>' smaller \
             than that fit-to-fit spread may not hold on refitting (`fit --seeds 3` measures it per network)"
        } else {
            ""
        };
        format!(
            "CI: {:.0} % bootstrap interval of the slope ({} resamples of held-out images and of voxels within ROIs); \
             p(null): permutation p-value (ROI levels shuffled across ROIs); vs next: paired bootstrap test of the \
             slope difference with the next row, '>' significant, '≈' not{refits}\n",
            100.0 * self.level,
            self.n_resamples
        )
    }

    /// A GitHub-flavoured Markdown table (for CI summaries), with the legend below it.
    pub fn markdown(&self) -> String {
        let nc = self.has_nc();
        let esc = |x: &str| x.replace('|', "\\|");
        let mut s = format!(
            "| rank | network | slope | {:.0} % CI | p (null) | b0 | b1 | Spearman | R² mean | R² median |",
            100.0 * self.level
        );
        if nc {
            s += " noise-normalised |";
        }
        s += " fit (s) | vs next |\n|---:|:---|---:|:---:|---:|---:|---:|---:|---:|---:|";
        if nc {
            s += "---:|";
        }
        s += "---:|:---|\n";
        for r in &self.rows {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.4} | {:.4} |",
                r.rank,
                esc(&table_name(&r.name)),
                opt(r.slope),
                interval_text(r.slope_interval),
                r.p_slope.map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into()),
                opt(r.b0),
                opt(r.b1),
                opt(r.spearman),
                r.r2_mean,
                r.r2_median
            );
            if nc {
                s += &format!(" {} |", opt(r.noise_normalized_mean));
            }
            s += &format!(" {:.1} | {} |\n", r.fit_seconds, vs_text(r.vs_next));
        }
        s += "\n";
        s += &self.legend();
        s += &self.layers_text();
        s
    }

    /// Renders in `format` (JSON with a trailing newline).
    pub fn render(&self, format: RankFormat) -> String {
        match format {
            RankFormat::Table => self.table(),
            RankFormat::Json => self.to_json() + "\n",
            RankFormat::Markdown => self.markdown(),
        }
    }

    /// The per-ROI comparison picture: mean depth per ROI, one line per network.
    pub fn roi_chart(&self, path: &Path) -> Result<()> {
        let charts: Vec<(String, &Report)> =
            self.rows.iter().zip(&self.reports).map(|(r, rep)| (r.name.clone(), rep)).collect();
        if charts.is_empty() {
            return Err(Error::invalid("nothing to plot: the ranking is empty"));
        }
        let title = format!("mean depth per ROI ({} fits)", self.method.name());
        crate::baseline::layerwise::roi_depth_chart(path, &title, &charts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::{HierarchyScores, Summary};

    fn fake(slope: f64, spearman: f64) -> Report {
        fake_opt(Some(slope), Some(spearman))
    }

    fn fake_opt(slope: Option<f64>, spearman: Option<f64>) -> Report {
        Report {
            schema_version: crate::scores::SCHEMA_VERSION,
            library_version: "test".into(),
            settings: Default::default(),
            model: "m".into(),
            method: "factortopy".into(),
            subject: None,
            n_images: 10,
            n_voxels: 2,
            n_layers: 2,
            layer_names: vec!["a".into(), "b".into()],
            hierarchy: HierarchyScores {
                slope,
                b0: slope.map(|_| 0.1),
                b1: slope.map(|s| 0.1 + s),
                spearman,
                n_voxels: 2,
                weighted: false,
                warning: slope.is_none().then(|| "undefined".to_string()),
            },
            r2: Summary { mean: 0.1, median: 0.1 },
            pearson: Summary { mean: 0.3, median: 0.3 },
            noise_ceiling: None,
            uncertainty: None,
            seeds: None,
            rois: vec![],
            fit: None,
            ambiguity: None,
        }
    }

    #[test]
    fn formats_and_gate() {
        let reps = [fake(0.5, 0.4), fake(-0.2, -0.1)];
        let rows: Vec<RankRow> =
            reps.iter().enumerate().map(|(i, r)| RankRow { rank: i + 1, ..row_of(i, format!("net|{i}"), r, 1.5) }).collect();
        let mut rk = Ranking {
            method: Method::Factortopy,
            level: 0.95,
            n_resamples: 1000,
            subject: None,
            roi_names: vec![],
            rows,
            reports: reps.to_vec(),
        };
        assert!(rk.passes(Some(0.4), RankGate::Point) && !rk.passes(Some(0.6), RankGate::Point));
        assert!(rk.passes(None, RankGate::Lower));
        // The lower gate needs an interval, and compares its lower bound.
        assert!(!rk.passes(Some(0.4), RankGate::Lower));
        rk.rows[0].slope_interval = Some(Interval { lo: 0.3, hi: 0.7 });
        assert!(!rk.passes(Some(0.4), RankGate::Lower) && rk.passes(Some(0.3), RankGate::Lower));
        assert_eq!(rk.gated_value(RankGate::Lower), Some(0.3));
        rk.rows[0].vs_next = paired_difference(0.5, &[0.5, 0.6, 0.4], -0.2, &[-0.2, -0.1, -0.3], 0.95);
        assert!(rk.rows[0].vs_next.unwrap().significant);
        let t = rk.table();
        // Header, two rows, legend.
        assert!(t.contains("slope") && t.contains("95% CI") && t.lines().count() == 4, "{t}");
        assert!(t.lines().nth(1).unwrap().contains("[0.300, 0.700]") && t.lines().nth(1).unwrap().contains("> Δ 0.700"), "{t}");
        assert!(!t.contains("NC-norm"));
        // FactorTopy's refit-free tests say what they leave out; ridge's closed form has nothing to add.
        assert!(t.contains("may not hold on refitting (`fit --seeds 3`"), "{t}");
        let ridge = Ranking { method: Method::Ridge, ..rk.clone() };
        assert!(!ridge.table().contains("refitting"));
        let md = rk.markdown();
        // Header, separator, two rows, blank line, legend.
        assert!(md.contains("net\\|0") && md.lines().count() == 6, "{md}");
        let v: serde_json::Value = serde_json::from_str(&rk.to_json()).unwrap();
        assert_eq!(v["rows"][0]["rank"], 1);
        assert_eq!(v["method"], "factortopy");
        assert!(v["rows"][0]["noise_normalized_mean"].is_null());
        assert_eq!(v["rows"][0]["slope_interval"]["lo"], 0.3);
        assert_eq!(v["rows"][0]["vs_next"]["significant"], true);
        assert!(v["rows"][1]["vs_next"].is_null());
        assert_eq!("lower".parse::<RankGate>().unwrap(), RankGate::Lower);
        assert!("upper".parse::<RankGate>().is_err());
        let rows: serde_json::Value = serde_json::from_str(&rows_to_json(&rk.rows)).unwrap();
        assert_eq!(rows[1]["name"], "net|1");
        assert_eq!("md".parse::<RankFormat>().unwrap(), RankFormat::Markdown);
        assert!("xml".parse::<RankFormat>().is_err());
    }

    /// Degenerate input: a network whose hierarchy scores are undefined ranks after every defined one,
    /// prints `-` (JSON `null`), and never passes a `--min-slope` gate.
    #[test]
    fn undefined_slope_ranks_last_and_fails_the_gate() {
        let reps = [fake_opt(None, None), fake(-0.9, -0.5), fake(0.2, 0.1)];
        let rows: Vec<RankRow> = reps.iter().enumerate().map(|(i, r)| row_of(i, format!("n{i}"), r, 1.0)).collect();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| cmp_opt(rows[b].slope, rows[a].slope));
        assert_eq!(order, [2, 1, 0]);
        let only_null = Ranking {
            method: Method::Factortopy,
            level: 0.95,
            n_resamples: 0,
            subject: None,
            roi_names: vec![],
            rows: vec![rows[0].clone()],
            reports: vec![reps[0].clone()],
        };
        assert!(!only_null.passes(Some(-10.0), RankGate::Point) && only_null.passes(None, RankGate::Point));
        assert!(!only_null.passes(Some(-10.0), RankGate::Lower));
        let t = only_null.table();
        assert!(t.lines().nth(1).unwrap().contains("      -       -       -        -"), "{t}");
        let v: serde_json::Value = serde_json::from_str(&only_null.to_json()).unwrap();
        assert!(v["rows"][0]["slope"].is_null() && v["rows"][0]["spearman"].is_null());
    }

    /// Hostile input: a very long (or control-character) model name must not panic the table.
    #[test]
    fn long_names_are_cut_in_tables() {
        let rep = fake(0.5, 0.4);
        let long = "n\n".repeat(100_000);
        let rows = vec![RankRow { rank: 1, ..row_of(0, long.clone(), &rep, 1.0) }];
        let rk = Ranking { method: Method::Factortopy, level: 0.95, n_resamples: 0, subject: None, roi_names: vec![], rows, reports: vec![rep] };
        let t = rk.table();
        // The header, the one row (on one line) and the legend.
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.lines().nth(1).unwrap().contains('…'));
        // Header, separator, the one row, a blank line and the legend.
        let md = rk.markdown();
        assert!(md.lines().count() == 5 && md.lines().nth(2).unwrap().contains('…'), "{md}");
        assert!(rk.to_json().contains(&long.replace('\n', "\\n")));
    }

    #[test]
    fn unique_display_names() {
        let f = Features { model: "net".into(), layer_names: vec![], stimulus_ids: None, layers: vec![] };
        let g = Features { model: "".into(), ..f.clone() };
        assert_eq!(unique_names([&f, &f, &g, &f].map(|x| x.model.as_str())), vec!["net", "net #2", "unnamed", "net #3"]);
    }
}
