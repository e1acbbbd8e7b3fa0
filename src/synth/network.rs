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

use pulp::Arch;
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

/// A tanh for the network's nonlinearity: the (7, 6) Padé approximant, within 1e-6 of tanh for
/// |x| < 3 and 1e-4 everywhere after clamping. Unlike libm's `tanh` it vectorises (the
/// nonlinearity runs on ~10⁸ values) and gives the same bits on every platform.
#[inline(always)]
fn soft_tanh(x: f32) -> f32 {
    let x = x.clamp(-4.97, 4.97);
    let x2 = x * x;
    let p = x * (135_135.0 + x2 * (17_325.0 + x2 * (378.0 + x2)));
    let q = 135_135.0 + x2 * (62_370.0 + x2 * (3_150.0 + x2 * 28.0));
    (p / q).clamp(-1.0, 1.0)
}

/// 3×3 box blur of each `side×side` plane in place, averaging over the in-bounds neighbours so
/// the border is not darkened. Separable: the in-bounds mean of a rectangle is a product of 1-D
/// in-bounds means. Written as whole-row slice operations so it vectorises.
#[inline(always)]
fn blur(planes: &mut [f32], side: usize, tmp: &mut Vec<f32>) {
    if side < 2 {
        return;
    }
    let plane = side * side;
    tmp.resize(plane, 0.0);
    const THIRD: f32 = 1.0 / 3.0;
    for p in planes.chunks_exact_mut(plane) {
        for (row, out) in p.chunks_exact(side).zip(tmp.chunks_exact_mut(side)) {
            out[0] = (row[0] + row[1]) * 0.5;
            out[side - 1] = (row[side - 2] + row[side - 1]) * 0.5;
            for (((o, &a), &b), &c) in out[1..side - 1]
                .iter_mut()
                .zip(&row[..side - 2])
                .zip(&row[1..side - 1])
                .zip(&row[2..])
            {
                *o = (a + b + c) * THIRD;
            }
        }
        for y in 0..side {
            let out = &mut p[y * side..(y + 1) * side];
            let mid = &tmp[y * side..(y + 1) * side];
            if y == 0 || y == side - 1 {
                let other = if y == 0 {
                    &tmp[side..2 * side]
                } else {
                    &tmp[(side - 2) * side..(side - 1) * side]
                };
                // Same summation order as the interior (upper row first) for a uniform rule.
                let (first, second) = if y == 0 { (mid, other) } else { (other, mid) };
                for ((o, &a), &b) in out.iter_mut().zip(first).zip(second) {
                    *o = (a + b) * 0.5;
                }
            } else {
                let up = &tmp[(y - 1) * side..y * side];
                let down = &tmp[(y + 1) * side..(y + 2) * side];
                for (((o, &a), &b), &c) in out.iter_mut().zip(up).zip(mid).zip(down) {
                    *o = (a + b + c) * THIRD;
                }
            }
        }
    }
}

/// 2×2 average pooling of each `side×side` plane into `(side/2)×(side/2)`.
#[inline(always)]
fn pool2(src: &[f32], side: usize, dst: &mut [f32]) {
    let half = side / 2;
    for (s, d) in src
        .chunks_exact(side * side)
        .zip(dst.chunks_exact_mut(half * half))
    {
        for y in 0..half {
            let r0 = &s[2 * y * side..(2 * y + 1) * side];
            let r1 = &s[(2 * y + 1) * side..(2 * y + 2) * side];
            for x in 0..half {
                d[y * half + x] =
                    0.25 * ((r0[2 * x] + r0[2 * x + 1]) + (r1[2 * x] + r1[2 * x + 1]));
            }
        }
    }
}

