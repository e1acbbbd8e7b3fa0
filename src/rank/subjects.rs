//! Ranking networks over several subjects, with subjects as the random effect. A score from one
//! subject is an anecdote: each network's headline numbers are averaged over subjects with a
//! Student-t interval over subjects (`mean ± t_{S−1} · sd / √S`), networks are ordered by the
//! mean slope, and adjacent networks are compared with a paired t-test over subjects of their
//! slope difference (both networks fitted against the same subjects). Each subject's own ranking,
//! with its bootstrap intervals and paired bootstrap tests, is kept beside it.

use serde::{Deserialize, Serialize};

use crate::engine::Method;
use crate::error::{Error, Result};
use crate::rank::pair::{LayerScores, PairOutcome};
use crate::rank::{interval_text, opt, table_name, RankFormat, RankGate, RankRow, Ranking};
use crate::scores::seed_interval::{student_t_central, student_t_two_sided};
use crate::scores::Interval;

/// The mean over subjects of one number, with its t-interval.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct MeanInterval {
    /// Mean over the subjects where the number is defined.
    pub mean: f64,
    /// Subjects where the number is defined.
    pub n: usize,
    /// `mean ± t_{n−1} · sd / √n` (`None` with fewer than two subjects).
    pub interval: Option<Interval>,
}

/// The mean and t-interval of the defined values (`None` when none is defined).
pub fn mean_interval(xs: &[Option<f64>], level: f64) -> Option<MeanInterval> {
    let v: Vec<f64> = xs.iter().flatten().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let interval = (n >= 2).then(|| {
        let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt();
        let half = student_t_two_sided(level, n - 1) * sd / (n as f64).sqrt();
        Interval { lo: mean - half, hi: mean + half }
    });
    Some(MeanInterval { mean, n, interval })
}

/// A paired t-test over subjects of `a − b`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct SubjectsDifference {
    /// Mean over subjects of the difference.
    pub estimate: f64,
    /// Its t-interval over subjects.
    pub interval: Interval,
    /// Two-sided p-value of the paired t-test (`S − 1` degrees of freedom).
    pub p_value: f64,
    /// `p_value < 1 − level`.
    pub significant: bool,
    /// Subjects where both are defined.
    pub n_subjects: usize,
}

/// The paired t-test of `a − b` over the subjects where both are defined; `None` with fewer
/// than two such subjects.
pub fn paired_t(a: &[Option<f64>], b: &[Option<f64>], level: f64) -> Option<SubjectsDifference> {
    let d: Vec<f64> =
        a.iter().zip(b).filter_map(|(x, y)| Some(x.as_ref()? - y.as_ref()?)).filter(|x| x.is_finite()).collect();
    let n = d.len();
    if n < 2 {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let se = (d.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt() / (n as f64).sqrt();
    let p_value = if se > 0.0 {
        1.0 - student_t_central((mean / se).abs(), n - 1)
    } else if mean == 0.0 {
        1.0
    } else {
        // Every subject moved by exactly the same amount: no spread to doubt it.
        0.0
    };
    let half = student_t_two_sided(level, n - 1) * se;
    Some(SubjectsDifference {
        estimate: mean,
        interval: Interval { lo: mean - half, hi: mean + half },
        p_value,
        significant: p_value < 1.0 - level,
        n_subjects: n,
    })
}

/// A network's headline numbers over subjects.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AcrossSubjects {
    /// Hierarchy slope.
    pub slope: Option<MeanInterval>,
    /// Spearman ρ of depth and ROI level.
    pub spearman: Option<MeanInterval>,
    /// Depth at the top of the hierarchy.
    pub b1: Option<MeanInterval>,
    /// Mean noise-normalised accuracy (subjects with a noise ceiling).
    pub noise_normalized_mean: Option<MeanInterval>,
}

/// One network's row of a ranking over subjects.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NetworkRow {
    /// 1 = best (largest mean slope over subjects).
    pub rank: usize,
    /// Position of the network in the input list.
    pub index: usize,
    /// The features file's `model` metadata (made unique with ` #k`).
    pub name: String,
    /// Headline numbers over subjects.
    pub across: AcrossSubjects,
    /// Paired t-test over subjects of `slope − slope of the next row` (`None` on the last row).
    pub vs_next: Option<SubjectsDifference>,
    /// The network's row in each subject's own ranking, in subject order (`rank` is its rank
    /// within that subject).
    pub subjects: Vec<RankRow>,
}

