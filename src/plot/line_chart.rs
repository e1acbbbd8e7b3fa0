//! Line charts (DESIGN §7): forgetting curves over fine-tuning steps.

use std::path::Path;

use crate::error::Result;

use super::canvas::{Canvas, Rgb, WHITE};
use super::colormap;

const WIDTH: usize = 800;
const HEIGHT: usize = 600;
/// Plot area (x, y, w, h); y-axis labels to its left, legend to its right.
const AREA: (i64, i64, i64, i64) = (84, 52, 520, 470);
const LEGEND_X: i64 = AREA.0 + AREA.2 + 18;
const TEXT: Rgb = [20, 20, 20];
const GRID: Rgb = [225, 225, 225];
/// Characters of a legend entry that fit in the legend column.
const LEGEND_CHARS: usize = 18;

/// A tick step of 1, 2 or 5 × 10^k giving about `target` intervals over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Axis range snapped outward to whole ticks, the tick step, and the digits its labels need.
fn axis(lo: f64, hi: f64) -> (f64, f64, f64, usize) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        // A flat series still gets a readable axis around its value.
        let pad = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        lo -= pad;
        hi += pad;
    }
    let step = nice_step(hi - lo, 5.0);
    // The tolerance keeps a bound already on a tick (0, 10000) from snapping a whole step out.
    let (a, b) = (
        (lo / step + 1e-9).floor() * step,
        (hi / step - 1e-9).ceil() * step,
    );
    let digits = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    (a, b, step, digits)
}

fn label(v: f64, digits: usize) -> String {
    let s = format!("{v:.digits$}");
    // "-0.0" reads as a bug on an axis.
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

fn shorten(name: &str) -> String {
    if name.chars().count() <= LEGEND_CHARS {
        name.to_string()
    } else {
        let head: String = name.chars().take(LEGEND_CHARS - 2).collect();
        format!("{head}..")
    }
}

/// A line chart of one or more named series of (x, y) points, each in its own colour, with
/// axes, numeric ticks and a legend. Non-finite points are skipped and break the line there.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let mut c = Canvas::new(WIDTH, HEIGHT, WHITE);
    c.text_centered(WIDTH as i64 / 2, 14, title, 2, TEXT);

    let finite = series
        .iter()
        .flat_map(|(_, p)| p.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in finite {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let (xa, xb, xs, xd) = axis(x0, x1);
    let (ya, yb, ys, yd) = axis(y0, y1);
    let (ax, ay, aw, ah) = AREA;
    let to_px = |x: f64, y: f64| {
        (
            ax as f64 + (x - xa) / (xb - xa) * aw as f64,
            (ay + ah) as f64 - (y - ya) / (yb - ya) * ah as f64,
        )
    };

    // Grid and ticks first, so data is drawn over them.
    let n_x = ((xb - xa) / xs).round() as i64;
    for k in 0..=n_x {
        let v = xa + k as f64 * xs;
        let px = to_px(v, ya).0.round() as i64;
        c.fill_rect(px, ay, 1, ah, GRID);
        c.fill_rect(px, ay + ah, 1, 5, TEXT);
        c.text_centered(px, ay + ah + 9, &label(v, xd), 1, TEXT);
    }
    let n_y = ((yb - ya) / ys).round() as i64;
    for k in 0..=n_y {
        let v = ya + k as f64 * ys;
        let py = to_px(xa, v).1.round() as i64;
        c.fill_rect(ax, py, aw, 1, GRID);
        c.fill_rect(ax - 5, py, 5, 1, TEXT);
        let s = label(v, yd);
        c.text(ax - 9 - Canvas::text_width(&s, 1), py - 4, &s, 1, TEXT);
    }
    c.rect_outline(ax, ay, aw + 1, ah + 1, TEXT);
    c.text_centered(ax + aw / 2, ay + ah + 30, x_label, 1, TEXT);
    let yl_h = Canvas::text_width(y_label, 1);
    c.text_vertical(12, ay + ah / 2 - yl_h / 2, y_label, 1, TEXT);

    for (i, (name, pts)) in series.iter().enumerate() {
        let col = colormap::categorical(i);
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in pts {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = to_px(x, y);
            if let Some(q) = prev {
                c.line(q.0, q.1, p.0, p.1, 2.0, col);
            }
            prev = Some(p);
        }
        // Markers only while they stay separate; on dense curves they would smear the line.
        if pts.len() <= 60 {
            for &(x, y) in pts.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
                let p = to_px(x, y);
                c.disc(p.0, p.1, 3.0, col);
            }
        }
        let ly = ay + 6 + i as i64 * 18;
        c.line(
            LEGEND_X as f64,
            ly as f64 + 4.0,
            LEGEND_X as f64 + 22.0,
            ly as f64 + 4.0,
            2.0,
            col,
        );
        c.disc(LEGEND_X as f64 + 11.0, ly as f64 + 4.0, 3.0, col);
        c.text(LEGEND_X + 30, ly, &shorten(name), 1, TEXT);
    }
    c.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(nice_step(7000.0, 5.0), 2000.0);
        let (a, b, s, d) = axis(0.13, 0.87);
        assert!(
            (a - 0.0).abs() < 1e-12 && (b - 1.0).abs() < 1e-12 && (s - 0.2).abs() < 1e-12 && d == 1
        );
        let (a, b, s, _) = axis(0.0, 10000.0);
        assert_eq!((a, b, s), (0.0, 10000.0, 2000.0));
        let (a, b, _, _) = axis(3.0, 3.0);
        assert!(a < 3.0 && b > 3.0);
        assert_eq!(label(-0.0, 1), "0.0");
        assert_eq!(label(2000.0, 0), "2000");
    }
}