/// `z = M·src` for one image: `mt` is `Mᵀ` (`C×C`, input-major), `src` and `z` are `C` planes
/// of `p` values. Blocks of 8 output channels × 8 positions accumulate in registers (this is
/// the network's hot loop); every output sums its inputs in channel order starting from zero on
/// every path, so the bits do not depend on the blocking or on how the loop is vectorised.
#[inline(always)]
fn channel_mix(mt: &[f32], src: &[f32], c: usize, p: usize, z: &mut [f32]) {
    const B: usize = 8;
    let single = |z: &mut [f32], co: usize, x: usize| {
        let mut a = 0.0f32;
        for ci in 0..c {
            a += mt[ci * c + co] * src[ci * p + x];
        }
        z[co * p + x] = a;
    };
    let mut co = 0;
    while co + B <= c {
        let mut x0 = 0;
        while x0 + B <= p {
            let mut acc = [[0.0f32; B]; B];
            for ci in 0..c {
                let s: &[f32; B] = src[ci * p + x0..ci * p + x0 + B].try_into().expect("tile");
                let w: &[f32; B] = mt[ci * c + co..ci * c + co + B].try_into().expect("tile");
                for r in 0..B {
                    for k in 0..B {
                        acc[r][k] += w[r] * s[k];
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                z[(co + r) * p + x0..(co + r) * p + x0 + B].copy_from_slice(a);
            }
            x0 += B;
        }
        for x in x0..p {
            for r in 0..B {
                single(z, co + r, x);
            }
        }
        co += B;
    }
    for co in co..c {
        for x in 0..p {
            single(z, co, x);
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
                    // Four independent accumulators: a fixed order that still pipelines.
                    let (mut s, mut s2) = ([0.0f64; 4], [0.0f64; 4]);
                    let mut quads = ch.chunks_exact(4);
                    for q in quads.by_ref() {
                        for k in 0..4 {
                            let v = q[k] as f64;
                            s[k] += v;
                            s2[k] += v * v;
                        }
                    }
                    for (k, &v) in quads.remainder().iter().enumerate() {
                        s[k] += v as f64;
                        s2[k] += v as f64 * v as f64;
                    }
                    (
                        (s[0] + s[1]) + (s[2] + s[3]),
                        (s2[0] + s2[1]) + (s2[2] + s2[3]),
                    )
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

/// Per-channel `(scale, shift)` with `(x − shift)·scale` standardising; a constant channel maps
/// to zero rather than NaN.
fn standardiser(data: &[f32], c: usize, p: usize) -> (Vec<f32>, Vec<f32>) {
    let (mean, sd) = channel_stats(data, c, p);
    let scale = sd
        .iter()
        .map(|&s| if s > 1e-12 { (1.0 / s) as f32 } else { 0.0 })
        .collect();
    (scale, mean.iter().map(|&m| m as f32).collect())
}

/// Per-channel zero mean, unit variance over images and positions, in place over `[N, C, P]`.
fn normalise_channels(data: &mut [f32], c: usize, p: usize) {
    let (scale, shift) = standardiser(data, c, p);
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
    let arch = Arch::new();
    out.par_chunks_mut(c * side * side)
        .enumerate()
        .for_each_init(Vec::new, |tmp, (img, buf)| {
            let mut rng = Rng::derive(seed, &format!("{label}.{img}"));
            fill_noise(&mut rng, buf);
            arch.dispatch(|| blur(buf, side, tmp));
        });
    out
}

/// `blur(tanh(M·x))`, pooled to `out_side` when it is half of `in_side`, for every image.
fn mix(prev: &[f32], c: usize, in_side: usize, out_side: usize, m: &[f32]) -> Vec<f32> {
    let n = prev.len() / (c * in_side * in_side);
    let mt: Vec<f32> = (0..c * c).map(|i| m[(i % c) * c + i / c]).collect();
    let pin = in_side * in_side;
    let pout = out_side * out_side;
    let mut out = vec![0.0f32; n * c * pout];
    // Compiled for the best instruction set present; no FMA contraction happens, so the bits
    // do not depend on which one that is.
    let arch = Arch::new();
    out.par_chunks_mut(c * pout)
        .zip(prev.par_chunks(c * pin))
        .for_each_init(
            || (vec![0.0f32; c * pin], Vec::new()),
            |(z, tmp), (dst, src)| {
                arch.dispatch(|| {
                    channel_mix(&mt, src, c, pin, z);
                    z.iter_mut().for_each(|v| *v = soft_tanh(*v));
                    blur(z, in_side, tmp);
                    if out_side == in_side {
                        dst.copy_from_slice(z);
                    } else {
                        pool2(z, in_side, dst);
                    }
                })
            },
        );
    out
}

/// The built-in random network's features on `n_images` random "images": `n_layers` layers of
/// `width` channels, the first third at 2·`grid` per side and the rest at `grid`, each with an
/// explicit global token.
pub fn random_network(
    n_images: usize,
    n_layers: usize,
    width: usize,
    grid: usize,
    seed: u64,
) -> Result<Features> {
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
        let m: Vec<f32> = (0..c * c)
            .map(|_| (mrng.normal() * inv_sqrt_c) as f32)
            .collect();
        let prev: &[f32] = match layers.last() {
            None => &input,
            Some(l) => &l.local.data,
        };
        let mut h = mix(prev, c, side, out_side, &m);
        let fresh = smooth_noise(n, c, out_side, seed, &format!("synth.network.fresh.{i}"));
        // Both parts standardised before mixing, so α sets their shares of the variance.
        let (hs, hm) = standardiser(&h, c, p);
        let (fs, fm) = standardiser(&fresh, c, p);
        h.par_chunks_mut(c * p)
            .zip(fresh.par_chunks(c * p))
            .for_each(|(hi, fi)| {
                for (ch, (hp, fp)) in hi.chunks_exact_mut(p).zip(fi.chunks_exact(p)).enumerate() {
                    let (a, b) = (ALPHA * hs[ch], beta * fs[ch]);
                    for (x, &y) in hp.iter_mut().zip(fp) {
                        *x = a * (*x - hm[ch]) + b * (y - fm[ch]);
                    }
                }
            });
        drop(fresh);
        normalise_channels(&mut h, c, p);

        let mut global: Vec<f32> = h
            .par_chunks(c * p)
            .flat_map_iter(|img| {
                img.chunks(p)
                    .map(move |pl| pl.iter().sum::<f32>() / p as f32)
            })
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
    fn soft_tanh_is_tanh() {
        for i in -2000..=2000 {
            let x = i as f32 / 100.0;
            assert!((soft_tanh(x) - x.tanh()).abs() < 1.1e-4, "{x}");
        }
    }

    #[test]
    fn blur_is_the_in_bounds_mean() {
        let side = 5;
        let src: Vec<f32> = (0..side * side).map(|i| ((i * 37) % 11) as f32).collect();
        let mut got = src.clone();
        blur(&mut got, side, &mut Vec::new());
        for y in 0..side {
            for x in 0..side {
                let (mut s, mut k) = (0.0, 0.0);
                for yy in y.saturating_sub(1)..=(y + 1).min(side - 1) {
                    for xx in x.saturating_sub(1)..=(x + 1).min(side - 1) {
                        s += src[yy * side + xx];
                        k += 1.0;
                    }
                }
                assert!((got[y * side + x] - s / k).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn channel_mix_is_a_matrix_product() {
        // Sizes that exercise full tiles and both remainders.
        for (c, p) in [(6, 3), (8, 8), (19, 21), (64, 64)] {
            let m: Vec<f32> = (0..c * c).map(|i| (i as f32 * 0.37).sin()).collect();
            let mt: Vec<f32> = (0..c * c).map(|i| m[(i % c) * c + i / c]).collect();
            let src: Vec<f32> = (0..c * p).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut z = vec![9.0; c * p];
            channel_mix(&mt, &src, c, p, &mut z);
            for co in 0..c {
                for x in 0..p {
                    let mut want = 0.0f32;
                    for ci in 0..c {
                        want += m[co * c + ci] * src[ci * p + x];
                    }
                    assert_eq!(z[co * p + x].to_bits(), want.to_bits(), "c {c} p {p}");
                }
            }
        }
    }

    #[test]
    fn shapes_and_normalisation() {
        let f = random_network(20, 4, 5, 3, 1).unwrap();
        let sides: Vec<usize> = f.layers.iter().map(|l| l.local.shape[2]).collect();
        assert_eq!(sides, vec![6, 6, 3, 3]);
        for l in &f.layers {
            let (mean, sd) = channel_stats(&l.local.data, 5, l.local.shape[2] * l.local.shape[3]);
            assert!(
                mean.iter().all(|m| m.abs() < 1e-4) && sd.iter().all(|s| (s - 1.0).abs() < 1e-3)
            );
            assert_eq!(l.global.as_ref().unwrap().shape, vec![20, 5]);
        }
    }
}
