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
//!
//! Under an address-space limit (`ulimit -v`, `RLIMIT_AS`) every mapping counts, and one that
//! the limit refuses aborts the process. The largest mappings that are not the command's own
//! data are the matrix-product workspaces of faer's x86 kernels (`private-gemm-x86`, used for
//! every f32/f64 product past a small size on a machine with AVX2): each thread that multiplies
//! keeps, for the life of the thread, a buffer of twice the L3 size the crate detects (for the
//! packed left and right operands), allocated infallibly; the crate reads the cache sizes from
//! `/sys` once and offers no setting or variable that bounds the buffer. Beside it, candle's
//! `gemm` keeps an L2-sized slab per thread, and each thread that allocates gets a malloc arena
//! of up to 64 MiB. That workspace is reserved for every worker thread
//! ([`matmul_workspace_per_thread`]) out of the address space left, so a command that would
//! not fit with it stops with one line naming the threads and the workspace, instead of
//! aborting once enough threads multiply at once.

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

/// The address space a worker thread may map beside the command's own data while it multiplies
/// matrices (see the module docs): faer's packed operands (twice the L3 cache as its kernels
/// count it: every L3 instance of the machine), candle's L2 slab and a packed left operand (the
/// L2 size each), and one malloc arena (64 MiB on 64-bit glibc).
pub fn matmul_workspace_per_thread() -> u64 {
    const ARENA: u64 = 64 << 20;
    let caches = cache_sizes();
    2 * caches.l3_total + 2 * caches.l2 + ARENA
}

/// Cache sizes as the matrix-product kernels see them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CacheSizes {
    /// The L2 cache of one core.
    l2: u64,
    /// The sizes of every distinct L3 cache added up: what faer's kernels size their buffers by
    /// (each instance's size over the threads sharing it, times the cores).
    l3_total: u64,
}

/// Read once from `/sys/devices/system/cpu/cpu*/cache/index*` (level, type, size and the CPUs
/// sharing each cache); where that cannot be read, 32 MiB of L3 and 1 MiB of L2, the kernels'
/// own defaults' order of magnitude.
fn cache_sizes() -> CacheSizes {
    static SIZES: std::sync::OnceLock<CacheSizes> = std::sync::OnceLock::new();
    *SIZES.get_or_init(|| read_cache_sizes(std::path::Path::new("/sys/devices/system/cpu")).unwrap_or(CacheSizes {
        l2: 1 << 20,
        l3_total: 32 << 20,
    }))
}

fn read_cache_sizes(cpus: &std::path::Path) -> Option<CacheSizes> {
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let mut l2 = 0u64;
    let mut l3 = std::collections::BTreeMap::<String, u64>::new();
    for cpu in std::fs::read_dir(cpus).ok()?.flatten() {
        let name = cpu.file_name().to_string_lossy().into_owned();
        if !name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(indices) = std::fs::read_dir(cpu.path().join("cache")) else { continue };
        for index in indices.flatten() {
            let dir = index.path();
            let (Some(level), Some(kind), Some(size)) = (read(dir.join("level")), read(dir.join("type")), read(dir.join("size")))
            else {
                continue;
            };
            if kind == "Instruction" {
                continue;
            }
            let Some(bytes) = parse_size(&size) else { continue };
            match level.as_str() {
                "2" => l2 = l2.max(bytes),
                "3" => {
                    l3.insert(read(dir.join("shared_cpu_list")).unwrap_or_else(|| name.clone()), bytes);
                }
                _ => {}
            }
        }
    }
    (l2 > 0 || !l3.is_empty()).then(|| CacheSizes { l2, l3_total: l3.values().sum() })
}

/// Under an address-space limit (`ulimit -v`), how many threads may multiply matrices at once:
/// as many as `requested` whose workspaces ([`matmul_workspace_per_thread`]) fit in half of the
/// address space left (the other half is for the command's data), at least one. `None` without
/// a limit or when all `requested` fit.
pub fn threads_for_address_space(requested: usize) -> Option<usize> {
    let limit = address_space_limit()?;
    let mapped = status_kib("VmSize:").map_or(0, |k| k * 1024);
    let room = limit.saturating_sub(mapped) / 2;
    let fit = usize::try_from(room / matmul_workspace_per_thread().max(1)).unwrap_or(usize::MAX).max(1);
    (fit < requested).then_some(fit)
}

/// Sizes the global worker pool to what an address-space limit allows, before any parallel
/// work: the matrix-product kernels map their workspace per thread and abort when it cannot be
/// mapped, so under `ulimit -v` (cluster schedulers set it to a job's memory) a command runs on
/// the threads whose workspace fits instead of refusing to run. The thread count asked for is
/// `RAYON_NUM_THREADS`, else every core. Returns a note for the user when it took fewer threads;
/// `None` when nothing changed (no limit, everything fits, or the pool was already built).
pub fn fit_thread_pool_to_address_space() -> Option<String> {
    let requested = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let n = threads_for_address_space(requested)?;
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().ok()?;
    Some(format!(
        "note: the address-space limit (ulimit -v) leaves room for the matrix-product workspace of {n} thread(s) \
         ({} each); using {n} of {requested}",
        gib(matmul_workspace_per_thread() as u128)
    ))
}

