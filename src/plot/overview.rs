//! The overview figure: every map of a fit in one picture under a title line (model, subject,
//! slope, b0, b1, mean R²), the picture for a paper or a pull request.

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::scores::Report;

use super::brain_map::{self, BrainMap, Geometry, Rect, TEXT};
use super::canvas::{Canvas, WHITE};
use super::profile;

/// One cell of the overview.
pub enum Panel<'a> {
    /// A map on the cortex.
    Map(BrainMap),
    /// The per-ROI layer profile of a report.
    Profile(&'a Report),
}

/// The headline of a fit in one line.
pub fn title_line(report: &Report) -> String {
    let h = &report.hierarchy;
    let mut s = report.model.clone();
    if let Some(subject) = &report.subject {
        s += &format!(" | subject {subject}");
    }
    // An undefined score is written as such, never as a number.
    let f = |x: Option<f64>| x.map_or_else(|| "undefined".to_string(), |x| format!("{x:.2}"));
    s += &format!(" | slope {} b0 {} b1 {} | mean R^2 {:.3}", f(h.slope), f(h.b0), f(h.b1), report.r2.mean);
    if let Some(nc) = &report.noise_ceiling {
        s += &format!(" ({:.2} of the ceiling)", nc.normalized.mean);
    }
    s
}

/// Columns and rows of the grid for `n` panels: one row up to 3, then 2 rows.
fn grid(n: usize) -> (usize, usize) {
    if n <= 3 {
        (n.max(1), 1)
    } else {
        (n.div_ceil(2), 2)
    }
}

/// Draws `panels` in a grid of `cell`-sized cells under `title`.
pub fn render(cell: (usize, usize), title: &str, brain: &Brain, geo: &Geometry, panels: &[&Panel]) -> Result<Canvas> {
    if panels.is_empty() {
        return Err(Error::invalid("the overview needs at least one map"));
    }
    let (cols, rows) = grid(panels.len());
    let head = 44usize;
    let mut c = Canvas::new(cols * cell.0, head + rows * cell.1, WHITE);
    // Large when the line fits, small otherwise (font8x8 has no smaller size).
    let scale = if Canvas::text_width(title, 2) + 24 <= c.width() as i64 { 2 } else { 1 };
    c.text_centered(c.width() as i64 / 2, if scale == 2 { 14 } else { 18 }, title, scale, TEXT);
    for (k, p) in panels.iter().enumerate() {
        let area = Rect::new(((k % cols) * cell.0) as i64, (head + (k / cols) * cell.1) as i64, cell.0 as i64, cell.1 as i64);
        match p {
            Panel::Map(m) => {
                brain_map::draw(&mut c, area, brain, geo, m, false)?;
            }
            Panel::Profile(r) => {
                profile::draw(&mut c, area, r, "layer profile per ROI")?;
            }
        }
    }
    Ok(c)
}
