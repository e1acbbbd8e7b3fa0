//! Colour maps for the pictures of DESIGN §7.

use super::canvas::Rgb;

fn lerp(a: Rgb, b: Rgb, t: f64) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    let m = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

/// Piecewise-linear interpolation through evenly spaced anchors; NaN maps to the first anchor.
fn through(anchors: &[Rgb], t: f64) -> Rgb {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let seg = t * (anchors.len() - 1) as f64;
    let i = (seg.floor() as usize).min(anchors.len() - 2);
    lerp(anchors[i], anchors[i + 1], seg - i as f64)
}

/// Blue (0) → white (0.5) → red (1), the anchors of ColorBrewer's RdBu: a diverging map, so the
/// middle of the network reads as neutral and early/late layers as opposite hues.
pub fn diverging(t: f64) -> Rgb {
    const A: [Rgb; 5] = [
        [33, 102, 172],
        [146, 197, 222],
        [247, 247, 247],
        [244, 165, 130],
        [178, 24, 43],
    ];
    through(&A, t)
}

/// Viridis-like sequential map on [0, 1] (dark purple → green → yellow), perceptually ordered
/// and readable in greyscale.
pub fn sequential(t: f64) -> Rgb {
    const A: [Rgb; 9] = [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ];
    through(&A, t)
}

/// Scales the colour toward black by `amount` in [0, 1] (0 = unchanged, 1 = black).
pub fn darken(c: Rgb, amount: f64) -> Rgb {
    let k = 1.0 - amount.clamp(0.0, 1.0);
    [
        (c[0] as f64 * k).round() as u8,
        (c[1] as f64 * k).round() as u8,
        (c[2] as f64 * k).round() as u8,
    ]
}

/// HSV (h in degrees, s and v in [0, 1]) to RGB.
fn hsv(h: f64, s: f64, v: f64) -> Rgb {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let q = |u: f64| ((u + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [q(r), q(g), q(b)]
}

/// 2-D colour wheel for a location (x, y) in [−1, 1]²: hue = direction from the image centre,
/// saturation = distance from it (white at the centre, full colour at radius ≥ 1).
/// `y` grows downward (image rows), so "up" in the image is hue 90° (yellow-green).
pub fn wheel(x: f64, y: f64) -> Rgb {
    let (x, y) = (
        if x.is_finite() { x } else { 0.0 },
        if y.is_finite() { y } else { 0.0 },
    );
    let r = (x * x + y * y).sqrt().min(1.0);
    let angle = (-y).atan2(x).to_degrees();
    hsv(angle, r, 1.0)
}

/// Inverse of [`wheel`]: the direction (degrees, image "up" = 90°) and distance from the centre
/// that a colour stands for; `None` for colours off the wheel (not at full brightness). Lets
/// tests and users read a location back from a space map's pixels.
pub fn wheel_inverse(c: Rgb) -> Option<(f64, f64)> {
    let (r, g, b) = (c[0] as f64 / 255.0, c[1] as f64 / 255.0, c[2] as f64 / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    if max < 0.98 {
        return None;
    }
    let delta = max - min;
    let sat = delta / max;
    if delta <= 0.0 {
        return Some((0.0, 0.0));
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    Some((h * 60.0, sat))
}

/// Distinct colours for chart series (the Tableau 10 palette), cycling after ten.
pub fn categorical(i: usize) -> Rgb {
    const P: [Rgb; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ];
    P[i % P.len()]
}

/// `k` colours that stay apart from each other and from the near-black map background: for
/// k ≤ 20 a fixed list of 20 distinct colours (Trubetskoy's, with white for navy, which vanishes
/// on black); beyond, hues at the golden angle with alternating brightness.
pub fn distinct(i: usize, k: usize) -> Rgb {
    const P: [Rgb; 20] = [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [67, 99, 216],
        [245, 130, 49],
        [145, 30, 180],
        [66, 212, 244],
        [240, 50, 230],
        [191, 239, 69],
        [250, 190, 212],
        [70, 153, 144],
        [220, 190, 255],
        [154, 99, 36],
        [255, 250, 200],
        [128, 0, 0],
        [170, 255, 195],
        [128, 128, 0],
        [255, 216, 177],
        [255, 255, 255],
        [169, 169, 169],
    ];
    if k <= P.len() {
        P[i % P.len()]
    } else {
        hsv(i as f64 * 137.508, if i % 3 == 2 { 0.45 } else { 0.85 }, if i % 2 == 0 { 1.0 } else { 0.7 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_middle() {
        assert_eq!(diverging(0.0), [33, 102, 172]);
        assert_eq!(diverging(0.5), [247, 247, 247]);
        assert_eq!(diverging(1.0), [178, 24, 43]);
        assert_eq!(diverging(-3.0), diverging(0.0));
        assert_eq!(sequential(1.0), [253, 231, 37]);
        assert_eq!(darken([200, 100, 50], 0.5), [100, 50, 25]);
        assert_eq!(darken([200, 100, 50], 0.0), [200, 100, 50]);
        assert_eq!(wheel(0.0, 0.0), [255, 255, 255]);
        assert_eq!(wheel(1.0, 0.0), [255, 0, 0]);
        assert_ne!(wheel(-1.0, 0.0), wheel(1.0, 0.0));
        assert_ne!(categorical(0), categorical(1));
        for &(x, y) in &[(0.9, 0.0), (0.0, -0.7), (-0.5, 0.5), (0.3, 0.6), (-0.2, -0.9)] {
            let (angle, r) = wheel_inverse(wheel(x, y)).unwrap();
            let want = (-y).atan2(x).to_degrees().rem_euclid(360.0);
            let d = (angle - want + 540.0).rem_euclid(360.0) - 180.0;
            assert!(d.abs() < 1.5, "({x}, {y}): {angle} vs {want}");
            assert!((r - (x * x + y * y).sqrt()).abs() < 0.02, "({x}, {y}): radius {r}");
        }
        assert!(wheel_inverse([10, 10, 10]).is_none());
        for k in [20, 40] {
            let cols: Vec<Rgb> = (0..k).map(|i| distinct(i, k)).collect();
            for a in 0..k {
                for b in 0..a {
                    assert_ne!(cols[a], cols[b], "k = {k}: {a} and {b}");
                }
            }
        }
    }
}
