//! The generator plants responses with its own implementation of the model's two sampling rules
//! (DESIGN §3.1 grid resampling, §3.4 bilinear taps), so a convention error on either side is
//! not hidden by shared code; this test checks that the two implementations agree.

use factortopy::data::Array;
use factortopy::model::readout::{taps, OUTSIDE};
use factortopy::model::resample::{resample, Resample};
use factortopy::rng::Rng;
use factortopy::synth::sample::{bilinear_taps, resize_layer};

#[test]
fn grid_resampling_agrees_with_the_model() {
    let mut rng = Rng::new(3);
    for (h, w, g) in [
        (16, 16, 8),
        (7, 9, 8),
        (4, 4, 8),
        (2, 3, 5),
        (8, 8, 8),
        (1, 1, 3),
        (14, 14, 7),
    ] {
        let (n, c) = (2, 3);
        let data = (0..n * c * h * w).map(|_| rng.normal() as f32).collect();
        let a = Array::new(vec![n, c, h, w], data).unwrap();
        let ours = resize_layer(&a, g).unwrap();
        let theirs = resample(&a, g, Resample::Bilinear).unwrap();
        assert_eq!(ours.shape, theirs.shape);
        for (i, (x, y)) in ours.data.iter().zip(&theirs.data).enumerate() {
            assert!(
                (x - y).abs() < 1e-5,
                "{h}x{w} -> {g}: index {i}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn bilinear_taps_agree_with_the_model() {
    let mut rng = Rng::new(4);
    for g in [1, 2, 3, 8] {
        for _ in 0..500 {
            // Beyond [-1, 1] too, where zero padding decides.
            let x = rng.uniform_range(-1.3, 1.3) as f32;
            let y = rng.uniform_range(-1.3, 1.3) as f32;
            let ours = bilinear_taps(x, y, g, g);
            let theirs = taps(x, y, g);
            let mut dense_ours = vec![0.0f32; g * g];
            let mut dense_theirs = vec![0.0f32; g * g];
            for &(i, wt) in &ours {
                dense_ours[i] += wt;
            }
            for t in 0..4 {
                if theirs.idx[t] != OUTSIDE {
                    dense_theirs[theirs.idx[t]] += theirs.w[t];
                }
            }
            for (a, b) in dense_ours.iter().zip(&dense_theirs) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "g {g} at ({x}, {y}): {dense_ours:?} vs {dense_theirs:?}"
                );
            }
        }
    }
}

/// A receptive field of one grid cell centred on a cell is what the model's area resampling
/// (`--resample area`, and `auto` on shrinking maps) puts in that cell: the generator's window
/// weights and the model's area weights agree on every axis length, integer ratio or not.
#[test]
fn one_cell_receptive_field_is_the_area_resampled_cell() {
    use factortopy::model::resample::area_weights;
    use factortopy::synth::sample::box_window;
    for g in [1usize, 3, 4, 8] {
        for n in [g, 2 * g, 7, 13, 56, 112] {
            if n < g {
                continue;
            }
            let area = area_weights(n, g);
            for (o, cell) in area.iter().enumerate() {
                let centre = ((2 * o + 1) as f64 / g as f64 - 1.0) as f32;
                let window = box_window(centre, 1.0 / g as f64, n);
                let dense = |taps: &[(usize, f64)]| {
                    let mut d = vec![0.0f64; n];
                    taps.iter().for_each(|&(i, w)| d[i] += w);
                    d
                };
                let a: Vec<(usize, f64)> = cell.iter().map(|&(i, w)| (i, w as f64)).collect();
                for (i, (x, y)) in dense(&a).iter().zip(dense(&window)).enumerate() {
                    assert!((x - y).abs() < 1e-6, "n {n} → g {g}, cell {o}, pixel {i}: {x} vs {y}");
                }
            }
        }
    }
}
