//! "Network on the brain" pictures (DESIGN §7): every voxel a dot at its place on the cortex,
//! coloured by what it reads from the network. The layer, space and scale maps share one layout
//! (`draw_brain_map`) and differ only in the voxel colours and the legend.

use std::path::Path;

use crate::data::Brain;
use crate::error::{Error, Result};
use crate::model::Selections;
use crate::scores::hierarchy;

use super::canvas::{Canvas, Rgb, BLACK, WHITE};
use super::colormap;

const WIDTH: usize = 800;
const HEIGHT: usize = 600;
/// Map panel (x, y, w, h); the legend column sits to its right.
const PANEL: (i64, i64, i64, i64) = (16, 52, 590, 532);
const LEGEND_X: i64 = 622;
/// Near-black behind the voxels. Any mid grey would equal some darkened mid-depth voxel and
/// hide it; against black, certain voxels stand out and uncertain ones recede, which is what the
/// darkening is meant to say.
const PANEL_BG: Rgb = [24, 24, 28];
const TEXT: Rgb = [20, 20, 20];
/// How far a voxel with uniform layer probabilities (entropy 1) is darkened. Less than 1 so that
/// even the least certain voxels keep a trace of their hue.
const UNCERTAIN_DARKEN: f64 = 0.7;

/// 2-D positions of the voxels (y up) and how they were obtained, for the subtitle.
fn positions(brain: &Brain) -> Result<(Vec<[f64; 2]>, &'static str)> {
    let v = brain.roi.len();
    if let Some(flat) = &brain.flat {
        if flat.shape != [v, 2] {
            return Err(Error::mismatch(format!(
                "flatmap has shape {:?}, expected [{v}, 2]",
                flat.shape
            )));
        }
        let pts = flat
            .data
            .chunks(2)
            .map(|p| [p[0] as f64, p[1] as f64])
            .collect();
        return Ok((pts, "flatmap"));
    }
    if brain.coords.shape != [v, 3] {
        return Err(Error::mismatch(format!(
            "coords have shape {:?}, expected [{v}, 3]",
            brain.coords.shape
        )));
    }
    Ok((pca_2d(&brain.coords.data), "coords, 2 main axes"))
}

/// Projects 3-D points onto their two axes of largest variance, so a volume or a sphere is seen
/// from the side that shows most of it.
fn pca_2d(xyz: &[f32]) -> Vec<[f64; 2]> {
    let pts: Vec<[f64; 3]> = xyz
        .chunks(3)
        .map(|p| [p[0] as f64, p[1] as f64, p[2] as f64])
        .collect();
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
        let big = (0..3)
            .max_by(|&x, &y| e[x].abs().total_cmp(&e[y].abs()))
            .unwrap_or(0);
        if e[big] < 0.0 {
            e.iter_mut().for_each(|x| *x = -*x);
        }
        e
    };
    [col(order[0]), col(order[1])]
}

/// What the legend column shows.
enum Legend {
    /// A vertical colour bar with labelled ticks at positions in [0, 1] (0 at the bottom).
    Bar {
        title: &'static str,
        map: fn(f64) -> Rgb,
        ticks: Vec<(f64, String)>,
        entropy_key: bool,
    },
    /// The 2-D colour wheel of image locations.
    Wheel,
}

struct BrainMap<'a> {
    brain: &'a Brain,
    title: &'a str,
    colors: Vec<Rgb>,
    /// Drawing order (later on top).
    order: Vec<usize>,
    legend: Legend,
}

fn check_selections(brain: &Brain, sel: &Selections) -> Result<()> {
    let v = brain.roi.len();
    let l = sel.n_layers();
    if sel.layer_probs.shape != [v, l] || sel.space.shape != [v, 2] || sel.scale.len() != v {
        return Err(Error::mismatch(format!(
            "selections (layer {:?}, space {:?}, scale [{}]) do not match the brain's {v} voxels",
            sel.layer_probs.shape,
            sel.space.shape,
            sel.scale.len()
        )));
    }
    Ok(())
}