/// Networks ranked over several subjects.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SubjectsRanking {
    /// How every pair was fitted.
    pub method: Method,
    /// Confidence level of every interval and test.
    pub level: f64,
    /// Bootstrap resamples behind each subject's intervals (0 = none).
    pub n_resamples: usize,
    /// The subjects' names, in input order.
    pub subjects: Vec<String>,
    /// Best first.
    pub rows: Vec<NetworkRow>,
    /// Each subject's own ranking, in subject order.
    #[serde(skip)]
    pub per_subject: Vec<Ranking>,
}

/// A finished grid: one subject gives the one-brain ranking, several a ranking over subjects.
#[derive(Debug, Clone, PartialEq)]
pub enum GridRanking {
    /// One subject: the one-brain ranking.
    One(Ranking),
    /// Several subjects.
    Subjects(SubjectsRanking),
}

/// Combines a complete grid's outcomes (every network × every subject, once each).
pub fn combine(outcomes: &[PairOutcome]) -> Result<GridRanking> {
    let n_net = outcomes.iter().map(|p| p.network + 1).max().unwrap_or(0);
    let n_sub = outcomes.iter().map(|p| p.subject + 1).max().unwrap_or(0);
    if n_net == 0 {
        return Err(Error::invalid("a ranking needs at least one pair"));
    }
    let mut cell: Vec<Option<&PairOutcome>> = vec![None; n_net * n_sub];
    for p in outcomes {
        let slot = &mut cell[p.network * n_sub + p.subject];
        if slot.is_some() {
            return Err(Error::invalid(format!("two outcomes for network {} × subject {}", p.network, p.subject)));
        }
        *slot = Some(p);
    }
    if let Some(k) = cell.iter().position(|c| c.is_none()) {
        return Err(Error::invalid(format!(
            "the grid is incomplete: no outcome for network {} × subject {}",
            k / n_sub,
            k % n_sub
        )));
    }
    let at = |net: usize, sub: usize| cell[net * n_sub + sub].expect("checked complete above");
    let mut per_subject = Vec::with_capacity(n_sub);
    for s in 0..n_sub {
        let col: Vec<&PairOutcome> = (0..n_net).map(|i| at(i, s)).collect();
        per_subject.push(Ranking::from_outcomes(&col)?);
    }
    if n_sub == 1 {
        return Ok(GridRanking::One(per_subject.remove(0)));
    }
    let first = &per_subject[0];
    let (method, level, n_resamples) = (first.method, first.level, first.n_resamples);
    if let Some(r) = per_subject.iter().find(|r| r.method != method || r.level != level || r.n_resamples != n_resamples) {
        return Err(Error::mismatch(format!(
            "subjects were ranked with different settings ({} at level {} with {} resamples, and {} at level {} with {} resamples)",
            method.name(),
            level,
            n_resamples,
            r.method.name(),
            r.level,
            r.n_resamples
        )));
    }
    // Pairs fitted apart name their subjects alone; two brains may carry the same name.
    let subjects = crate::rank::grid::unique((0..n_sub).map(|s| at(0, s).subject_name.clone()));
    let mut rows: Vec<NetworkRow> = (0..n_net)
        .map(|i| {
            let subjects: Vec<RankRow> = per_subject
                .iter()
                .map(|r| r.rows.iter().find(|row| row.index == i).expect("every network has a row").clone())
                .collect();
            let across = |f: fn(&RankRow) -> Option<f64>| mean_interval(&subjects.iter().map(f).collect::<Vec<_>>(), level);
            NetworkRow {
                rank: 0,
                index: i,
                name: subjects[0].name.clone(),
                across: AcrossSubjects {
                    slope: across(|r| r.slope),
                    spearman: across(|r| r.spearman),
                    b1: across(|r| r.b1),
                    noise_normalized_mean: across(|r| r.noise_normalized_mean),
                },
                vs_next: None,
                subjects,
            }
        })
        .collect();
    let mean = |m: &Option<MeanInterval>| m.map(|m| m.mean);
    rows.sort_by(|x, y| {
        crate::rank::cmp_opt(mean(&y.across.slope), mean(&x.across.slope))
            .then(crate::rank::cmp_opt(mean(&y.across.spearman), mean(&x.across.spearman)))
            .then(x.index.cmp(&y.index))
    });
    for k in 0..rows.len() {
        rows[k].rank = k + 1;
        if k + 1 < rows.len() {
            let a: Vec<Option<f64>> = rows[k].subjects.iter().map(|r| r.slope).collect();
            let b: Vec<Option<f64>> = rows[k + 1].subjects.iter().map(|r| r.slope).collect();
            rows[k].vs_next = paired_t(&a, &b, level);
        }
    }
    Ok(GridRanking::Subjects(SubjectsRanking { method, level, n_resamples, subjects, rows, per_subject }))
}

