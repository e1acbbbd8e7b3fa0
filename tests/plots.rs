//! The maps on planted data, checked through their pixels: the space map's hue at
//! each voxel follows the planted image location, the channel map's colours group the voxels
//! that were planted with the same readout direction, and the profile chart draws the report's
//! histograms. The clustering behind the channel map is timed and checked for determinism at
//! V = 40 000. Pictures are left in CARGO_TARGET_TMPDIR/plots for a look.

use std::path::PathBuf;
use std::time::Instant;

use factortopy::cluster::{adjusted_rand_index, spherical_kmeans, DEFAULT_K, DEFAULT_MAX_ITER, MAX_REFINE};
use factortopy::data::{Array, Brain};
use factortopy::model::Selections;
use factortopy::plot::brain_map::{self, Geometry};
use factortopy::plot::{channel_map, colormap, profile, space_map, Canvas, Rgb};
use factortopy::rng::Rng;
use factortopy::scores::Report;
use factortopy::synth::{generate, Scenario, SynthConfig, Truth};

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A planted brain (2000 voxels on the synthetic sheet) and its truth; the network is tiny
/// because only the brain's layout and the planted answer are used.
fn planted() -> (Brain, Truth) {
    let cfg = SynthConfig {
        scenario: Scenario::Hierarchical,
        n_images: 24,
        n_voxels: 2000,
        n_layers: 6,
        width: 8,
        grid: 4,
        seed: 3,
        ..SynthConfig::default()
    };
    let s = generate(&cfg).unwrap();
    (s.brain, s.truth)
}

/// Selections that are exactly the planted answer (one-hot layer).
fn truth_selections(truth: &Truth, n_layers: usize) -> Selections {
    let v = truth.n_voxels();
    let mut probs = vec![0.0f32; v * n_layers];
    for i in 0..v {
        probs[i * n_layers + truth.layer[i] as usize] = 1.0;
    }
    Selections {
        layer_probs: Array::new(vec![v, n_layers], probs).unwrap(),
        space: truth.space.clone(),
        scale: truth.scale.clone(),
    }
}

fn pixel(c: &Canvas, p: [f64; 2]) -> Rgb {
    c.get(p[0].floor() as i64, p[1].floor() as i64).unwrap()
}

/// Median and 95th percentile of the space map's hue error over signal voxels whose planted
/// location is far enough from the centre to have a hue, and how many there are.
fn hue_summary(c: &Canvas, px: &[[f64; 2]], truth: &Truth) -> (f64, f64, usize) {
    let voxels: Vec<usize> = (0..truth.n_voxels())
        .filter(|&i| {
            let (x, y) = (truth.space.data[2 * i], truth.space.data[2 * i + 1]);
            truth.signal[i] == 1 && (x * x + y * y).sqrt() >= 0.3
        })
        .collect();
    let mut errs = space_map::hue_errors(c, px, &truth.space.data, &voxels);
    errs.sort_by(f64::total_cmp);
    let q = |f: f64| errs[((errs.len() - 1) as f64 * f).round() as usize];
    (q(0.5), q(0.95), errs.len())
}

#[test]
fn space_map_hue_follows_planted_location() {
    let (brain, truth) = planted();
    let sel = truth_selections(&truth, 6);
    let geo = Geometry::of(&brain).unwrap();
    let m = space_map::space_panel(&brain, &sel, "planted image location").unwrap();
    let (c, placed) = brain_map::render((800, 600), &brain, &geo, &m).unwrap();
    c.save_png(&out_dir().join("space_map_planted.png")).unwrap();
    let (median, p95, n) = hue_summary(&c, &placed.px, &truth);
    eprintln!("space map vs planted location: hue error median {median:.2}°, 95th percentile {p95:.2}° over {n} voxels");
    assert!(n > 1000, "{n}");
    assert!(median < 3.0 && p95 < 15.0, "median {median}, p95 {p95}");
}

