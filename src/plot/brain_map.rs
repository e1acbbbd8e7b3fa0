//! The layout every "network on the brain" map shares (DESIGN §7): each voxel a dot at its place
//! on the cortex, ROI names at ROI centroids, a legend column on the right. The layer, space,
//! scale, R² and channel maps (one file each) only choose the voxel colours, the drawing order
//! and the legend.
//!
//! Positions are the brain's `flat` coordinates, or the two main axes of `coords` when there is
//! no flatmap. Two hemispheres are drawn side by side, left first, when the brain file labels
//! them (`hemisphere` `[V]`: 0 left, 1 right) or when the flat coordinates form two separate
//! sheets along x (a large empty gap between two groups of voxels).

use std::path::Path;

use crate::data::Brain;
use crate::error::{Error, Result};

use super::canvas::{Canvas, Rgb, BLACK, WHITE};
use super::colormap;

/// Near-black behind the voxels. Any mid grey would equal some darkened mid-depth voxel and
/// hide it; against black, certain voxels stand out and uncertain ones recede.
pub const PANEL_BG: Rgb = [24, 24, 28];
/// Colour of titles and labels on the white page.
pub const TEXT: Rgb = [20, 20, 20];
const SUBTLE: Rgb = [90, 90, 90];
/// How far a layer-map voxel with uniform layer probabilities (entropy 1) is darkened. Less
/// than 1 so that even the least certain voxels keep a trace of their hue.
pub const UNCERTAIN_DARKEN: f64 = 0.7;

/// A rectangle on a canvas, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i64,
    /// Top edge.
    pub y: i64,
    /// Width.
    pub w: i64,
    /// Height.
    pub h: i64,
}

impl Rect {
    /// The rectangle with top-left corner `(x, y)` and size `w`×`h`.
    pub fn new(x: i64, y: i64, w: i64, h: i64) -> Self {
        Self { x, y, w, h }
    }
}

/// Where each voxel sits in the picture's 2-D plane (y up), hemispheres already side by side.
#[derive(Debug, Clone)]
pub struct Geometry {
    /// Each voxel's position in the plane.
    pub points: Vec<[f64; 2]>,
    /// How the positions were obtained, for the subtitle.
    pub source: String,
    /// The sheets drawn side by side (one when the brain is drawn as a whole).
    pub sheets: Vec<Sheet>,
}

/// One sheet of voxels (a hemisphere, or the whole brain).
#[derive(Debug, Clone)]
pub struct Sheet {
    /// Name written above the sheet ("left hemisphere"), empty when not named.
    pub name: String,
    /// The voxels on this sheet.
    pub voxels: Vec<usize>,
}

