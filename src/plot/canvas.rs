//! A small RGB raster canvas: enough to draw maps and charts into a PNG without a plotting
//! dependency. Discs and lines are anti-aliased (coverage blended with what is underneath) so
//! thousands of small voxel dots and thin curves stay legible at 800×600.

use std::path::Path;

use font8x8::{UnicodeFonts, BASIC_FONTS, LATIN_FONTS};

use crate::error::{Error, Result};

/// A colour as red, green and blue bytes.
pub type Rgb = [u8; 3];

/// White.
pub const WHITE: Rgb = [255, 255, 255];
/// Black.
pub const BLACK: Rgb = [0, 0, 0];

/// Side of one glyph of the built-in font, in pixels at scale 1.
pub const GLYPH: i64 = 8;

/// An RGB image being drawn, written out as PNG.
pub struct Canvas {
    width: usize,
    height: usize,
    /// Row-major RGB, 3 bytes per pixel, the PNG layout.
    pixels: Vec<u8>,
}

fn mix(under: Rgb, over: Rgb, alpha: f64) -> Rgb {
    let a = alpha.clamp(0.0, 1.0);
    let m = |u: u8, o: u8| (u as f64 + (o as f64 - u as f64) * a).round() as u8;
    [
        m(under[0], over[0]),
        m(under[1], over[1]),
        m(under[2], over[2]),
    ]
}

