//! The built-in random network at the default size: adjacent layers are correlated but distinct,
//! the maps are normalised, and it is fast enough to run inside tests.

use std::time::Instant;

use factortopy::data::Array;
use factortopy::synth::network::random_network;
use factortopy::synth::sample::resize_layer;
use factortopy::synth::SynthConfig;

/// Cross-products `AᵀB` of two column-centred `rows × c` sets (f64).
fn cross(a: &[f64], b: &[f64], rows: usize, c: usize) -> Vec<f64> {
    let mut g = vec![0.0; c * c];
    for r in 0..rows {
        let (ar, br) = (&a[r * c..(r + 1) * c], &b[r * c..(r + 1) * c]);
        for i in 0..c {
            let x = ar[i];
            for (gij, &y) in g[i * c..(i + 1) * c].iter_mut().zip(br) {
                *gij += x * y;
            }
        }
    }
    g
}

fn centred(a: &[f32], rows: usize, c: usize) -> Vec<f64> {
    let mut m = vec![0.0f64; c];
    for r in 0..rows {
        for j in 0..c {
            m[j] += a[r * c + j] as f64;
        }
    }
    m.iter_mut().for_each(|v| *v /= rows as f64);
    (0..rows * c).map(|i| a[i] as f64 - m[i % c]).collect()
}

/// Solves `S·X = B` for symmetric positive definite `S` (c×c) by Cholesky; `B` is c×c.
fn spd_solve(s: &[f64], b: &[f64], c: usize) -> Vec<f64> {
    let mut l = vec![0.0; c * c];
    for i in 0..c {
        for j in 0..=i {
            let mut v = s[i * c + j];
            for k in 0..j {
                v -= l[i * c + k] * l[j * c + k];
            }
            l[i * c + j] = if i == j { v.sqrt() } else { v / l[j * c + j] };
        }
    }
    let mut x = b.to_vec();
    for col in 0..c {
        for i in 0..c {
            let mut v = x[i * c + col];
            for k in 0..i {
                v -= l[i * c + k] * x[k * c + col];
            }
            x[i * c + col] = v / l[i * c + i];
        }
        for i in (0..c).rev() {
            let mut v = x[i * c + col];
            for k in i + 1..c {
                v -= l[k * c + i] * x[k * c + col];
            }
            x[i * c + col] = v / l[i * c + i];
        }
    }
    x
}

/// How two layers relate, from their grams: linear CKA, and the correlation `√R²` of the best
/// linear prediction of every channel of `y` from all channels of `x` at the same sample (the
/// multivariate regression R², pooled over channels).
fn relation(x: &[f64], y: &[f64], rows: usize, c: usize) -> (f64, f64) {
    let (xx, yy, xy) = (
        cross(x, x, rows, c),
        cross(y, y, rows, c),
        cross(x, y, rows, c),
    );
    let fro2 = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>();
    let cka = fro2(&xy) / (fro2(&xx).sqrt() * fro2(&yy).sqrt());
    let beta = spd_solve(&xx, &xy, c);
    // Explained sum of squares = tr(XYᵀ · β) = Σ_ij xy[i][j]·β[i][j].
    let explained: f64 = xy.iter().zip(&beta).map(|(a, b)| a * b).sum();
    let total: f64 = (0..c).map(|i| yy[i * c + i]).sum();
    (cka, (explained / total).sqrt())
}

/// `[N, C, G, G]` → rows of (image, cell) with C columns.
fn cells(a: &Array) -> Vec<f32> {
    let (n, c, gg) = (a.shape[0], a.shape[1], a.shape[2] * a.shape[3]);
    let mut out = vec![0.0; n * gg * c];
    for img in 0..n {
        for ch in 0..c {
            for k in 0..gg {
                out[(img * gg + k) * c + ch] = a.data[(img * c + ch) * gg + k];
            }
        }
    }
    out
}

#[test]
fn default_network_layers_are_correlated_but_distinct() {
    let d = SynthConfig::default();
    let t = Instant::now();
    let f = random_network(d.n_images, d.n_layers, d.width, d.grid, 0).unwrap();
    let t_net = t.elapsed().as_secs_f64();
    let (brain, truth) = factortopy::synth::plant(&f, &d).unwrap();
    eprintln!(
        "default size: random network {t_net:.2} s, network + planting {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(brain.responses.shape, vec![d.n_images, d.n_voxels]);
    assert_eq!(truth.n_voxels(), d.n_voxels);
    let sides: Vec<usize> = f.layers.iter().map(|l| l.local.shape[2]).collect();
    assert_eq!(sides, vec![16, 16, 8, 8, 8, 8]);

    let g = d.grid;
    // The first 500 images' cells are plenty to estimate 64×64 cross-products.
    let rows = 500 * g * g;
    let maps: Vec<Vec<f64>> = f
        .layers
        .iter()
        .map(|l| {
            centred(
                &cells(&resize_layer(&l.local, g).unwrap())[..rows * d.width],
                rows,
                d.width,
            )
        })
        .collect();
    let globals: Vec<Vec<f64>> = f
        .layers
        .iter()
        .map(|l| centred(&l.global.as_ref().unwrap().data, d.n_images, d.width))
        .collect();
    for i in 0..d.n_layers - 1 {
        let (cka, r) = relation(&maps[i], &maps[i + 1], rows, d.width);
        let (gcka, gr) = relation(&globals[i], &globals[i + 1], d.n_images, d.width);
        eprintln!(
            "layers {i}-{}: local r {r:.3} (CKA {cka:.3}), global r {gr:.3} (CKA {gcka:.3})",
            i + 1
        );
        assert!(
            (0.3..0.9).contains(&r),
            "layers {i}, {}: local correlation {r}",
            i + 1
        );
        assert!(
            (0.3..0.9).contains(&gr),
            "layers {i}, {}: global correlation {gr}",
            i + 1
        );
        assert!(cka > 0.05 && cka < 0.9, "layers {i}, {}: CKA {cka}", i + 1);
    }
    // Layers two apart share less than neighbours: each layer adds information of its own.
    let (_, near) = relation(&maps[2], &maps[3], rows, d.width);
    let (_, far) = relation(&maps[2], &maps[4], rows, d.width);
    eprintln!("layers 2-4: local r {far:.3}");
    assert!(far < near, "two apart {far} vs adjacent {near}");
}

#[test]
fn same_seed_same_network_different_seed_different() {
    let a = random_network(12, 3, 4, 2, 9).unwrap();
    let b = random_network(12, 3, 4, 2, 9).unwrap();
    let c = random_network(12, 3, 4, 2, 10).unwrap();
    for l in 0..3 {
        assert_eq!(a.layers[l].local, b.layers[l].local);
        assert_eq!(a.layers[l].global, b.layers[l].global);
        assert_ne!(a.layers[l].local, c.layers[l].local);
    }
}