fn draw_brain_map(path: &Path, m: BrainMap) -> Result<()> {
    let brain = m.brain;
    let (pts, source) = positions(brain)?;
    let mut c = Canvas::new(WIDTH, HEIGHT, WHITE);
    c.text_centered(WIDTH as i64 / 2, 12, m.title, 2, TEXT);
    let subtitle = format!(
        "{}{} voxels, positions from {}",
        brain
            .subject
            .as_ref()
            .map(|s| format!("{s}: "))
            .unwrap_or_default(),
        pts.len(),
        source
    );
    c.text_centered(WIDTH as i64 / 2, 34, &subtitle, 1, [90, 90, 90]);

    let (px, py, pw, ph) = PANEL;
    c.fill_rect(px, py, pw, ph, PANEL_BG);

    let finite: Vec<usize> = (0..pts.len())
        .filter(|&i| pts[i][0].is_finite() && pts[i][1].is_finite())
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &i in &finite {
        x0 = x0.min(pts[i][0]);
        x1 = x1.max(pts[i][0]);
        y0 = y0.min(pts[i][1]);
        y1 = y1.max(pts[i][1]);
    }
    let margin = 14.0;
    let (aw, ah) = (pw as f64 - 2.0 * margin, ph as f64 - 2.0 * margin);
    // One scale for both axes, so the cortex keeps its shape.
    let span = ((x1 - x0) / aw).max((y1 - y0) / ah);
    let s = if span > 0.0 && span.is_finite() {
        1.0 / span
    } else {
        1.0
    };
    let (cx, cy) = (px as f64 + pw as f64 / 2.0, py as f64 + ph as f64 / 2.0);
    let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let to_px = |p: [f64; 2]| [cx + (p[0] - mx) * s, cy - (p[1] - my) * s];

    // Dots big enough to tile the occupied area, small enough not to hide neighbours.
    let used = (((x1 - x0) * s).max(1.0) * ((y1 - y0) * s).max(1.0)).max(1.0);
    let radius = (0.6 * (used / finite.len().max(1) as f64).sqrt()).clamp(1.2, 7.0);
    for &i in &m.order {
        if pts[i][0].is_finite() && pts[i][1].is_finite() {
            let q = to_px(pts[i]);
            c.disc(q[0], q[1], radius, m.colors[i]);
        }
    }

    // ROI names at the centroids of their voxels.
    for (k, name) in brain.roi_names.iter().enumerate() {
        let idx: Vec<usize> = finite
            .iter()
            .copied()
            .filter(|&i| brain.roi[i] == k as i32)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let (sx, sy) = idx.iter().fold((0.0, 0.0), |(a, b), &i| {
            let q = to_px(pts[i]);
            (a + q[0], b + q[1])
        });
        let (lx, ly) = (sx / idx.len() as f64, sy / idx.len() as f64);
        // Large labels while there are few enough of them not to collide.
        let scale = if brain.roi_names.len() <= 12 { 2 } else { 1 };
        let w = Canvas::text_width(name, scale);
        c.text_halo(
            lx as i64 - w / 2,
            ly as i64 - 4 * scale,
            name,
            scale,
            WHITE,
            BLACK,
        );
    }
    c.rect_outline(px, py, pw, ph, [120, 120, 120]);

    draw_legend(&mut c, &m.legend);
    c.save_png(path)
}

fn draw_legend(c: &mut Canvas, legend: &Legend) {
    let x = LEGEND_X;
    match legend {
        Legend::Bar {
            title,
            map,
            ticks,
            entropy_key,
        } => {
            let (bar_y, bar_h, bar_w) = (96, 280, 22);
            c.text(x, 70, title, 1, TEXT);
            for k in 0..bar_h {
                let t = 1.0 - (k as f64 + 0.5) / bar_h as f64;
                c.fill_rect(x, bar_y + k, bar_w, 1, map(t));
            }
            c.rect_outline(x, bar_y, bar_w, bar_h, [90, 90, 90]);
            for (t, label) in ticks {
                let ty = bar_y + ((1.0 - t) * (bar_h - 1) as f64).round() as i64;
                c.fill_rect(x + bar_w, ty, 5, 1, TEXT);
                c.text(x + bar_w + 8, ty - 4, label, 1, TEXT);
            }
            if *entropy_key {
                // The darkening scale: a mid-depth colour at entropy 0 … 1.
                let ky = bar_y + bar_h + 40;
                c.text(x, ky, "darker = less", 1, TEXT);
                c.text(x, ky + 11, "certain layer", 1, TEXT);
                let (kw, kh) = (120, 16);
                for k in 0..kw {
                    let e = (k as f64 + 0.5) / kw as f64;
                    let col = colormap::darken(colormap::diverging(0.5), UNCERTAIN_DARKEN * e);
                    c.fill_rect(x + k, ky + 28, 1, kh, col);
                }
                c.rect_outline(x, ky + 28, kw, kh, [90, 90, 90]);
                c.text(x, ky + 28 + kh + 5, "entropy 0", 1, TEXT);
                c.text(x + kw - 8, ky + 28 + kh + 5, "1", 1, TEXT);
            }
        }
        Legend::Wheel => {
            c.text(x, 70, "image location", 1, TEXT);
            let (r, wx, wy) = (46.0, (x + 84) as f64, 170.0);
            for py in (wy - r) as i64..=(wy + r) as i64 {
                for px in (wx - r) as i64..=(wx + r) as i64 {
                    let (dx, dy) = ((px as f64 + 0.5 - wx) / r, (py as f64 + 0.5 - wy) / r);
                    let d = (dx * dx + dy * dy).sqrt();
                    if d <= 1.0 + 1.0 / r {
                        c.blend(
                            px,
                            py,
                            colormap::wheel(dx, dy),
                            ((1.0 - d) * r + 0.5).min(1.0),
                        );
                    }
                }
            }
            c.text_centered(wx as i64, (wy - r) as i64 - 14, "top", 1, TEXT);
            c.text_centered(wx as i64, (wy + r) as i64 + 6, "bottom", 1, TEXT);
            c.text((wx - r) as i64 - 36, wy as i64 - 4, "left", 1, TEXT);
            c.text((wx + r) as i64 + 4, wy as i64 - 4, "right", 1, TEXT);
            c.text(x, (wy + r) as i64 + 30, "hue: direction", 1, TEXT);
            c.text(x, (wy + r) as i64 + 42, "from the centre", 1, TEXT);
            c.text(x, (wy + r) as i64 + 58, "white: centre", 1, TEXT);
        }
    }
}