fn glyph(c: char) -> [u8; 8] {
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

impl Canvas {
    /// A `width`×`height` canvas filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&background);
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixel at (x, y), or `None` outside the canvas.
    pub fn get(&self, x: i64, y: i64) -> Option<Rgb> {
        self.index(x, y)
            .map(|i| [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    fn index(&self, x: i64, y: i64) -> Option<usize> {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            None
        } else {
            Some((y as usize * self.width + x as usize) * 3)
        }
    }

    /// Sets one pixel; coordinates outside the canvas are ignored, so shapes clip for free.
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if let Some(i) = self.index(x, y) {
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Blends `c` over the pixel with opacity `alpha` in [0, 1].
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f64) {
        if alpha <= 0.0 {
            return;
        }
        if let Some(under) = self.get(x, y) {
            self.set(x, y, mix(under, c, alpha));
        }
    }

    /// Fills the rectangle at `(x, y)` of size `w`×`h`, clipped to the canvas.
    pub fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        let (x0, x1) = (x.max(0), (x + w).min(self.width as i64));
        let (y0, y1) = (y.max(0), (y + h).min(self.height as i64));
        for yy in y0..y1 {
            for xx in x0..x1 {
                self.set(xx, yy, c);
            }
        }
    }

    /// One-pixel outline just inside the rectangle.
    pub fn rect_outline(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        self.fill_rect(x, y, w, 1, c);
        self.fill_rect(x, y + h - 1, w, 1, c);
        self.fill_rect(x, y, 1, h, c);
        self.fill_rect(x + w - 1, y, 1, h, c);
    }

    /// Filled disc centred at (cx, cy) in pixel coordinates (pixel centres at +0.5).
    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: Rgb) {
        let (x0, x1) = ((cx - r - 1.0).floor() as i64, (cx + r + 1.0).ceil() as i64);
        let (y0, y1) = ((cy - r - 1.0).floor() as i64, (cy + r + 1.0).ceil() as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
                self.blend(x, y, c, r + 0.5 - d);
            }
        }
    }

    /// Straight segment of the given thickness (pixels) with round caps.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, thickness: f64, c: Rgb) {
        let half = (thickness / 2.0).max(0.5);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        let (bx0, bx1) = (
            (x0.min(x1) - half - 1.0).floor() as i64,
            (x0.max(x1) + half + 1.0).ceil() as i64,
        );
        let (by0, by1) = (
            (y0.min(y1) - half - 1.0).floor() as i64,
            (y0.max(y1) + half + 1.0).ceil() as i64,
        );
        for y in by0..=by1 {
            for x in bx0..=bx1 {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((px - x0) * dx + (py - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let d = ((px - x0 - t * dx).powi(2) + (py - y0 - t * dy).powi(2)).sqrt();
                self.blend(x, y, c, half + 0.5 - d);
            }
        }
    }

    /// Width in pixels of `s` drawn at `scale`.
    pub fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * GLYPH * scale
    }

    /// Text with its top-left corner at (x, y), each font pixel drawn as a `scale`×`scale` block.
    /// Characters outside ASCII and Latin-1 are drawn as '?'.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let gx = x + k as i64 * GLYPH * scale;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    // font8x8 stores the leftmost pixel in the lowest bit.
                    if bits & (1 << col) != 0 {
                        self.fill_rect(gx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
        }
    }

    /// Text centred horizontally on `cx`.
    pub fn text_centered(&mut self, cx: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        self.text(cx - Self::text_width(s, scale) / 2, y, s, scale, c);
    }

    /// Text with a one-pixel halo, readable on top of a busy map.
    pub fn text_halo(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb, halo: Rgb) {
        for (ox, oy) in [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ] {
            self.text(x + ox, y + oy, s, scale, halo);
        }
        self.text(x, y, s, scale, c);
    }

    /// Text rotated a quarter turn anticlockwise (reads bottom to top), for y-axis labels;
    /// (x, y) is the top-left of its bounding box.
    pub fn text_vertical(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        let n = s.chars().count() as i64;
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            // Character k occupies the band counted from the bottom of the box.
            let band_bottom = y + (n - k as i64) * GLYPH * scale;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        // Glyph (col, row) → box (row, −col) after the anticlockwise turn.
                        let px = x + row as i64 * scale;
                        let py = band_bottom - (col + 1) * scale;
                        self.fill_rect(px, py, scale, scale, c);
                    }
                }
            }
        }
    }

    /// The image as PNG bytes.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| Error::invalid(format!("PNG encoding failed: {e}")))?;
            w.write_image_data(&self.pixels)
                .map_err(|e| Error::invalid(format!("PNG encoding failed: {e}")))?;
        }
        Ok(out)
    }

    /// Encodes and writes the PNG atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        crate::data::io::atomic_write(path, &self.to_png_bytes()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_png() {
        let mut c = Canvas::new(40, 30, WHITE);
        c.fill_rect(2, 2, 5, 5, BLACK);
        assert_eq!(c.get(4, 4), Some(BLACK));
        assert_eq!(c.get(8, 8), Some(WHITE));
        c.disc(20.0, 15.0, 4.0, [255, 0, 0]);
        assert_eq!(c.get(20, 15), Some([255, 0, 0]));
        assert_eq!(c.get(20, 25), Some(WHITE));
        // Pixel centres sit at +0.5: a 1-pixel line through them covers exactly one row.
        c.line(0.0, 28.5, 39.0, 28.5, 1.0, BLACK);
        assert_eq!(c.get(10, 28), Some(BLACK));
        assert_eq!(c.get(10, 27), Some(WHITE));
        c.text(0, 10, "A", 1, BLACK);
        assert!((10..18).any(|y| (0..8).any(|x| c.get(x, y) == Some(BLACK))));
        c.set(-1, 100, BLACK); // clipped, no panic
        let bytes = c.to_png_bytes().unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let info = dec.read_info().unwrap();
        assert_eq!((info.info().width, info.info().height), (40, 30));
    }

    #[test]
    fn vertical_text_is_turned() {
        // "I" drawn vertically is a horizontal bar: wider than tall.
        let mut c = Canvas::new(20, 20, WHITE);
        c.text_vertical(2, 2, "I", 1, BLACK);
        let ink: Vec<(i64, i64)> = (0..20)
            .flat_map(|y| (0..20).map(move |x| (x, y)))
            .filter(|&(x, y)| c.get(x, y) == Some(BLACK))
            .collect();
        let w = ink.iter().map(|p| p.0).max().unwrap() - ink.iter().map(|p| p.0).min().unwrap();
        let h = ink.iter().map(|p| p.1).max().unwrap() - ink.iter().map(|p| p.1).min().unwrap();
        assert!(w > h, "{w} {h}");
    }
}
