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
