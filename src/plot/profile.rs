//! Layer profile per ROI: a heat map with one row per ROI, in hierarchy order (V1 at the top),
//! and one column per layer; each cell is the fraction of the ROI's voxels whose most probable
//! layer is that layer (the report's `layer_histogram`), and a red line joins the ROIs' mean
//! depths. A brain-like network draws a diagonal from top left to bottom right.

use std::path::Path;

use crate::error::{Error, Result};
use crate::scores::Report;

use super::brain_map::{Rect, TEXT};
use super::canvas::{Canvas, Rgb, WHITE};
use super::colormap;

const DEPTH_LINE: Rgb = [215, 30, 40];

/// One ROI's row of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    /// The ROI's name.
    pub name: String,
    /// Its hierarchy level.
    pub level: i32,
    /// Its voxel count.
    pub n_voxels: usize,
    /// Voxels per argmax layer.
    pub counts: Vec<usize>,
    /// Mean voxel depth.
    pub mean_depth: Option<f64>,
}

/// The rows of the chart: ROIs that have voxels, by hierarchy level (ties keep the report's
/// order).
pub fn profile_rows(report: &Report) -> Vec<ProfileRow> {
    let mut rows: Vec<ProfileRow> = report
        .rois
        .iter()
        .filter(|r| r.n_voxels > 0)
        .map(|r| ProfileRow {
            name: r.name.clone(),
            level: r.level,
            n_voxels: r.n_voxels,
            counts: r.layer_histogram.clone(),
            mean_depth: r.mean_depth,
        })
        .collect();
    rows.sort_by_key(|r| r.level);
    rows
}

/// Where the chart put its cells: `cells[row][layer]`, for checking the picture.
#[derive(Debug, Clone)]
pub struct ProfileLayout {
    /// The chart's rows, top to bottom.
    pub rows: Vec<ProfileRow>,
    /// Each row's cells, one per layer.
    pub cells: Vec<Vec<Rect>>,
}

fn label_every(n: usize, room: i64) -> usize {
    // Labels need about 24 px each.
    let fit = (room / 24).max(1) as usize;
    n.div_ceil(fit).max(1)
}