/// Growth of the mapped address space since the first memory check: the workspace of threads
/// that have already multiplied is part of it (their buffers live as long as the threads), so
/// it is not reserved a second time.
fn mapped_since_first_check(mapped: u64) -> u64 {
    static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    mapped.saturating_sub(*FIRST.get_or_init(|| mapped))
}

/// The soft address-space limit of this process (`ulimit -v`), from `/proc/self/limits`;
/// `None` when unlimited or unknown.
pub fn address_space_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits_field(&text, "Max address space")
}

fn limits_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The memory available to this process: the smallest of `FACTORTOPY_MEMORY_LIMIT` less what
/// the process already holds, the system's `MemAvailable`, the cgroup's `memory.max` less its
/// `memory.current`, and an address-space limit (`ulimit -v`) less what the process has mapped
/// and the matrix-product workspace of every worker thread. `None` when none of them can be
/// read (then nothing is refused).
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
    if let Some(limit) = address_space_limit() {
        let mapped = status_kib("VmSize:").map_or(0, |k| k * 1024);
        let threads = rayon::current_num_threads() as u64;
        let per = matmul_workspace_per_thread();
        let workspace = threads.saturating_mul(per).saturating_sub(mapped_since_first_check(mapped));
        consider(
            limit.saturating_sub(mapped).saturating_sub(workspace),
            format!(
                "the address-space limit (ulimit -v) of {} less the {} this process has mapped and the matrix-product \
                 workspace of {threads} threads × {} (fewer threads with RAYON_NUM_THREADS, or a higher ulimit -v)",
                gib(limit as u128),
                gib(mapped as u128),
                gib(per as u128)
            ),
        );
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

/// What a FactorTopy fit of `features` to `n_voxels` voxels will allocate in host memory
/// (`prepared_on_device`: the features are prepared on the CUDA device that holds them).
pub fn fit_need(features: &dyn FeatureSource, n_voxels: usize, cfg: &FitConfig, prepared_on_device: bool) -> Need {
    let precision = cfg.store.unwrap_or_else(|| features.precision());
    let widths = features.widths();
    let n = features.n_images();
    let n_val = (n as f64 * cfg.val_fraction).round() as usize;
    let mut items = vec![
        ("responses".into(), 4 * n as u128 * n_voxels as u128),
        ("trainer".into(), trainer_bytes(&widths, n_voxels, n_val, cfg)),
    ];
    // Features prepared on a device take its memory, checked there before it is allocated.
    if !prepared_on_device {
        items.insert(0, (format!("prepared features in {precision}"), prepared_bytes(n, &widths, cfg.grid, precision) + stream_bytes(features)));
    }
    Need { what: "fit".into(), items, hints: feature_hints(precision) }
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
    fn address_space_limits_parse() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max stack size            8388608              unlimited            bytes\n\
                    Max address space         6442450944           unlimited            bytes\n";
        assert_eq!(limits_field(text, "Max address space"), Some(6 << 30));
        assert_eq!(limits_field(&text.replace("6442450944", "unlimited"), "Max address space"), None);
        // The workspace is at least the arena and the caches the kernels detect.
        assert!(matmul_workspace_per_thread() >= 64 << 20);
    }

    #[test]
    fn cache_sizes_add_up_every_l3_instance() {
        let d = tempfile::tempdir().unwrap();
        // Two L3 instances of 32 MiB (cpus 0-1 and 2-3), a 1 MiB L2 per core, an L1 and an
        // instruction cache that do not count.
        for cpu in 0..4 {
            for (i, (level, kind, size, shared)) in [
                ("1", "Data", "48K", format!("{cpu}")),
                ("1", "Instruction", "32K", format!("{cpu}")),
                ("2", "Unified", "1024K", format!("{cpu}")),
                ("3", "Unified", "32768K", if cpu < 2 { "0-1".to_string() } else { "2-3".to_string() }),
            ]
            .into_iter()
            .enumerate()
            {
                let dir = d.path().join(format!("cpu{cpu}/cache/index{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                for (f, v) in [("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared.as_str())] {
                    std::fs::write(dir.join(f), format!("{v}\n")).unwrap();
                }
            }
        }
        std::fs::create_dir_all(d.path().join("cpufreq")).unwrap();
        assert_eq!(read_cache_sizes(d.path()), Some(CacheSizes { l2: 1 << 20, l3_total: 64 << 20 }));
        assert_eq!(read_cache_sizes(&d.path().join("missing")), None);
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