fn mean_text(m: Option<MeanInterval>) -> String {
    opt(m.map(|m| m.mean))
}

fn vs_text(d: Option<SubjectsDifference>) -> String {
    match d {
        None => String::new(),
        Some(d) => format!("{} Δ {:.3} (p {:.3})", if d.significant { ">" } else { "≈" }, d.estimate, d.p_value),
    }
}

impl SubjectsRanking {
    /// The best row (largest mean slope).
    pub fn best(&self) -> Option<&NetworkRow> {
        self.rows.first()
    }

    /// What a gate compares: the best network's mean slope over subjects, or the lower bound of
    /// its t-interval over subjects.
    pub fn gated_value(&self, gate: RankGate) -> Option<f64> {
        let s = self.best()?.across.slope?;
        match gate {
            RankGate::Point => Some(s.mean),
            RankGate::Lower => s.interval.map(|i| i.lo),
        }
    }

    fn has_nc(&self) -> bool {
        self.rows.iter().any(|r| r.across.noise_normalized_mean.is_some())
    }

    fn legend(&self) -> String {
        format!(
            "slope, Spearman, b1, NC-norm: mean over {} subjects; CI: {:.0} % t-interval over subjects (subjects as the \
             random effect); indented rows: each subject's own fit, with its bootstrap interval{}; vs next: paired \
             t-test over subjects of the slope difference with the next row, '>' significant, '≈' not significant\n",
            self.subjects.len(),
            100.0 * self.level,
            if self.n_resamples == 0 { " (none: --bootstrap 0)" } else { "" }
        )
    }

    /// A fixed-width table for a terminal: one row per network, each subject's row below it, a legend.
    pub fn table(&self) -> String {
        let mut names: Vec<String> = self.rows.iter().map(|r| table_name(&r.name)).collect();
        names.extend(self.subjects.iter().map(|s| format!("  {}", table_name(s))));
        let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(7).max(7);
        let nc = self.has_nc();
        let nc_cell = |x: String| if nc { format!(" {x:>8}") } else { String::new() };
        let mut s = format!(
            "{:>4}  {:<w$}  {:>7} {:>16} {:>8} {:>7}{}  {}\n",
            "rank",
            "network",
            "slope",
            format!("{:.0}% CI", 100.0 * self.level),
            "spearman",
            "b1",
            nc_cell("NC-norm".into()),
            "vs next"
        );
        for r in &self.rows {
            let a = &r.across;
            s += &format!(
                "{:>4}  {:<w$}  {:>7} {:>16} {:>8} {:>7}{}  {}\n",
                r.rank,
                table_name(&r.name),
                mean_text(a.slope),
                interval_text(a.slope.and_then(|m| m.interval)),
                mean_text(a.spearman),
                mean_text(a.b1),
                nc_cell(mean_text(a.noise_normalized_mean)),
                vs_text(r.vs_next)
            );
            for (sub, row) in self.subjects.iter().zip(&r.subjects) {
                s += &format!(
                    "{:>4}  {:<w$}  {:>7} {:>16} {:>8} {:>7}{}\n",
                    "",
                    format!("  {}", table_name(sub)),
                    opt(row.slope),
                    interval_text(row.slope_interval),
                    opt(row.spearman),
                    opt(row.b1),
                    nc_cell(opt(row.noise_normalized_mean))
                );
            }
        }
        s += &self.legend();
        s += &self.layers_text();
        s
    }