/// Readouts `[V, D]` with one planted direction per ROI (plus noise of the given size per
/// coordinate and a random positive length), as voxels of one ROI reading the same channels.
fn readouts_per_roi(roi: &[i32], d: usize, noise: f64, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let n_roi = roi.iter().map(|&r| r.max(0) as usize + 1).max().unwrap_or(1);
    let dirs: Vec<Vec<f64>> = (0..n_roi)
        .map(|_| {
            let v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.into_iter().map(|a| a / n).collect()
        })
        .collect();
    let mut w = Vec::with_capacity(roi.len() * d);
    for &r in roi {
        let len = 0.3 + rng.uniform();
        for &dir in &dirs[r.max(0) as usize][..d] {
            w.push((len * (dir + noise * rng.normal())) as f32);
        }
    }
    w
}

#[test]
fn channel_map_groups_voxels_with_the_same_readout_direction() {
    let (brain, _) = planted();
    let v = brain.roi.len();
    let d = 32;
    // Noise 0.15 per coordinate in 32 dimensions: cosine with the planted direction ≈ 0.55.
    let w = readouts_per_roi(&brain.roi, d, 0.15, 11);
    let truth: Vec<usize> = brain.roi.iter().map(|&r| r as usize).collect();
    let k = brain.roi_names.len();
    let groups = channel_map::channel_groups(&w, d, k, 0).unwrap();
    let ari = adjusted_rand_index(&truth, &groups.labels).unwrap();
    // Read the groups back from the picture: each voxel's pixel colour names its group.
    let geo = Geometry::of(&brain).unwrap();
    let m = channel_map::channel_panel(&brain, &groups, "planted readout directions").unwrap();
    let (c, placed) = brain_map::render((800, 600), &brain, &geo, &m).unwrap();
    c.save_png(&out_dir().join("channel_map_planted.png")).unwrap();
    let palette: Vec<Rgb> = (0..groups.k).map(|g| colormap::distinct(g, groups.k)).collect();
    let drawn: Vec<usize> = (0..v)
        .map(|i| {
            let p = pixel(&c, placed.px[i]);
            // Nearest palette colour (anti-aliased edges are blends).
            (0..palette.len())
                .min_by_key(|&g| palette[g].iter().zip(p).map(|(&a, b)| (a as i32 - b as i32).pow(2)).sum::<i32>())
                .unwrap()
        })
        .collect();
    let ari_drawn = adjusted_rand_index(&truth, &drawn).unwrap();
    eprintln!(
        "channel groups vs planted per-ROI readout directions (V = {v}, D = {d}, k = {k}): ARI {ari:.4} \
         ({} iterations), read back from the picture: ARI {ari_drawn:.4}",
        groups.iterations
    );
    assert!(ari > 0.95, "ARI {ari}");
    assert!(ari_drawn > 0.9, "ARI from pixels {ari_drawn}");
    // Same seed, same groups.
    assert_eq!(channel_map::channel_groups(&w, d, k, 0).unwrap(), groups);
}

#[test]
fn clustering_at_40k_voxels_is_bounded_and_deterministic() {
    let (n, d, g) = (40_000, 128, DEFAULT_K);
    let mut rng = Rng::new(5);
    let dirs: Vec<Vec<f64>> = (0..g)
        .map(|_| {
            let v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
            let s = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.into_iter().map(|a| a / s).collect()
        })
        .collect();
    let mut x = Vec::with_capacity(n * d);
    let mut truth = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.below(g);
        for &dir in &dirs[k][..d] {
            x.push((dir + 0.08 * rng.normal()) as f32);
        }
        truth.push(k);
    }
    let t = Instant::now();
    let a = spherical_kmeans(&x, n, d, g, 0, DEFAULT_MAX_ITER).unwrap();
    let first = t.elapsed().as_secs_f64();
    let b = spherical_kmeans(&x, n, d, g, 0, DEFAULT_MAX_ITER).unwrap();
    let ari = adjusted_rand_index(&truth, &a.labels).unwrap();
    eprintln!(
        "spherical k-means, V = {n}, D = {d}, k = {g}: {first:.2} s, {} iterations (cap {}), converged {}, ARI {ari:.4}",
        a.iterations,
        (1 + MAX_REFINE) * DEFAULT_MAX_ITER,
        a.converged
    );
    assert_eq!(a, b, "two runs with the same seed differ");
    assert!(a.iterations <= (1 + MAX_REFINE) * DEFAULT_MAX_ITER);
    assert!(ari > 0.95, "ARI {ari}");
}