/// Draws the chart of `report` into `area` of `c`.
pub fn draw(c: &mut Canvas, area: Rect, report: &Report, title: &str) -> Result<ProfileLayout> {
    let rows = profile_rows(report);
    let l = report.n_layers;
    if rows.is_empty() || l == 0 {
        return Err(Error::invalid(format!("report of {} has no ROI voxels or no layers to profile", report.model)));
    }
    if let Some(r) = rows.iter().find(|r| r.counts.len() != l) {
        return Err(Error::mismatch(format!("ROI {} has a histogram over {} layers, the report has {l}", r.name, r.counts.len())));
    }
    let big = area.w >= 640;
    let ts = if big { 2 } else { 1 };
    c.text_centered(area.x + area.w / 2, area.y + 10, title, ts, TEXT);
    let top = area.y + 10 + 8 * ts + 14;
    let labels: Vec<String> = rows.iter().map(|r| format!("{} ({})", r.name, r.n_voxels)).collect();
    let label_w = labels.iter().map(|s| Canvas::text_width(s, 1)).max().unwrap_or(0) + 14;
    let legend_w = 96;
    let plot = Rect::new(area.x + 12 + label_w, top, area.w - label_w - legend_w - 36, area.y + area.h - top - 44);
    let cell_w = plot.w as f64 / l as f64;
    let cell_h = (plot.h as f64 / rows.len() as f64).min(56.0);
    let mut cells = Vec::with_capacity(rows.len());
    for (ri, row) in rows.iter().enumerate() {
        let y0 = plot.y + (ri as f64 * cell_h).round() as i64;
        let y1 = plot.y + ((ri + 1) as f64 * cell_h).round() as i64;
        c.text(area.x + 12, (y0 + y1) / 2 - 4, &labels[ri], 1, TEXT);
        let mut rects = Vec::with_capacity(l);
        for (li, &n) in row.counts.iter().enumerate() {
            let x0 = plot.x + (li as f64 * cell_w).round() as i64;
            let x1 = plot.x + ((li + 1) as f64 * cell_w).round() as i64;
            let r = Rect::new(x0 + 1, y0 + 1, x1 - x0 - 1, y1 - y0 - 1);
            let frac = n as f64 / row.n_voxels as f64;
            c.fill_rect(r.x, r.y, r.w, r.h, colormap::sequential(frac));
            let pct = if 100.0 * frac < 0.995 { "<1%".to_string() } else { format!("{:.0}%", 100.0 * frac) };
            // Percentages in the top of the cell, clear of the mean-depth marker at its middle.
            if n > 0 && r.w >= Canvas::text_width(&pct, 1) + 8 && r.h >= 30 {
                // White on the dark end of the map, black on the light end.
                let ink = if frac < 0.6 { WHITE } else { TEXT };
                c.text_centered(r.x + r.w / 2, r.y + 4, &pct, 1, ink);
            }
            rects.push(r);
        }
        cells.push(rects);
    }
    let bottom = plot.y + (rows.len() as f64 * cell_h).round() as i64;
    // Mean depth d ∈ [0, 1] sits at the centre of layer d·(L−1).
    let depth_x = |d: f64| plot.x as f64 + (d * (l - 1) as f64 + 0.5) * cell_w;
    let pts: Vec<Option<(f64, f64)>> = rows
        .iter()
        .enumerate()
        .map(|(ri, r)| r.mean_depth.map(|d| (depth_x(d), plot.y as f64 + (ri as f64 + 0.5) * cell_h)))
        .collect();
    for w in pts.windows(2) {
        if let (Some(a), Some(b)) = (w[0], w[1]) {
            c.line(a.0, a.1, b.0, b.1, 2.0, DEPTH_LINE);
        }
    }
    for p in pts.iter().flatten() {
        c.disc(p.0, p.1, 4.0, WHITE);
        c.disc(p.0, p.1, 3.0, DEPTH_LINE);
    }
    let every = label_every(l, plot.w);
    for li in (0..l).step_by(every) {
        let x = plot.x + ((li as f64 + 0.5) * cell_w).round() as i64;
        c.fill_rect(x, bottom + 1, 1, 4, TEXT);
        c.text_centered(x, bottom + 8, &li.to_string(), 1, TEXT);
    }
    c.text_centered(plot.x + plot.w / 2, bottom + 24, "layer (argmax of the layer selector)", 1, TEXT);

    // Legend: colour bar of the fraction, and the depth line.
    let lx = plot.x + plot.w + 16;
    c.text(lx, plot.y, "fraction of", 1, TEXT);
    c.text(lx, plot.y + 11, "ROI voxels", 1, TEXT);
    let (by, bh, bw) = (plot.y + 28, (plot.h / 2).clamp(60, 200), 16);
    for k in 0..bh {
        c.fill_rect(lx, by + k, bw, 1, colormap::sequential(1.0 - (k as f64 + 0.5) / bh as f64));
    }
    c.rect_outline(lx, by, bw, bh, [90, 90, 90]);
    c.text(lx + bw + 6, by - 3, "1", 1, TEXT);
    c.text(lx + bw + 6, by + bh - 5, "0", 1, TEXT);
    let ky = by + bh + 20;
    c.line(lx as f64, ky as f64 + 4.0, lx as f64 + 18.0, ky as f64 + 4.0, 2.0, DEPTH_LINE);
    c.disc(lx as f64 + 9.0, ky as f64 + 4.0, 3.0, DEPTH_LINE);
    c.text(lx + 24, ky, "mean", 1, TEXT);
    c.text(lx + 24, ky + 11, "depth", 1, TEXT);
    Ok(ProfileLayout { rows, cells })
}

/// The chart of `report` alone on a `size` canvas.
pub fn render(size: (usize, usize), report: &Report) -> Result<(Canvas, ProfileLayout)> {
    let mut c = Canvas::new(size.0, size.1, WHITE);
    let title = format!("{}: layer profile per ROI", report.model);
    let layout = draw(&mut c, Rect::new(0, 0, size.0 as i64, size.1 as i64), report, &title)?;
    Ok((c, layout))
}

/// Writes the chart of `report` to `path` as a `size` PNG.
pub fn profile_chart(path: &Path, size: (usize, usize), report: &Report) -> Result<()> {
    render(size, report)?.0.save_png(path)
}