    /// A GitHub-flavoured Markdown table with the legend below it.
    pub fn markdown(&self) -> String {
        let esc = |x: &str| x.replace('|', "\\|");
        let nc = self.has_nc();
        let mut s = format!(
            "| rank | network | slope (mean) | {:.0} % CI over subjects | Spearman | b1 |{} per subject (slope [bootstrap CI]) | vs next |\n",
            100.0 * self.level,
            if nc { " noise-normalised |" } else { "" }
        );
        s += &format!("|---:|:---|---:|:---:|---:|---:|{}:---|:---|\n", if nc { "---:|" } else { "" });
        for r in &self.rows {
            let a = &r.across;
            let per: Vec<String> = self
                .subjects
                .iter()
                .zip(&r.subjects)
                .map(|(sub, row)| format!("{} {} {}", esc(&table_name(sub)), opt(row.slope), interval_text(row.slope_interval)))
                .collect();
            s += &format!(
                "| {} | {} | {} | {} | {} | {} |{} {} | {} |\n",
                r.rank,
                esc(&table_name(&r.name)),
                mean_text(a.slope),
                interval_text(a.slope.and_then(|m| m.interval)),
                mean_text(a.spearman),
                mean_text(a.b1),
                if nc { format!(" {} |", mean_text(a.noise_normalized_mean)) } else { String::new() },
                per.join("; "),
                vs_text(r.vs_next)
            );
        }
        s += "\n";
        s += &self.legend();
        s += &self.layers_text();
        s
    }

    /// Per-layer scores, averaged over subjects where they share ROIs and layers.
    fn layers_text(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let all: Vec<&LayerScores> = r.subjects.iter().filter_map(|row| row.layers.as_ref()).collect();
            if all.is_empty() {
                continue;
            }
            match mean_layers(&all) {
                Some(m) => s += &layer_table(&format!("{} (mean over {} subjects)", r.name, all.len()), &m),
                None => {
                    for (sub, row) in self.subjects.iter().zip(&r.subjects) {
                        if let Some(l) = &row.layers {
                            s += &layer_table(&format!("{} on {sub}", r.name), l);
                        }
                    }
                }
            }
        }
        s
    }
}

/// The mean of several subjects' per-layer scores, when they share ROI and layer names.
fn mean_layers(all: &[&LayerScores]) -> Option<LayerScores> {
    let first = all[0];
    if all.iter().any(|l| l.roi_names != first.roi_names || l.layer_names != first.layer_names) {
        return None;
    }
    let r2 = (0..first.roi_names.len())
        .map(|roi| {
            (0..first.layer_names.len())
                .map(|layer| {
                    let v: Vec<f64> = all.iter().filter_map(|l| l.r2[roi][layer]).collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                })
                .collect()
        })
        .collect();
    Some(LayerScores { layer_names: first.layer_names.clone(), roi_names: first.roi_names.clone(), r2 })
}

