//! A fixed random multi-layer "vision network" whose features stand in for a real network's
//! (DESIGN §8). What matters for checking the method is the correlation structure, not realism:
//! adjacent layers must be correlated, as in real networks, so picking the right layer is a real
//! inference problem, yet every layer must carry information of its own, so the right layer is
//! identifiable at all. Each layer is therefore a nonlinear function of the previous one mixed
//! with fresh spatially smooth noise:
//!
//! `h_i = normalise(α·normalise(mix_i(h_{i−1})) + √(1−α²)·normalise(fresh_i))`
//!
//! with `mix_i` = random channel mixing, tanh, 3×3 blur (then 2×2 average pooling where the
//! spatial size halves) and `normalise` = per-channel zero mean, unit variance over images and
//! positions. The first third of the layers is 2G×2G and the rest G×G, so the grid resampling of
//! DESIGN §3.1 is exercised.
//!
//! All randomness comes from per-(layer, image) streams derived from the seed, so the output does
//! not depend on the number of threads.

use rayon::prelude::*;

use crate::data::{Array, Features, LayerFeatures};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Weight of the previous layer in each layer (its correlation with the previous layer before
/// the nonlinearity and blur weaken it).
pub const ALPHA: f32 = 0.6;
/// Weight of the layer-specific CLS-like component in the global token; small, so the global
/// token mostly summarises its own layer's map, as a CLS token does.
pub const CLS_WEIGHT: f64 = 0.3;

/// Spatial side of layer `i` of `n_layers` for planting grid `grid`.
pub fn layer_side(i: usize, n_layers: usize, grid: usize) -> usize {
    if i < n_layers.div_ceil(3) {
        2 * grid
    } else {
        grid
    }
}

/// Fills `buf` with approximately standard normal values: the sum of four uniforms from one
/// 64-bit draw, rescaled. Every use is followed by a 3×3 blur (a sum of 9 such values, i.e.
/// 36 uniforms), which makes the maps Gaussian to within any precision that matters here, at a
/// small fraction of the cost of Box–Muller on ~10⁸ values.
fn fill_noise(rng: &mut Rng, buf: &mut [f32]) {
    const SCALE: f32 = 1.732_050_8 / 65_536.0; // √3 / 2^16: sum of 4 U(0,1) has variance 1/3
    for v in buf.iter_mut() {
        let r = rng.next_u64();
        let s = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        *v = (s as f32 - 2.0 * 65_535.0) * SCALE;
    }
}

/// 3×3 box blur of each `side×side` plane in place, averaging over the in-bounds neighbours so
/// the border is not darkened. Separable: the in-bounds mean of a rectangle is a product of 1-D
/// in-bounds means.
fn blur(planes: &mut [f32], side: usize, tmp: &mut Vec<f32>) {
    let plane = side * side;
    tmp.resize(plane, 0.0);
    let inv = |lo: usize, hi: usize| 1.0 / (hi - lo + 1) as f32;
    for p in planes.chunks_mut(plane) {
        for y in 0..side {
            let row = &p[y * side..(y + 1) * side];
            for x in 0..side {
                let (lo, hi) = (x.saturating_sub(1), (x + 1).min(side - 1));
                tmp[y * side + x] = row[lo..=hi].iter().sum::<f32>() * inv(lo, hi);
            }
        }
        for y in 0..side {
            let (lo, hi) = (y.saturating_sub(1), (y + 1).min(side - 1));
            let k = inv(lo, hi);
            for x in 0..side {
                let mut s = 0.0;
                for yy in lo..=hi {
                    s += tmp[yy * side + x];
                }
                p[y * side + x] = s * k;
            }
        }
    }
}

/// 2×2 average pooling of each `side×side` plane into `(side/2)×(side/2)`.
fn pool2(src: &[f32], side: usize, dst: &mut [f32]) {
    let half = side / 2;
    for (s, d) in src.chunks(side * side).zip(dst.chunks_mut(half * half)) {
        for y in 0..half {
            for x in 0..half {
                let a = s[2 * y * side + 2 * x] + s[2 * y * side + 2 * x + 1];
                let b = s[(2 * y + 1) * side + 2 * x] + s[(2 * y + 1) * side + 2 * x + 1];
                d[y * half + x] = 0.25 * (a + b);
            }
        }
    }
}

/// Per-channel mean and standard deviation of `[N, C, P]` data over images and positions.
/// Partial sums are per image in f64 and folded in image order, so the result is the same for
/// any thread count.
fn channel_stats(data: &[f32], c: usize, p: usize) -> (Vec<f64>, Vec<f64>) {
    let partial: Vec<Vec<(f64, f64)>> = data
        .par_chunks(c * p)
        .map(|img| {
            img.chunks(p)
                .map(|ch| {
                    let s: f64 = ch.iter().map(|&v| v as f64).sum();
                    let s2: f64 = ch.iter().map(|&v| (v as f64) * (v as f64)).sum();
                    (s, s2)
                })
                .collect()
        })
        .collect();
    let count = (data.len() / c) as f64;
    let mut mean = vec![0.0; c];
    let mut sd = vec![0.0; c];
    for ch in 0..c {
        let (mut s, mut s2) = (0.0, 0.0);
        for img in &partial {
            s += img[ch].0;
            s2 += img[ch].1;
        }
        let m = s / count;
        mean[ch] = m;
        sd[ch] = (s2 / count - m * m).max(0.0).sqrt();
    }
    (mean, sd)
}

/// Per-channel zero mean, unit variance over images and positions, in place over `[N, C, P]`.
/// A constant channel becomes zero rather than NaN.
fn normalise_channels(data: &mut [f32], c: usize, p: usize) {
    let (mean, sd) = channel_stats(data, c, p);
    let scale: Vec<f32> = sd.iter().map(|&s| if s > 1e-12 { (1.0 / s) as f32 } else { 0.0 }).collect();
    let shift: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    data.par_chunks_mut(c * p).for_each(|img| {
        for (ch, plane) in img.chunks_mut(p).enumerate() {
            for v in plane.iter_mut() {
                *v = (*v - shift[ch]) * scale[ch];
            }
        }
    });
}

/// Smoothed noise maps `[N, C, side, side]` from per-image streams labelled `label`.
fn smooth_noise(n: usize, c: usize, side: usize, seed: u64, label: &str) -> Vec<f32> {
    let mut out = vec![0.0f32; n * c * side * side];
    out.par_chunks_mut(c * side * side).enumerate().for_each_init(Vec::new, |tmp, (img, buf)| {
        let mut rng = Rng::derive(seed, &format!("{label}.{img}"));
        fill_noise(&mut rng, buf);
        blur(buf, side, tmp);
    });
    out
}

/// `blur(tanh(M·x))`, pooled to `out_side` when it is half of `in_side`, for every image.
fn mix(prev: &[f32], c: usize, in_side: usize, out_side: usize, m: &[f32]) -> Vec<f32> {
    let n = prev.len() / (c * in_side * in_side);
    let pin = in_side * in_side;
    let pout = out_side * out_side;
    let mut out = vec![0.0f32; n * c * pout];
    out.par_chunks_mut(c * pout).zip(prev.par_chunks(c * pin)).for_each_init(
        || (vec![0.0f32; c * pin], Vec::new()),
        |(z, tmp), (dst, src)| {
            z.iter_mut().for_each(|v| *v = 0.0);
            for (co, zrow) in z.chunks_mut(pin).enumerate() {
                for (ci, srow) in src.chunks(pin).enumerate() {
                    let w = m[co * c + ci];
                    for (a, &b) in zrow.iter_mut().zip(srow.iter()) {
                        *a += w * b;
                    }
                }
            }
            z.iter_mut().for_each(|v| *v = v.tanh());
            blur(z, in_side, tmp);
            if out_side == in_side {
                dst.copy_from_slice(z);
            } else {
                pool2(z, in_side, dst);
            }
        },
    );
    out
}

/// The built-in random network's features on `n_images` random "images": `n_layers` layers of
/// `width` channels, the first third at 2·`grid` per side and the rest at `grid`, each with an
/// explicit global token.
pub fn random_network(n_images: usize, n_layers: usize, width: usize, grid: usize, seed: u64) -> Result<Features> {
    if n_images == 0 || n_layers == 0 || width == 0 || grid == 0 {
        return Err(Error::invalid(format!(
            "random network needs positive sizes, got images {n_images}, layers {n_layers}, width {width}, grid {grid}"
        )));
    }
    let (n, c) = (n_images, width);
    let beta = (1.0 - ALPHA * ALPHA).sqrt();
    let mut side = layer_side(0, n_layers, grid);
    let mut input = smooth_noise(n, c, side, seed, "synth.network.input");
    normalise_channels(&mut input, c, side * side);
    let mut layers: Vec<LayerFeatures> = Vec::with_capacity(n_layers);
    for i in 0..n_layers {
        let out_side = layer_side(i, n_layers, grid);
        let p = out_side * out_side;
        let mut mrng = Rng::derive(seed, &format!("synth.network.mix.{i}"));
        let inv_sqrt_c = 1.0 / (c as f64).sqrt();
        let m: Vec<f32> = (0..c * c).map(|_| (mrng.normal() * inv_sqrt_c) as f32).collect();
        let prev: &[f32] = match layers.last() {
            None => &input,
            Some(l) => &l.local.data,
        };
        let mut h = mix(prev, c, side, out_side, &m);
        normalise_channels(&mut h, c, p);
        let mut fresh = smooth_noise(n, c, out_side, seed, &format!("synth.network.fresh.{i}"));
        normalise_channels(&mut fresh, c, p);
        h.par_iter_mut().zip(fresh.par_iter()).for_each(|(a, &b)| *a = ALPHA * *a + beta * b);
        drop(fresh);
        normalise_channels(&mut h, c, p);

        let mut global: Vec<f32> = h
            .par_chunks(c * p)
            .flat_map_iter(|img| img.chunks(p).map(move |pl| pl.iter().sum::<f32>() / p as f32))
            .collect();
        normalise_channels(&mut global, c, 1);
        let mut grng = Rng::derive(seed, &format!("synth.network.cls.{i}"));
        let keep = (1.0 - CLS_WEIGHT * CLS_WEIGHT).sqrt();
        for g in global.iter_mut() {
            *g = (keep * *g as f64 + CLS_WEIGHT * grng.normal()) as f32;
        }
        normalise_channels(&mut global, c, 1);

        layers.push(LayerFeatures {
            local: Array::new(vec![n, c, out_side, out_side], h)?,
            global: Some(Array::new(vec![n, c], global)?),
        });
        if i == 0 {
            input = Vec::new();
        }
        side = out_side;
    }
    Ok(Features {
        model: "synthetic".to_string(),
        layer_names: (0..n_layers).map(|i| format!("layer{i}")).collect(),
        stimulus_ids: None,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_unit_variance() {
        let mut rng = Rng::new(5);
        let mut buf = vec![0.0f32; 200_000];
        fill_noise(&mut rng, &mut buf);
        let m = buf.iter().map(|&v| v as f64).sum::<f64>() / buf.len() as f64;
        let v = buf.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / buf.len() as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.02, "mean {m} var {v}");
    }

    #[test]
    fn shapes_and_normalisation() {
        let f = random_network(20, 4, 5, 3, 1).unwrap();
        let sides: Vec<usize> = f.layers.iter().map(|l| l.local.shape[2]).collect();
        assert_eq!(sides, vec![6, 6, 3, 3]);
        for l in &f.layers {
            let (mean, sd) = channel_stats(&l.local.data, 5, l.local.shape[2] * l.local.shape[3]);
            assert!(mean.iter().all(|m| m.abs() < 1e-4) && sd.iter().all(|s| (s - 1.0).abs() < 1e-3));
            assert_eq!(l.global.as_ref().unwrap().shape, vec![20, 5]);
        }
    }
}