/// Layer map: each voxel coloured by its depth `d_v` (blue = first layer, red = last) and
/// darkened in proportion to its selection entropy `e_v`, so uncertain choices recede.
/// Confident voxels are drawn last, on top of uncertain neighbours.
pub fn layer_map(path: &Path, brain: &Brain, sel: &Selections, title: &str) -> Result<()> {
    check_selections(brain, sel)?;
    let depth = hierarchy::voxel_depth(sel);
    let entropy = hierarchy::selection_entropy(sel);
    let colors = depth
        .iter()
        .zip(&entropy)
        .map(|(&d, &e)| colormap::darken(colormap::diverging(d), UNCERTAIN_DARKEN * e))
        .collect();
    let mut order: Vec<usize> = (0..depth.len()).collect();
    order.sort_by(|&i, &j| entropy[j].total_cmp(&entropy[i]));
    let last = sel.n_layers().saturating_sub(1);
    let ticks = vec![
        (0.0, "0  layer 0".to_string()),
        (0.5, "0.5".to_string()),
        (1.0, format!("1  layer {last}")),
    ];
    draw_brain_map(
        path,
        BrainMap {
            brain,
            title,
            colors,
            order,
            legend: Legend::Bar {
                title: "layer depth",
                map: colormap::diverging,
                ticks,
                entropy_key: true,
            },
        },
    )
}

/// Space map: each voxel coloured by the image location `(x_v, y_v)` it reads from.
pub fn space_map(path: &Path, brain: &Brain, sel: &Selections, title: &str) -> Result<()> {
    check_selections(brain, sel)?;
    let colors = sel
        .space
        .data
        .chunks(2)
        .map(|p| colormap::wheel(p[0] as f64, p[1] as f64))
        .collect();
    let order = (0..brain.roi.len()).collect();
    draw_brain_map(
        path,
        BrainMap {
            brain,
            title,
            colors,
            order,
            legend: Legend::Wheel,
        },
    )
}

/// Scale map: each voxel coloured by its scale `s_v` (0 = local patch token, 1 = global token).
pub fn scale_map(path: &Path, brain: &Brain, sel: &Selections, title: &str) -> Result<()> {
    check_selections(brain, sel)?;
    let colors = sel
        .scale
        .iter()
        .map(|&s| colormap::sequential(s as f64))
        .collect();
    let order = (0..brain.roi.len()).collect();
    let ticks = vec![
        (0.0, "0  local".to_string()),
        (0.5, "0.5".to_string()),
        (1.0, "1  global".to_string()),
    ];
    draw_brain_map(
        path,
        BrainMap {
            brain,
            title,
            colors,
            order,
            legend: Legend::Bar {
                title: "scale",
                map: colormap::sequential,
                ticks,
                entropy_key: false,
            },
        },
    )
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
        assert!(
            (var(0).sqrt() - 10.0 * 0.2946).abs() < 0.2,
            "{}",
            var(0).sqrt()
        );
        assert!(
            (var(1).sqrt() - 3.0 * 0.2946).abs() < 0.2,
            "{}",
            var(1).sqrt()
        );
    }

    #[test]
    fn eigenvectors_of_a_diagonal_matrix() {
        let e = top_two_eigenvectors([[1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 3.0]]);
        assert_eq!(e[0], [0.0, 1.0, 0.0]);
        assert_eq!(e[1], [0.0, 0.0, 1.0]);
    }

    #[test]
    fn mismatched_selections_rejected() {
        let brain = Brain {
            responses: Array::zeros(vec![2, 3]),
            coords: Array::zeros(vec![3, 3]),
            roi: vec![0, 0, -1],
            noise_ceiling: None,
            flat: None,
            roi_names: vec!["V1".into()],
            roi_levels: vec![0],
            stimulus_ids: None,
            subject: None,
        };
        let sel = Selections {
            layer_probs: Array::zeros(vec![2, 4]),
            space: Array::zeros(vec![2, 2]),
            scale: vec![0.5; 2],
        };
        let dir = std::env::temp_dir().join("factortopy-never-written.png");
        assert!(layer_map(&dir, &brain, &sel, "x").is_err());
    }
}
