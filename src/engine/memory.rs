//! The memory a command will need, estimated before it allocates, against the memory the
//! machine has: a command that would not fit stops with one line saying what it needs, what is
//! available and what would help, instead of meeting the OOM killer halfway through (inside a
//! user's training process, that kills the training too).
//!
//! The estimate counts the large buffers: the prepared features (images × layers × (G² + 1) ×
//! channels in the store precision), the copies of the responses, the trainer's per-voxel and
//! per-batch buffers and the held-out predictions. `FACTORTOPY_MEMORY_LIMIT` (bytes, or with a
//! K/M/G/T suffix, powers of 1024) caps what the process may use in all, for a job that shares
//! its machine; otherwise the limit is what the system reports available (`MemAvailable`, and a
//! cgroup's `memory.max` when one is set).

use crate::data::{FeatureSource, Precision};
use crate::error::{Error, Result};
use crate::model::prepared::prepared_bytes;
use crate::model::FitConfig;

/// The environment variable that caps the memory a command may use.
pub const LIMIT_VAR: &str = "FACTORTOPY_MEMORY_LIMIT";

/// What a command will allocate, item by item.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The command or step, for the message (`fit`, `score`, ...).
    pub what: String,
    /// Each allocation by name, in bytes.
    pub items: Vec<(String, u128)>,
    /// What would make it smaller, for the message.
    pub hints: Vec<String>,
}

impl Need {
    /// The bytes of all items together.
    pub fn total(&self) -> u128 {
        self.items.iter().map(|(_, b)| b).sum()
    }

    /// Refuses, as [`Error::Memory`], a need larger than the memory available.
    pub fn check(&self) -> Result<()> {
        let Some(avail) = available() else { return Ok(()) };
        if self.total() <= avail.bytes as u128 {
            return Ok(());
        }
        let parts: Vec<String> = self.items.iter().filter(|(_, b)| *b > 0).map(|(n, b)| format!("{n} {}", gib(*b))).collect();
        let hints = if self.hints.is_empty() { String::new() } else { format!("; what would help: {}", self.hints.join(", ")) };
        Err(Error::Memory(format!(
            "{} needs about {} ({}) but {} is available ({}){hints}",
            self.what,
            gib(self.total()),
            parts.join(", "),
            gib(avail.bytes as u128),
            avail.source
        )))
    }
}

fn gib(b: u128) -> String {
    format!("{:.2} GiB", b as f64 / (1u128 << 30) as f64)
}

/// Memory the process may still allocate, and where that number comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    /// Bytes the process may still allocate.
    pub bytes: u64,
    /// Where the number comes from (`MemAvailable`, a cgroup limit, `FACTORTOPY_MEMORY_LIMIT`).
    pub source: String,
}

/// Parses a size such as `17179869184`, `16G`, `16GiB` or `512M` (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let x: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    (x.is_finite() && x >= 0.0).then_some((x * mult as f64) as u64)
}

/// This process's resident memory now (`VmRSS`), in bytes.
pub fn resident_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

/// This process's peak resident memory so far (`VmHWM`), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&s, key)
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// The memory available to this process: the smallest of `FACTORTOPY_MEMORY_LIMIT` less what
/// the process already holds, the system's `MemAvailable`, and the cgroup's `memory.max` less
/// its `memory.current`. `None` when none of them can be read (then nothing is refused).
pub fn available() -> Option<Available> {
    let mut best: Option<Available> = None;
    let mut consider = |bytes: u64, source: String| {
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(Available { bytes, source });
        }
    };
    if let Ok(v) = std::env::var(LIMIT_VAR) {
        if let Some(limit) = parse_size(&v) {
            let held = resident_bytes().unwrap_or(0);
            consider(limit.saturating_sub(held), format!("{LIMIT_VAR}={v} less the {} this process holds", gib(held as u128)));
        }
    }
    if let Some(k) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| kib_field(&s, "MemAvailable:")) {
        consider(k * 1024, "MemAvailable".into());
    }
    let cg = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok().and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(max), Some(cur)) = (cg("memory.max"), cg("memory.current")) {
        consider(max.saturating_sub(cur), "the cgroup's memory.max".into());
    }
    best
}

/// What a smaller feature set would take: the hints every feature-holding command gives.
fn feature_hints(precision: Precision) -> Vec<String> {
    let mut h = Vec::new();
    if precision == Precision::F32 {
        h.push("--store f16 (features in 16 bits: half the memory)".into());
    }
    h.push("a smaller --grid (memory grows with G²)".into());
    h.push("fewer layers or images in the features file".into());
    h
}

