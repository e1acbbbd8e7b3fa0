// Cost of the uncertainty estimates: B bootstrap resamples (held-out images and
// voxels within ROIs) and P permutations of ROI levels, at the DESIGN benchmark size V = 5000.
//
//   cargo bench --bench bootstrap -- [--voxels V] [--images N] [--resamples B]
//       [--permutations P] [--rois R] [--threads T]
//
// The data are random (the cost does not depend on the values): N held-out images (default
// 150, the 10 % validation split of 1500 probe images), V voxels in R ROIs.

use std::time::Instant;

use factortopy::data::{Array, Brain};
use factortopy::rng::Rng;
use factortopy::scores::bootstrap::{bootstrap, resampled_scores, BootstrapConfig, BootstrapInputs, HeldOut};
use factortopy::scores::permutation::{permutation_test, PermutationConfig};

fn main() {
    let mut voxels = 5000usize;
    let mut images = 150usize;
    let mut resamples = 1000usize;
    let mut permutations = 10_000usize;
    let mut rois = 7usize;
    let mut threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let num = || argv.get(i + 1).and_then(|s| s.parse::<usize>().ok()).unwrap_or_else(|| panic!("{} needs a number", argv[i]));
        match argv[i].as_str() {
            "--voxels" => voxels = num(),
            "--images" => images = num(),
            "--resamples" => resamples = num(),
            "--permutations" => permutations = num(),
            "--rois" => rois = num(),
            "--threads" => threads = num(),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().unwrap();

    let mut rng = Rng::new(1);
    let target: Vec<f32> = (0..images * voxels).map(|_| rng.normal() as f32).collect();
    let pred: Vec<f32> = target.iter().map(|&t| (0.5 * t as f64 + rng.normal()) as f32).collect();
    let roi: Vec<i32> = (0..voxels).map(|v| (v * rois / voxels) as i32).collect();
    let levels: Vec<i32> = (0..rois as i32).map(|r| r.min(4)).collect();
    let depth: Vec<f64> = roi.iter().map(|&r| 0.15 * r as f64 + 0.2 * rng.uniform()).collect();
    let nc: Vec<f32> = (0..voxels).map(|_| rng.uniform_range(0.2, 0.8) as f32).collect();
    let brain = Brain {
        responses: Array::zeros(vec![1, voxels]).into(),
        coords: Array::zeros(vec![voxels, 3]),
        roi: roi.clone(),
        noise_ceiling: Some(nc.clone()),
        flat: None,
        hemisphere: None,
        roi_names: (0..rois).map(|r| format!("roi{r}")).collect(),
        roi_levels: levels.clone(),
        stimulus_ids: None,
        subject: None,
    };
    let h = HeldOut::new(&pred, &target, images, voxels).unwrap();
    let (r2, _) = h.scores();
    println!("V = {voxels}, N = {images} held-out images, {rois} ROIs, {threads} threads");

    let t = Instant::now();
    let k = 50;
    for _ in 0..k {
        std::hint::black_box(resampled_scores(&h, &vec![1u32; images]));
    }
    let one = t.elapsed().as_secs_f64() / k as f64;
    println!("per-voxel R² and r of one image resample (one thread): {:.2} ms", 1e3 * one);

    for (label, weighted) in [("unweighted line", false), ("weighted line", true)] {
        let inputs = BootstrapInputs {
            depth: &depth,
            roi: &brain.roi,
            roi_levels: &brain.roi_levels,
            noise_ceiling: Some(&nc),
            heldout: Some(h),
            r2: &r2,
            weighted,
        };
        let cfg = BootstrapConfig { n_resamples: resamples, level: 0.95, seed: 0 };
        let t = Instant::now();
        let rep = bootstrap(&inputs, &cfg).unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("bootstrap, images and voxels, {label}: {resamples} resamples in {s:.2} s ({:.2} ms each)", 1e3 * s / resamples as f64);
        std::hint::black_box(rep);
        let voxels_only = BootstrapInputs { heldout: None, ..inputs };
        let t = Instant::now();
        std::hint::black_box(bootstrap(&voxels_only, &cfg).unwrap());
        let s = t.elapsed().as_secs_f64();
        println!("bootstrap, voxels within ROIs only, {label}: {resamples} resamples in {s:.2} s");
    }
    let t = Instant::now();
    let p = permutation_test(&depth, &roi, &levels, None, &PermutationConfig { n_permutations: permutations, seed: 0 })
        .unwrap()
        .unwrap();
    println!(
        "permutation test: {} {} permutations of {} ROIs in {:.3} s",
        p.n_permutations,
        if p.exact { "(all, exact)" } else { "random" },
        p.n_rois,
        t.elapsed().as_secs_f64()
    );
}