impl Geometry {
    /// The layout of `brain`'s voxels (see the module docs).
    pub fn of(brain: &Brain) -> Result<Self> {
        let v = brain.roi.len();
        if brain.coords.shape != [v, 3] {
            return Err(Error::mismatch(format!(
                "coords have shape {:?}, expected [{v}, 3]",
                brain.coords.shape
            )));
        }
        let flat = match &brain.flat {
            Some(f) if f.shape != [v, 2] => {
                return Err(Error::mismatch(format!("flatmap has shape {:?}, expected [{v}, 2]", f.shape)))
            }
            Some(f) => Some(f.data.chunks(2).map(|p| [p[0] as f64, p[1] as f64]).collect::<Vec<_>>()),
            None => None,
        };
        let labelled = match &brain.hemisphere {
            Some(h) if h.len() != v => {
                return Err(Error::mismatch(format!("hemisphere labels have {} entries, expected {v}", h.len())))
            }
            Some(h) if h.contains(&0) && h.contains(&1) => Some(h),
            _ => None,
        };
        let coords_of = |idx: &[usize]| -> Vec<f32> {
            idx.iter().flat_map(|&i| brain.coords.data[3 * i..3 * i + 3].iter().copied()).collect()
        };
        let mut points = vec![[f64::NAN; 2]; v];
        let (sheets, source) = if let Some(h) = labelled {
            let sheets: Vec<Sheet> = [(0u8, "left hemisphere"), (1, "right hemisphere")]
                .iter()
                .map(|&(k, name)| Sheet { name: name.into(), voxels: (0..v).filter(|&i| h[i] == k).collect() })
                .collect();
            for s in &sheets {
                // Each hemisphere projected on its own main axes: on a sphere or a volume the two
                // hemispheres overlap or mirror each other in one shared projection.
                let p = match &flat {
                    Some(f) => s.voxels.iter().map(|&i| f[i]).collect(),
                    None => pca_2d(&coords_of(&s.voxels)),
                };
                for (&i, q) in s.voxels.iter().zip(p) {
                    points[i] = q;
                }
            }
            let source = if flat.is_some() { "flatmap" } else { "coords, 2 main axes per hemisphere" };
            (sheets, source.to_string())
        } else if let Some(f) = &flat {
            points.copy_from_slice(f);
            let sheets = match split_sheets(f) {
                Some((a, b)) => vec![Sheet { name: String::new(), voxels: a }, Sheet { name: String::new(), voxels: b }],
                None => vec![Sheet { name: String::new(), voxels: (0..v).collect() }],
            };
            (sheets, "flatmap".to_string())
        } else {
            let all: Vec<usize> = (0..v).collect();
            points = pca_2d(&coords_of(&all));
            (vec![Sheet { name: String::new(), voxels: all }], "coords, 2 main axes".to_string())
        };
        arrange_side_by_side(&mut points, &sheets);
        Ok(Self { points, source, sheets })
    }

    /// Pixel position of every voxel when the geometry is fitted into `panel` (one scale for
    /// both axes, so the cortex keeps its shape), and a dot radius that tiles the occupied area.
    pub fn place(&self, panel: Rect) -> Placement {
        let finite: Vec<usize> =
            (0..self.points.len()).filter(|&i| self.points[i][0].is_finite() && self.points[i][1].is_finite()).collect();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &i in &finite {
            let p = self.points[i];
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
            y0 = y0.min(p[1]);
            y1 = y1.max(p[1]);
        }
        // Room at the top for the sheet names.
        let named = self.sheets.iter().any(|s| !s.name.is_empty());
        let (margin, top) = (14.0, if named { 22.0 } else { 0.0 });
        let (aw, ah) = ((panel.w as f64 - 2.0 * margin).max(1.0), (panel.h as f64 - 2.0 * margin - top).max(1.0));
        let span = ((x1 - x0) / aw).max((y1 - y0) / ah);
        let s = if span > 0.0 && span.is_finite() { 1.0 / span } else { 1.0 };
        let (cx, cy) = (panel.x as f64 + panel.w as f64 / 2.0, panel.y as f64 + top + (panel.h as f64 - top) / 2.0);
        let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let px: Vec<[f64; 2]> = self
            .points
            .iter()
            .map(|p| if p[0].is_finite() && p[1].is_finite() { [cx + (p[0] - mx) * s, cy - (p[1] - my) * s] } else { [f64::NAN; 2] })
            .collect();
        let used = (((x1 - x0) * s).max(1.0) * ((y1 - y0) * s).max(1.0)).max(1.0);
        let radius = (0.6 * (used / finite.len().max(1) as f64).sqrt()).clamp(1.2, 7.0);
        Placement { px, radius }
    }
}

/// Voxel positions in pixels (NaN for voxels without a finite position) and the dot radius.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Each voxel's position in pixels.
    pub px: Vec<[f64; 2]>,
    /// Radius of a voxel's dot, in pixels.
    pub radius: f64,
}