/// The trainer's buffers beside the features: parameters with gradients, AdamW moments and the
/// best copy; the per-voxel buffers (measured at about 29 KB a voxel for 12 layers and a batch
/// of 32); the aligned maps of a batch; predictions and their gradients; the validation
/// predictions.
fn trainer_bytes(widths: &[usize], n_voxels: usize, n_val: usize, cfg: &FitConfig) -> u128 {
    let (l, d, gg) = (widths.len() as u128, cfg.d as u128, (cfg.grid * cfg.grid) as u128);
    let v = n_voxels as u128;
    let c: u128 = widths.iter().map(|&c| c as u128).sum();
    let mlp = 3 * (192 * 128 + 128 * 128 + 2 * 128) + 128 * (l + 3);
    let params = 2 * d * c + mlp + v * (d + 1);
    // Positional encoding, selector activations and their gradients, the tap table, and the
    // blocked readout's products and their gradients (four taps per layer and batch image).
    let per_voxel = 192 + 3 * 6 * 128 + 4 * (l + 3) + 2 * 4 * cfg.batch_size as u128 * l;
    let batch = cfg.batch_size.max(64) as u128;
    let maps = 2 * batch * l * (gg + 1) * d;
    let preds = 3 * cfg.batch_size as u128 * v + 4 * n_val as u128 * v;
    4 * (5 * params + v * per_voxel + maps + preds)
}

/// Blocks of the source the streaming preparation holds at once: the raw bytes, the decoded
/// block and its resampled cells, each at most 64 MiB and at most one layer.
fn stream_bytes(features: &dyn FeatureSource) -> u128 {
    let largest = (0..features.n_layers())
        .map(|l| 4 * features.local_shape(l).iter().map(|&d| d as u128).product::<u128>())
        .max()
        .unwrap_or(0);
    3 * largest.min(64 << 20)
}

/// What a FactorTopy fit of `features` to `n_voxels` voxels will allocate.
pub fn fit_need(features: &dyn FeatureSource, n_voxels: usize, cfg: &FitConfig) -> Need {
    let precision = cfg.store.unwrap_or_else(|| features.precision());
    let widths = features.widths();
    let n = features.n_images();
    let n_val = (n as f64 * cfg.val_fraction).round() as usize;
    Need {
        what: "fit".into(),
        items: vec![
            (format!("prepared features in {precision}"), prepared_bytes(n, &widths, cfg.grid, precision) + stream_bytes(features)),
            ("responses".into(), 4 * n as u128 * n_voxels as u128),
            ("trainer".into(), trainer_bytes(&widths, n_voxels, n_val, cfg)),
        ],
        hints: feature_hints(precision),
    }
}

/// What the ridge baseline will allocate: the training and held-out responses, one layer's
/// global tokens at a time, and the per-layer, per-voxel scores.
pub fn ridge_need(features: &dyn FeatureSource, n_voxels: usize, val_fraction: f64) -> Need {
    let (n, v) = (features.n_images() as u128, n_voxels as u128);
    let c = features.widths().into_iter().max().unwrap_or(0) as u128;
    let l = features.n_layers() as u128;
    let n_val = (n as f64 * val_fraction).round() as u128;
    Need {
        what: "fit --method ridge".into(),
        items: vec![
            ("responses".into(), 4 * n * v + 4 * 2 * n_val * v),
            ("global tokens".into(), 4 * 3 * n * c + 8 * 4 * c * c),
            ("scores".into(), 4 * 4 * l * v),
        ],
        hints: vec!["fewer voxels (a smaller brain file)".into()],
    }
}

/// What scoring (or predicting) `n_images` images of `features` at `n_voxels` voxels will
/// allocate: their prepared features and `copies` arrays of predictions.
pub fn predict_need(
    what: &str,
    features: &dyn FeatureSource,
    n_images: usize,
    n_voxels: usize,
    cfg: &FitConfig,
    copies: u128,
) -> Need {
    let precision = cfg.store.unwrap_or_else(|| features.precision());
    let widths = features.widths();
    Need {
        what: what.into(),
        items: vec![
            (format!("prepared features in {precision}"), prepared_bytes(n_images, &widths, cfg.grid, precision) + stream_bytes(features)),
            ("predictions".into(), copies * 4 * n_images as u128 * n_voxels as u128),
            ("predictor".into(), trainer_bytes(&widths, n_voxels, 0, cfg)),
        ],
        hints: feature_hints(precision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("16G"), Some(16 << 30));
        assert_eq!(parse_size("16GiB"), Some(16 << 30));
        assert_eq!(parse_size(" 512m "), Some(512 << 20));
        assert_eq!(parse_size("1.5K"), Some(1536));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("3X"), None);
    }

    #[test]
    fn status_fields() {
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234));
        assert_eq!(kib_field("VmRSS:\n", "VmRSS:"), None);
        assert!(resident_bytes().unwrap() > 0);
        assert!(peak_resident_bytes().unwrap() >= resident_bytes().unwrap() / 2);
    }

    #[test]
    fn refusal_is_one_line_naming_need_availability_and_help() {
        let need = Need {
            what: "fit".into(),
            items: vec![("prepared features in f32".into(), 1 << 60), ("responses".into(), 1 << 30)],
            hints: feature_hints(Precision::F32),
        };
        let e = need.check().unwrap_err();
        assert!(matches!(e, Error::Memory(_)));
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("fit needs about") && s.contains("available") && s.contains("--store f16"), "{s}");
        let small = Need { items: vec![("x".into(), 1)], ..need };
        small.check().unwrap();
    }
}