/// A small ROI × layer table of held-out R² with each ROI's best layer marked `*`.
pub fn layer_table(title: &str, l: &LayerScores) -> String {
    let mut s = format!("\nper-layer held-out R² of the layer-wise ridge baseline, {}:\n", table_name(title));
    let w = l.roi_names.iter().map(|n| table_name(n).chars().count()).max().unwrap_or(3).max(3);
    s += &format!("  {:<w$}", "ROI");
    for (k, _) in l.layer_names.iter().enumerate() {
        s += &format!(" {:>8}", format!("L{k}"));
    }
    s += "\n";
    for (name, row) in l.roi_names.iter().zip(&l.r2) {
        let best = row
            .iter()
            .enumerate()
            .filter_map(|(k, x)| x.map(|x| (k, x)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k);
        s += &format!("  {:<w$}", table_name(name));
        for (k, x) in row.iter().enumerate() {
            let cell = x.map(|x| format!("{x:.4}{}", if Some(k) == best { "*" } else { " " })).unwrap_or_else(|| "- ".into());
            s += &format!(" {cell:>8}");
        }
        s += "\n";
    }
    let names: Vec<String> = l.layer_names.iter().enumerate().map(|(k, n)| format!("L{k} = {}", table_name(n))).collect();
    s += &format!("  ({})\n", names.join(", "));
    s
}

impl GridRanking {
    /// The best network's name.
    pub fn best_name(&self) -> Option<String> {
        match self {
            GridRanking::One(r) => r.best().map(|b| b.name.clone()),
            GridRanking::Subjects(r) => r.best().map(|b| b.name.clone()),
        }
    }

    /// Whether the best network's slope is undefined (in every subject).
    pub fn best_undefined(&self) -> bool {
        match self {
            GridRanking::One(r) => r.best().is_some_and(|b| b.slope.is_none()),
            GridRanking::Subjects(r) => r.best().is_some_and(|b| b.across.slope.is_none()),
        }
    }

    /// What `gate` compares with a threshold (see [`SubjectsRanking::gated_value`] and [`Ranking::gated_value`]).
    pub fn gated_value(&self, gate: RankGate) -> Option<f64> {
        match self {
            GridRanking::One(r) => r.gated_value(gate),
            GridRanking::Subjects(r) => r.gated_value(gate),
        }
    }

    /// True when there is no threshold or the gated value reaches it.
    pub fn passes(&self, min_slope: Option<f64>, gate: RankGate) -> bool {
        match min_slope {
            None => true,
            Some(m) => self.gated_value(gate).is_some_and(|x| x >= m),
        }
    }

    /// Stable, pretty JSON (no NaN, no timings).
    pub fn to_json(&self) -> String {
        match self {
            GridRanking::One(r) => r.to_json(),
            GridRanking::Subjects(r) => serde_json::to_string_pretty(r).expect("a ranking always serialises"),
        }
    }

    /// Renders in `format` (JSON with a trailing newline).
    pub fn render(&self, format: RankFormat) -> String {
        match (self, format) {
            (GridRanking::One(r), _) => r.render(format),
            (_, RankFormat::Json) => self.to_json() + "\n",
            (GridRanking::Subjects(r), RankFormat::Table) => r.table(),
            (GridRanking::Subjects(r), RankFormat::Markdown) => r.markdown(),
        }
    }

    /// Each subject's ranking (one for a one-subject grid).
    pub fn per_subject(&self) -> Vec<&Ranking> {
        match self {
            GridRanking::One(r) => vec![r],
            GridRanking::Subjects(r) => r.per_subject.iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: values 1, 2, 3 have mean 2, sd 1, and t_{2, 0.975} = 4.302653; the interval
    /// is 2 ± 4.302653/√3.
    #[test]
    fn t_interval_over_subjects() {
        let m = mean_interval(&[Some(1.0), None, Some(2.0), Some(3.0)], 0.95).unwrap();
        assert_eq!((m.mean, m.n), (2.0, 3));
        let i = m.interval.unwrap();
        assert!((i.hi - (2.0 + 4.302_652_729_911 / 3f64.sqrt())).abs() < 1e-9, "{i:?}");
        assert!((i.lo - (2.0 - 4.302_652_729_911 / 3f64.sqrt())).abs() < 1e-9);
        assert!(mean_interval(&[Some(1.0)], 0.95).unwrap().interval.is_none());
        assert!(mean_interval(&[None, None], 0.95).is_none());
    }

    /// Differences 1, 2, 3 (two subjects undefined in one network are left out): t = 2/(1/√3) =
    /// 3.4641 on 2 df, two-sided p = 0.07418 (R: 2*pt(-3.4641, 2)).
    #[test]
    fn paired_t_over_subjects() {
        let a = [Some(2.0), Some(4.0), Some(6.0), None];
        let b = [Some(1.0), Some(2.0), Some(3.0), Some(0.0)];
        let d = paired_t(&a, &b, 0.95).unwrap();
        assert_eq!(d.n_subjects, 3);
        assert!((d.estimate - 2.0).abs() < 1e-12);
        assert!((d.p_value - 0.074_180).abs() < 1e-5, "{}", d.p_value);
        assert!(!d.significant);
        assert!(paired_t(&a, &b, 0.90).unwrap().significant);
        // A constant shift has no spread to doubt; no shift at all is no difference.
        assert_eq!(paired_t(&[Some(1.0), Some(2.0)], &[Some(0.5), Some(1.5)], 0.95).unwrap().p_value, 0.0);
        assert_eq!(paired_t(&[Some(1.0), Some(2.0)], &[Some(1.0), Some(2.0)], 0.95).unwrap().p_value, 1.0);
        assert!(paired_t(&[Some(1.0), None], &[Some(0.0), Some(0.0)], 0.95).is_none());
    }
}