/// Two sheets along x when the largest gap between sorted x positions is both wide (≥ 10 % of
/// the x extent) and far above the typical spacing (≥ 20 × extent / V), with at least 5 % of
/// the voxels on each side. Returns the voxels left and right of the gap.
fn split_sheets(p: &[[f64; 2]]) -> Option<(Vec<usize>, Vec<usize>)> {
    let mut xs: Vec<f64> = p.iter().map(|q| q[0]).filter(|x| x.is_finite()).collect();
    let n = xs.len();
    if n < 20 {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let extent = xs[n - 1] - xs[0];
    if extent <= 0.0 {
        return None;
    }
    let (k, gap) = xs.windows(2).enumerate().map(|(k, w)| (k, w[1] - w[0])).max_by(|a, b| a.1.total_cmp(&b.1))?;
    let left = k + 1;
    let min_side = (n as f64 * 0.05).ceil() as usize;
    if gap < 0.1 * extent || gap < 20.0 * extent / n as f64 || left < min_side || n - left < min_side {
        return None;
    }
    let cut = (xs[k] + xs[k + 1]) / 2.0;
    let a = (0..p.len()).filter(|&i| p[i][0].is_finite() && p[i][0] < cut).collect();
    let b = (0..p.len()).filter(|&i| p[i][0].is_finite() && p[i][0] >= cut).collect();
    Some((a, b))
}

/// Moves the sheets so they sit left to right in order, vertically centred, with a gap of 8 % of
/// the largest sheet's size between neighbours.
fn arrange_side_by_side(points: &mut [[f64; 2]], sheets: &[Sheet]) {
    if sheets.len() < 2 {
        return;
    }
    let bbox = |s: &Sheet, pts: &[[f64; 2]]| {
        let mut b = [f64::MAX, f64::MIN, f64::MAX, f64::MIN];
        for &i in &s.voxels {
            let p = pts[i];
            if p[0].is_finite() && p[1].is_finite() {
                b = [b[0].min(p[0]), b[1].max(p[0]), b[2].min(p[1]), b[3].max(p[1])];
            }
        }
        b
    };
    let boxes: Vec<[f64; 4]> = sheets.iter().map(|s| bbox(s, points)).collect();
    let size = boxes.iter().filter(|b| b[0] <= b[1]).map(|b| (b[1] - b[0]).max(b[3] - b[2])).fold(0.0, f64::max);
    let gap = 0.08 * size;
    let mut cursor = 0.0;
    for (s, b) in sheets.iter().zip(&boxes) {
        if b[0] > b[1] {
            continue;
        }
        let (dx, dy) = (cursor - b[0], -(b[2] + b[3]) / 2.0);
        for &i in &s.voxels {
            points[i] = [points[i][0] + dx, points[i][1] + dy];
        }
        cursor += b[1] - b[0] + gap;
    }
}

/// Projects 3-D points onto their two axes of largest variance, so a volume or a sphere is seen
/// from the side that shows most of it.
pub fn pca_2d(xyz: &[f32]) -> Vec<[f64; 2]> {
    let pts: Vec<[f64; 3]> = xyz.chunks(3).map(|p| [p[0] as f64, p[1] as f64, p[2] as f64]).collect();
    let n = pts.len().max(1) as f64;
    let mut m = [0.0; 3];
    for p in &pts {
        for k in 0..3 {
            m[k] += p[k] / n;
        }
    }
    let mut cov = [[0.0f64; 3]; 3];
    for p in &pts {
        for i in 0..3 {
            for j in 0..3 {
                cov[i][j] += (p[i] - m[i]) * (p[j] - m[j]) / n;
            }
        }
    }
    let axes = top_two_eigenvectors(cov);
    pts.iter()
        .map(|p| {
            let d = [p[0] - m[0], p[1] - m[1], p[2] - m[2]];
            let dot = |a: &[f64; 3]| a[0] * d[0] + a[1] * d[1] + a[2] * d[2];
            [dot(&axes[0]), dot(&axes[1])]
        })
        .collect()
}

/// Cyclic Jacobi rotations on a symmetric 3×3 matrix; returns the eigenvectors of the two largest
/// eigenvalues, each signed so its largest component is positive (a reproducible orientation).
fn top_two_eigenvectors(mut a: [[f64; 3]; 3]) -> [[f64; 3]; 2] {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _ in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        let scale = a[0][0].abs() + a[1][1].abs() + a[2][2].abs();
        if off <= 1e-15 * scale.max(1e-300) {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q].abs() < 1e-300 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A ← Jᵀ A J with J the rotation in the (p, q) plane; V ← V J.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = std::array::from_fn(|k| c * rp[k] - s * rq[k]);
            a[q] = std::array::from_fn(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let col = |j: usize| {
        let mut e = [v[0][j], v[1][j], v[2][j]];
        let big = (0..3).max_by(|&x, &y| e[x].abs().total_cmp(&e[y].abs())).unwrap_or(0);
        if e[big] < 0.0 {
            e.iter_mut().for_each(|x| *x = -*x);
        }
        e
    };
    [col(order[0]), col(order[1])]
}

/// What the legend column shows.
pub enum Legend {
    /// A vertical colour bar with labelled ticks at positions in [0, 1] (0 at the bottom),
    /// optional marks (a labelled arrow at a position), extra swatches below it (e.g. the
    /// colour of voxels outside the bar's range) and the layer map's darkening key.
    Bar {
        /// Title above the bar.
        title: String,
        /// Colour of a position in [0, 1].
        map: fn(f64) -> Rgb,
        /// Labelled ticks.
        ticks: Vec<(f64, String)>,
        /// Labelled arrows.
        marks: Vec<(f64, String)>,
        /// Extra swatches below the bar.
        swatches: Vec<(Rgb, String)>,
        /// Draw the layer map's darkening key.
        entropy_key: bool,
    },
    /// The 2-D colour wheel of image locations.
    Wheel,
    /// One swatch per category.
    Swatches {
        /// Title above the swatches.
        title: String,
        /// Each category's colour and label.
        items: Vec<(Rgb, String)>,
    },
}

/// One map: colours per voxel, the drawing order (later on top), the title and the legend.
pub struct BrainMap {
    /// The map's title.
    pub title: String,
    /// Each voxel's colour.
    pub colors: Vec<Rgb>,
    /// Voxel indices in drawing order (later on top).
    pub order: Vec<usize>,
    /// The legend column.
    pub legend: Legend,
}

/// Width of the legend column for a picture `w` pixels wide.
fn legend_width(w: i64) -> i64 {
    (w / 4).clamp(120, 190)
}

/// Draws `m` into `area` of `c`: title (and the subtitle naming the subject, voxel count and
/// position source when `subtitle`), the map panel, ROI labels and the legend. Returns where
/// each voxel was drawn.
pub fn draw(c: &mut Canvas, area: Rect, brain: &Brain, geo: &Geometry, m: &BrainMap, subtitle: bool) -> Result<Placement> {
    let v = brain.roi.len();
    if m.colors.len() != v || geo.points.len() != v {
        return Err(Error::mismatch(format!(
            "map `{}` has {} colours and {} positions for {v} voxels",
            m.title,
            m.colors.len(),
            geo.points.len()
        )));
    }
    let big = area.w >= 640;
    let title_scale = if big { 2 } else { 1 };
    let mut y = area.y + 10;
    c.text_centered(area.x + area.w / 2, y, &m.title, title_scale, TEXT);
    y += 8 * title_scale + 8;
    if subtitle {
        let line = format!(
            "{}{} voxels, positions from {}",
            brain.subject.as_ref().map(|s| format!("{s}: ")).unwrap_or_default(),
            v,
            geo.source
        );
        c.text_centered(area.x + area.w / 2, y, &line, 1, SUBTLE);
        y += 16;
    }
    let lw = legend_width(area.w);
    let panel = Rect::new(area.x + 12, y, area.w - lw - 24, area.y + area.h - y - 12);
    c.fill_rect(panel.x, panel.y, panel.w, panel.h, PANEL_BG);
    let placed = geo.place(panel);
    for &i in &m.order {
        let q = placed.px[i];
        if q[0].is_finite() {
            c.disc(q[0], q[1], placed.radius, m.colors[i]);
        }
    }
    label_rois(c, brain, geo, &placed, big);
    c.rect_outline(panel.x, panel.y, panel.w, panel.h, [120, 120, 120]);
    draw_legend(c, Rect::new(panel.x + panel.w + 12, panel.y, lw, panel.h), &m.legend);
    Ok(placed)
}

/// ROI names at the centroid of their voxels on each sheet, sheet names above the sheets.
fn label_rois(c: &mut Canvas, brain: &Brain, geo: &Geometry, placed: &Placement, big: bool) {
    // Large labels while there are few enough of them not to collide.
    let scale = if big && brain.roi_names.len() <= 12 { 2 } else { 1 };
    for sheet in &geo.sheets {
        let on: Vec<usize> = sheet.voxels.iter().copied().filter(|&i| placed.px[i][0].is_finite()).collect();
        for (k, name) in brain.roi_names.iter().enumerate() {
            let idx: Vec<usize> = on.iter().copied().filter(|&i| brain.roi[i] == k as i32).collect();
            if idx.is_empty() {
                continue;
            }
            let (sx, sy) = idx.iter().fold((0.0, 0.0), |(a, b), &i| (a + placed.px[i][0], b + placed.px[i][1]));
            let (lx, ly) = (sx / idx.len() as f64, sy / idx.len() as f64);
            let w = Canvas::text_width(name, scale);
            c.text_halo(lx as i64 - w / 2, ly as i64 - 4 * scale, name, scale, WHITE, BLACK);
        }
        if !sheet.name.is_empty() && !on.is_empty() {
            let (x0, x1) = on.iter().fold((f64::MAX, f64::MIN), |(a, b), &i| (a.min(placed.px[i][0]), b.max(placed.px[i][0])));
            let top = on.iter().map(|&i| placed.px[i][1]).fold(f64::MAX, f64::min);
            c.text_centered(((x0 + x1) / 2.0) as i64, (top - placed.radius - 16.0) as i64, &sheet.name, 1, [220, 220, 220]);
        }
    }
}

fn draw_legend(c: &mut Canvas, r: Rect, legend: &Legend) {
    let x = r.x;
    match legend {
        Legend::Bar { title, map, ticks, marks, swatches, entropy_key } => {
            let bar_y = r.y + 26;
            let bar_h = (r.h * 45 / 100).clamp(80, 280);
            let bar_w = 22;
            c.text(x, r.y + 6, title, 1, TEXT);
            for k in 0..bar_h {
                let t = 1.0 - (k as f64 + 0.5) / bar_h as f64;
                c.fill_rect(x, bar_y + k, bar_w, 1, map(t));
            }
            c.rect_outline(x, bar_y, bar_w, bar_h, SUBTLE);
            let ty = |t: f64| bar_y + ((1.0 - t.clamp(0.0, 1.0)) * (bar_h - 1) as f64).round() as i64;
            for (t, label) in ticks {
                c.fill_rect(x + bar_w, ty(*t), 5, 1, TEXT);
                c.text(x + bar_w + 8, ty(*t) - 4, label, 1, TEXT);
            }
            for (t, label) in marks {
                // A bar across the colour bar and an arrow to the left of it.
                let yy = ty(*t);
                c.fill_rect(x - 3, yy - 1, bar_w + 6, 2, BLACK);
                c.text(x + bar_w + 8, yy - 4, label, 1, [160, 20, 20]);
            }
            let mut ky = bar_y + bar_h + 16;
            for (col, label) in swatches {
                c.fill_rect(x, ky, 14, 12, *col);
                c.rect_outline(x, ky, 14, 12, SUBTLE);
                c.text(x + 20, ky + 2, label, 1, TEXT);
                ky += 18;
            }
            if *entropy_key && ky + 64 <= r.y + r.h {
                // The darkening scale: a mid-depth colour at entropy 0 … 1.
                ky += 8;
                c.text(x, ky, "darker = less", 1, TEXT);
                c.text(x, ky + 11, "certain layer", 1, TEXT);
                let (kw, kh) = ((r.w - 10).min(120), 16);
                for k in 0..kw {
                    let e = (k as f64 + 0.5) / kw as f64;
                    let col = colormap::darken(colormap::diverging(0.5), UNCERTAIN_DARKEN * e);
                    c.fill_rect(x + k, ky + 28, 1, kh, col);
                }
                c.rect_outline(x, ky + 28, kw, kh, SUBTLE);
                c.text(x, ky + 28 + kh + 5, "entropy 0", 1, TEXT);
                c.text(x + kw - 8, ky + 28 + kh + 5, "1", 1, TEXT);
            }
        }
        Legend::Wheel => {
            c.text(x, r.y + 6, "image location", 1, TEXT);
            let rad = ((r.w as f64 - 80.0) / 2.0).clamp(24.0, 46.0);
            let (wx, wy) = (x as f64 + 40.0 + rad, r.y as f64 + 40.0 + rad);
            for py in (wy - rad) as i64..=(wy + rad) as i64 {
                for px in (wx - rad) as i64..=(wx + rad) as i64 {
                    let (dx, dy) = ((px as f64 + 0.5 - wx) / rad, (py as f64 + 0.5 - wy) / rad);
                    let d = (dx * dx + dy * dy).sqrt();
                    if d <= 1.0 + 1.0 / rad {
                        c.blend(px, py, colormap::wheel(dx, dy), ((1.0 - d) * rad + 0.5).min(1.0));
                    }
                }
            }
            c.text_centered(wx as i64, (wy - rad) as i64 - 14, "top", 1, TEXT);
            c.text_centered(wx as i64, (wy + rad) as i64 + 6, "bottom", 1, TEXT);
            c.text((wx - rad) as i64 - 36, wy as i64 - 4, "left", 1, TEXT);
            c.text((wx + rad) as i64 + 4, wy as i64 - 4, "right", 1, TEXT);
            let ty = (wy + rad) as i64 + 30;
            c.text(x, ty, "hue: direction", 1, TEXT);
            c.text(x, ty + 12, "from the centre", 1, TEXT);
            c.text(x, ty + 28, "white: centre", 1, TEXT);
        }
        Legend::Swatches { title, items } => {
            c.text(x, r.y + 6, title, 1, TEXT);
            // One or two columns, whichever fits the height.
            let row_h = 14;
            let rows_fit = ((r.h - 30) / row_h).max(1) as usize;
            let cols = if items.len() > rows_fit { 2 } else { 1 };
            let per_col = items.len().div_ceil(cols);
            let col_w = r.w / cols as i64;
            for (k, (col, label)) in items.iter().enumerate() {
                let (cx, cy) = (x + (k / per_col) as i64 * col_w, r.y + 26 + (k % per_col) as i64 * row_h);
                c.fill_rect(cx, cy, 12, 10, *col);
                c.text(cx + 16, cy + 1, label, 1, TEXT);
            }
        }
    }
}

/// `m` alone on a `width`×`height` canvas, and where each voxel was drawn.
pub fn render(size: (usize, usize), brain: &Brain, geo: &Geometry, m: &BrainMap) -> Result<(Canvas, Placement)> {
    let mut c = Canvas::new(size.0, size.1, WHITE);
    let placed = draw(&mut c, Rect::new(0, 0, size.0 as i64, size.1 as i64), brain, geo, m, true)?;
    Ok((c, placed))
}

/// Draws `m` alone on a `width`×`height` canvas and writes it to `path` as PNG.
pub fn save(path: &Path, size: (usize, usize), brain: &Brain, geo: &Geometry, m: &BrainMap) -> Result<()> {
    render(size, brain, geo, m)?.0.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Array;

    #[test]
    fn pca_finds_the_long_axes() {
        // Points spread 10 along z, 3 along x, 0.1 along y: the main axes are z then x.
        let mut xyz = Vec::new();
        for i in 0..50 {
            let t = i as f32 / 49.0 - 0.5;
            let u = ((i * 17) % 50) as f32 / 49.0 - 0.5;
            xyz.extend_from_slice(&[3.0 * u, 0.1 * ((i % 3) as f32 - 1.0), 10.0 * t]);
        }
        let p = pca_2d(&xyz);
        let var = |k: usize| p.iter().map(|q| q[k] * q[k]).sum::<f64>() / p.len() as f64;
        assert!(var(0) > var(1));
        assert!((var(0).sqrt() - 10.0 * 0.2946).abs() < 0.2, "{}", var(0).sqrt());
        assert!((var(1).sqrt() - 3.0 * 0.2946).abs() < 0.2, "{}", var(1).sqrt());
    }

    #[test]
    fn eigenvectors_of_a_diagonal_matrix() {
        let e = top_two_eigenvectors([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 3.0]]);
        assert_eq!(e[0], [0.0, 1.0, 0.0]);
        assert_eq!(e[1], [0.0, 0.0, 1.0]);
    }

    /// A 20×10 grid of voxels; `offset` is added to x for the second half (by index).
    fn brain(flat_offset: Option<f32>, hemi: bool) -> Brain {
        let v = 400;
        let mut flat = Vec::new();
        let mut coords = Vec::new();
        for i in 0..v {
            let (x, y) = ((i % 20) as f32, ((i / 20) % 10) as f32);
            let right = i >= 200;
            flat.extend_from_slice(&[x + if right { flat_offset.unwrap_or(0.0) } else { 0.0 }, y]);
            // Both halves at the same place in 3-D: only labels can tell them apart.
            coords.extend_from_slice(&[x, y, 0.01 * x * x]);
        }
        Brain {
            responses: Array::zeros(vec![2, v]).into(),
            coords: Array::new(vec![v, 3], coords).unwrap(),
            roi: (0..v).map(|i| i32::from(i % 20 >= 10)).collect(),
            noise_ceiling: None,
            flat: flat_offset.map(|_| Array::new(vec![v, 2], flat).unwrap()),
            hemisphere: hemi.then(|| (0..v).map(|i| u8::from(i >= 200)).collect()),
            roi_names: vec!["V1".into(), "V2".into()],
            roi_levels: vec![0, 1],
            stimulus_ids: None,
            subject: None,
        }
    }

    #[test]
    fn hemispheres_side_by_side() {
        // Labelled, no flatmap: the two halves overlap in 3-D but are drawn apart, left first.
        let g = Geometry::of(&brain(None, true)).unwrap();
        assert_eq!(g.sheets.len(), 2);
        assert_eq!(g.sheets[0].name, "left hemisphere");
        let max_left = g.sheets[0].voxels.iter().map(|&i| g.points[i][0]).fold(f64::MIN, f64::max);
        let min_right = g.sheets[1].voxels.iter().map(|&i| g.points[i][0]).fold(f64::MAX, f64::min);
        assert!(min_right > max_left, "{max_left} {min_right}");
        // Unlabelled flatmap with two separate sheets: detected, unnamed.
        let g = Geometry::of(&brain(Some(60.0), false)).unwrap();
        assert_eq!(g.sheets.len(), 2);
        assert_eq!(g.sheets[0].voxels, (0..200).collect::<Vec<_>>());
        assert!(g.sheets[0].name.is_empty());
        // One continuous sheet stays whole.
        let g = Geometry::of(&brain(Some(20.0), false)).unwrap();
        assert_eq!(g.sheets.len(), 1);
    }

    #[test]
    fn placement_keeps_voxels_inside_the_panel() {
        let g = Geometry::of(&brain(Some(60.0), true)).unwrap();
        let panel = Rect::new(10, 20, 300, 200);
        let p = g.place(panel);
        for q in &p.px {
            assert!(q[0] >= 10.0 && q[0] <= 310.0 && q[1] >= 20.0 && q[1] <= 220.0, "{q:?}");
        }
    }

    #[test]
    fn mismatched_colours_rejected() {
        let b = brain(None, false);
        let g = Geometry::of(&b).unwrap();
        let m = BrainMap { title: "x".into(), colors: vec![WHITE; 3], order: vec![], legend: Legend::Wheel };
        let mut c = Canvas::new(100, 100, WHITE);
        assert!(draw(&mut c, Rect::new(0, 0, 100, 100), &b, &g, &m, true).is_err());
    }
}