#[test]
fn profile_chart_draws_the_reports_histograms() {
    let (brain, truth) = planted();
    let l = 6;
    let sel = truth_selections(&truth, l);
    let v = truth.n_voxels();
    let r2 = vec![0.5f32; v];
    let report = Report::compute("planted", "factortopy", &[], &sel, &r2, &r2, &brain, false, None).unwrap();
    let (c, layout) = profile::render((800, 600), &report).unwrap();
    c.save_png(&out_dir().join("profile_planted.png")).unwrap();
    // Independently: argmax layer of each voxel, counted per ROI, ROIs in level order.
    let mut order: Vec<usize> = (0..brain.roi_names.len()).collect();
    order.sort_by_key(|&r| brain.roi_levels[r]);
    for (row, &r) in layout.rows.iter().zip(&order) {
        let mut counts = vec![0usize; l];
        for i in 0..v {
            if brain.roi[i] == r as i32 {
                counts[truth.layer[i] as usize] += 1;
            }
        }
        assert_eq!(row.name, brain.roi_names[r]);
        assert_eq!(row.counts, counts, "{}", row.name);
        assert_eq!(row.counts, report.rois[r].layer_histogram);
    }
    assert_eq!(layout.rows.len(), order.len());
    // Each cell is painted with the colour of its fraction: sampled at its four inner corners,
    // away from the percentage text; the mean-depth line may cross one or two of them.
    for (row, cells) in layout.rows.iter().zip(&layout.cells) {
        for (li, r) in cells.iter().enumerate() {
            let want = Some(colormap::sequential(row.counts[li] as f64 / row.n_voxels as f64));
            let corners = [(r.x + 1, r.y + 1), (r.x + r.w - 2, r.y + 1), (r.x + 1, r.y + r.h - 2), (r.x + r.w - 2, r.y + r.h - 2)];
            let hits = corners.iter().filter(|&&(x, y)| c.get(x, y) == want).count();
            assert!(hits >= 2, "{} layer {li}: {hits} of 4 corners have the colour of its fraction", row.name);
        }
    }
}

#[test]
fn hemispheres_are_drawn_side_by_side() {
    // The planted sheet copied twice at the same place, labelled left and right.
    let (brain, truth) = planted();
    let v = brain.roi.len();
    let mut two = brain.clone();
    two.responses = Array::zeros(vec![2, 2 * v]).into();
    two.coords.data.extend_from_within(..);
    two.coords.shape = vec![2 * v, 3];
    two.flat = None;
    two.roi.extend_from_within(..);
    two.hemisphere = Some((0..2 * v).map(|i| u8::from(i >= v)).collect());
    let mut sel = truth_selections(&truth, 6);
    sel.layer_probs.data.extend_from_within(..);
    sel.layer_probs.shape[0] = 2 * v;
    sel.space.data.extend_from_within(..);
    sel.space.shape[0] = 2 * v;
    sel.scale.extend_from_within(..);
    let geo = Geometry::of(&two).unwrap();
    let m = factortopy::plot::layer_map::layer_panel(&two, &sel, "two hemispheres").unwrap();
    let (c, placed) = brain_map::render((800, 600), &two, &geo, &m).unwrap();
    c.save_png(&out_dir().join("layer_map_hemispheres.png")).unwrap();
    let right_of_left = (0..v).map(|i| placed.px[i][0]).fold(f64::MIN, f64::max);
    let left_of_right = (v..2 * v).map(|i| placed.px[i][0]).fold(f64::MAX, f64::min);
    assert!(left_of_right > right_of_left + 5.0, "{right_of_left} {left_of_right}");
}
