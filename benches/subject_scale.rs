//! Time and peak memory of the `factortopy` command line at real fMRI-subject scale.
//!
//! Usage: `cargo bench --bench subject_scale -- [--sizes tiny,quarter,half,full]
//! [--commands fit,ridge,score,predict,rank,monitor] [--layers L] [--channels C] [--epochs K]
//! [--bin PATH] [--dir DIR] [--keep] [--generate-only] [--extra "FLAGS"]`.
//!
//! Sizes (images × vertices; L = 12 layers of C = 768 channels unless --layers/--channels):
//! tiny 200 × 500 (L 4, C 64; a smoke test), quarter 2460 × 9887, half 4920 × 19774,
//! full 9841 × 39548 (Algonauts 2023 subject 1: its training images and fsaverage vertices).
//!
//! The bench writes its own subject-shaped safetensors files into --dir (default: a fresh folder
//! under the system temp dir), streaming them in chunks of a few MiB so that the bench process
//! stays small however large the files are; files already there with the expected name and
//! length are reused, so a rerun is cheap. Each size has two networks' features (A for fit,
//! ridge, score and predict; A and B for rank), a brain, and a probe set of min(1000, N) images
//! (features of A as the monitor's reference, B as its one checkpoint, and a brain of the same
//! vertices). The data carry a planted hierarchy (a voxel at hierarchy level h reads layer
//! ≈ h·(L−1)/4 of network A at one retinotopic grid cell; network B has its layers reversed), so
//! the reports are meaningful, not just noise.
//!
//! Every command runs alone as a child process of the release binary (built first when --bin
//! does not exist); its wall time and peak RSS (`wait4`'s `ru_maxrss`) are reported as one
//! markdown row per (size, command), with the ratio of the peak to the input files and the
//! memory bound `1.2 × (features + brain) + 1 GiB`. "features" is one network's features file:
//! `rank` and `monitor` read two networks' files, and are held to the same one-network bound. A
//! child that fails (an error, or a signal such as the OOM killer's SIGKILL) is reported in its
//! row with the last line of its stderr, and the bench goes on.
//!
//! Generated files and outputs are removed after each size unless --keep. --generate-only writes
//! the files, prints their sizes and runs nothing. --extra "FLAGS" appends FLAGS (split on
//! whitespace) to every command.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Parser;

const GIB: f64 = (1u64 << 30) as f64;
/// Local maps are G × G = 8 × 8, the encoder's default grid, so no resizing blurs the planted
/// retinotopy.
const GRID: usize = 8;
const CELLS: usize = GRID * GRID;
/// Images in the monitor's probe set (fewer when the size has fewer).
const PROBE_IMAGES: usize = 1000;
/// Bytes buffered before a write: large enough for fast sequential writes, small enough that
/// the bench's own memory stays negligible.
const CHUNK: usize = 4 << 20;
/// Part of every generated file's name: bump it when the generator's output changes, so old
/// files in a reused --dir are not taken for new ones.
const GENERATOR: &str = "g1";

const ROI_NAMES: [&str; 7] = ["V1", "V2", "V3", "hV4", "FFA", "PPA", "EBA"];
const ROI_LEVELS: [i32; 7] = [0, 1, 2, 3, 4, 4, 4];
const LEVELS: usize = 5;

#[derive(Parser, Debug)]
#[command(about = "Time and peak memory of the factortopy CLI at fMRI-subject scale")]
struct Opts {
    /// Sizes to run: tiny, quarter, half, full.
    #[arg(long, value_delimiter = ',', default_value = "quarter")]
    sizes: Vec<String>,
    /// Commands to run: fit, ridge, score, predict, rank, monitor (score and predict use fit's encoder).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fit,ridge,score,predict,rank,monitor"
    )]
    commands: Vec<String>,
    /// Layers per network (default 12; tiny: 4).
    #[arg(long)]
    layers: Option<usize>,
    /// Channels per layer (default 768; tiny: 64).
    #[arg(long)]
    channels: Option<usize>,
    /// Passed as --epochs K to fit, rank and monitor (default: the CLI's schedule).
    #[arg(long)]
    epochs: Option<usize>,
    /// The factortopy binary (relative paths are from the crate root).
    #[arg(long, default_value = "target/release/factortopy")]
    bin: PathBuf,
    /// Folder for the generated data and the outputs (default: a fresh one under the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the generated files and the outputs.
    #[arg(long)]
    keep: bool,
    /// Generate the files, print their sizes and run nothing.
    #[arg(long)]
    generate_only: bool,
    /// Extra flags appended to every command, split on whitespace.
    #[arg(long, allow_hyphen_values = true)]
    extra: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------------------------------------
// Sizes and commands
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Size {
    name: String,
    images: usize,
    vertices: usize,
    layers: usize,
    channels: usize,
}

impl Size {
    fn parse(name: &str, opts: &Opts) -> Result<Size, String> {
        let (images, vertices, layers, channels) = match name {
            "tiny" => (200, 500, 4, 64),
            "quarter" => (2460, 9887, 12, 768),
            "half" => (4920, 19774, 12, 768),
            "full" => (9841, 39548, 12, 768),
            other => {
                return Err(format!(
                    "unknown size `{other}` (tiny, quarter, half, full)"
                ))
            }
        };
        Ok(Size {
            name: name.to_string(),
            images,
            vertices,
            layers: opts.layers.unwrap_or(layers),
            channels: opts.channels.unwrap_or(channels),
        })
    }

    fn probe_images(&self) -> usize {
        PROBE_IMAGES.min(self.images)
    }
}

/// In the order they run: score and predict read the encoder that fit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Fit,
    Ridge,
    Score,
    Predict,
    Rank,
    Monitor,
}

impl Cmd {
    const ALL: [Cmd; 6] = [
        Cmd::Fit,
        Cmd::Ridge,
        Cmd::Score,
        Cmd::Predict,
        Cmd::Rank,
        Cmd::Monitor,
    ];

    fn name(self) -> &'static str {
        match self {
            Cmd::Fit => "fit",
            Cmd::Ridge => "ridge",
            Cmd::Score => "score",
            Cmd::Predict => "predict",
            Cmd::Rank => "rank",
            Cmd::Monitor => "monitor",
        }
    }

    fn parse(s: &str) -> Result<Cmd, String> {
        Cmd::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            format!("unknown command `{s}` (fit, ridge, score, predict, rank, monitor)")
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast and good enough for benchmark data; also used to derive seeds.
struct Rng(u64);

impl Rng {
    /// A generator for the stream named by `parts` (a seed, an image index, a layer, ...).
    fn derive(parts: &[u64]) -> Rng {
        let mut s = 0x5EED_F0FA_C707_70AA_u64;
        for &p in parts {
            s = Rng(s ^ p).next_u64();
        }
        Rng(s)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal: the sum of the four 16-bit uniforms of one draw (Irwin–Hall,
    /// variance 4/12) centred and scaled to variance 1. One draw per value keeps generating
    /// gigabytes fast.
    fn normal(&mut self) -> f32 {
        let x = self.next_u64();
        let sum: u64 = (0..4).map(|k| (x >> (16 * k)) & 0xFFFF).sum();
        (sum as f32 / 65536.0 - 2.0) * 3f32.sqrt()
    }
}

// ---------------------------------------------------------------------------------------------
// The planted data: image latents, networks and a cortex
// ---------------------------------------------------------------------------------------------

/// A set of images: each (image, latent layer) has a latent map over the grid cells, which both
/// the features and the brain are made from.
#[derive(Clone, Copy)]
struct Images {
    seed: u64,
    n: usize,
}

impl Images {
    /// A smooth map `a0 + a1·x + a2·y + a3·x·y` over the cell centres in [-1, 1]², with four
    /// random coefficients per (image, layer): few factors shared by many vertices, as in real
    /// responses, so that even the tiny size has enough images to learn them.
    fn latent(&self, image: usize, layer: usize) -> [f32; CELLS] {
        let mut rng = Rng::derive(&[self.seed, image as u64, layer as u64]);
        let a: [f32; 4] = std::array::from_fn(|_| rng.normal());
        let centre = |i: usize| (2 * i + 1) as f32 / GRID as f32 - 1.0;
        // 0.75: about unit variance over the cells (1 + 1/3 + 1/3 + 1/9 ≈ 1.78 before).
        std::array::from_fn(|g| {
            let (y, x) = (centre(g / GRID), centre(g % GRID));
            0.75 * (a[0] + a[1] * x + a[2] * y + a[3] * x * y)
        })
    }
}

/// A network: layer `l` carries latent layer `l` (or `L − 1 − l` when reversed) in every
/// channel with a channel-specific loading, plus its own noise.
#[derive(Clone, Copy)]
struct Network {
    name: &'static str,
    seed: u64,
    reversed: bool,
}

const NET_A: Network = Network {
    name: "A",
    seed: 11,
    reversed: false,
};
const NET_B: Network = Network {
    name: "B",
    seed: 12,
    reversed: true,
};

impl Network {
    fn latent_layer(&self, l: usize, layers: usize) -> usize {
        if self.reversed {
            layers - 1 - l
        } else {
            l
        }
    }

    /// Per-channel loadings of layer `l` on its latent.
    fn loadings(&self, l: usize, channels: usize) -> Vec<f32> {
        let mut rng = Rng::derive(&[self.seed, 0x10AD, l as u64]);
        (0..channels).map(|_| 0.5 * rng.normal()).collect()
    }
}

/// Vertices on two flattened hemispheres: each a 100 × 100 sheet with five strips along x
/// (V1, V2, V3, hV4, then FFA/PPA/EBA stacked along y) and a band outside every ROI at the top.
/// Each vertex reads one latent layer (from its ROI's hierarchy level) at one grid cell (a
/// retinotopic map mirrored between neighbouring strips, as in real visual areas).
struct Cortex {
    /// `(x, y)` on the sheet, in [0, 100]².
    sheet: Vec<(f32, f32)>,
    hemisphere: Vec<u8>,
    roi: Vec<i32>,
    layer: Vec<usize>,
    cell: Vec<usize>,
    noise_ceiling: Vec<f32>,
}

/// Sheet rows above this have no ROI (real cortical meshes have many unlabelled vertices).
const ROI_TOP: f32 = 85.0;

impl Cortex {
    fn new(vertices: usize, layers: usize, seed: u64) -> Cortex {
        let mut rng = Rng::derive(&[seed, 0xC0E7]);
        let mut c = Cortex {
            sheet: Vec::with_capacity(vertices),
            hemisphere: Vec::with_capacity(vertices),
            roi: Vec::with_capacity(vertices),
            layer: Vec::with_capacity(vertices),
            cell: Vec::with_capacity(vertices),
            noise_ceiling: Vec::with_capacity(vertices),
        };
        for v in 0..vertices {
            let (x, y) = (100.0 * rng.uniform(), 100.0 * rng.uniform());
            let level = ((x / 20.0) as usize).min(LEVELS - 1);
            let roi = match (y < ROI_TOP, level) {
                (false, _) => -1,
                (true, 4) => 4 + ((3.0 * y / ROI_TOP) as i32).min(2),
                (true, l) => l as i32,
            };
            let in_strip = (x - 20.0 * level as f32) / 20.0;
            let row = if level % 2 == 1 {
                1.0 - in_strip
            } else {
                in_strip
            };
            let cell = grid_index(row) * GRID + grid_index(y / 100.0);
            c.sheet.push((x, y));
            c.hemisphere.push(u8::from(v >= vertices / 2));
            c.roi.push(roi);
            c.layer.push((level * (layers - 1) + 2) / (LEVELS - 1));
            c.cell.push(cell);
            let ceiling = if roi >= 0 {
                0.05 + 0.5 * rng.uniform()
            } else {
                0.02 + 0.1 * rng.uniform()
            };
            c.noise_ceiling.push(ceiling);
        }
        c
    }

    fn len(&self) -> usize {
        self.sheet.len()
    }

    /// `[V, 3]` positions: the sheets curved and placed left and right of the midline.
    fn coords(&self, v: usize) -> [f32; 3] {
        let (x, y) = self.sheet[v];
        let side = if self.hemisphere[v] == 0 { -1.0 } else { 1.0 };
        let bulge = 5.0 * (std::f32::consts::PI * x / 100.0).sin();
        [side * (15.0 + bulge), x - 100.0, y - 50.0]
    }

    /// `[V, 2]` flatmap positions, the right hemisphere beside the left.
    fn flat(&self, v: usize) -> [f32; 2] {
        let (x, y) = self.sheet[v];
        [x + 110.0 * self.hemisphere[v] as f32, y]
    }
}

/// Index of the grid cell that holds `t` in [0, 1].
fn grid_index(t: f32) -> usize {
    ((t * GRID as f32) as usize).min(GRID - 1)
}

// ---------------------------------------------------------------------------------------------
// Streaming safetensors writer
// ---------------------------------------------------------------------------------------------

struct TensorSpec {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
}

impl TensorSpec {
    fn new(name: impl Into<String>, dtype: &'static str, shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn bytes(&self) -> u64 {
        let size = match self.dtype {
            "F32" | "I32" => 4,
            "F16" => 2,
            "U8" => 1,
            other => unreachable!("dtype {other} is not generated"),
        };
        self.shape.iter().map(|&d| d as u64).product::<u64>() * size
    }
}

/// What a generated file holds.
#[derive(Clone, Copy)]
enum Content {
    Features(Network, Images),
    Brain(Images),
}

/// A file's tensors (their data in this order), metadata and content.
struct FileSpec {
    path: PathBuf,
    tensors: Vec<TensorSpec>,
    metadata: BTreeMap<String, String>,
    content: Content,
}

impl FileSpec {
    /// The 8-byte header length, then the JSON header padded with spaces to a multiple of 8 (so
    /// the data starts 8-byte aligned, as the safetensors crate writes it).
    fn header(&self) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        map.insert("__metadata__".into(), serde_json::json!(self.metadata));
        let mut offset = 0u64;
        for t in &self.tensors {
            let end = offset + t.bytes();
            let entry = serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]});
            map.insert(t.name.clone(), entry);
            offset = end;
        }
        let mut json = serde_json::to_vec(&map).expect("a JSON map serialises");
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&json);
        out
    }

    fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::bytes).sum()
    }

    fn file_bytes(&self) -> u64 {
        self.header().len() as u64 + self.data_bytes()
    }

    /// A file from an earlier run is reused when it has the expected length: the name carries
    /// every parameter of the data, and files are renamed into place only when complete.
    fn already_there(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| m.len() == self.file_bytes())
    }
}

/// Writes one [`FileSpec`] tensor by tensor through a fixed-size buffer, into `NAME.partial`
/// renamed into place by [`TensorWriter::finish`].
struct TensorWriter<'a> {
    spec: &'a FileSpec,
    file: File,
    partial: PathBuf,
    buf: Vec<u8>,
    next: usize,
    /// Bytes of the current tensor so far (flushed or buffered).
    in_tensor: u64,
}

impl<'a> TensorWriter<'a> {
    fn create(spec: &'a FileSpec) -> io::Result<TensorWriter<'a>> {
        let partial = spec.path.with_extension("partial");
        let mut file = File::create(&partial)?;
        file.write_all(&spec.header())?;
        Ok(TensorWriter {
            spec,
            file,
            partial,
            buf: Vec::with_capacity(CHUNK),
            next: 0,
            in_tensor: 0,
        })
    }

    /// Writes the next tensor of the spec, which must be `name`, with `fill`.
    fn tensor(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut Self) -> io::Result<()>,
    ) -> io::Result<()> {
        let spec = &self.spec.tensors[self.next];
        assert_eq!(
            spec.name, name,
            "tensors must be written in the header's order"
        );
        let want = spec.bytes();
        self.in_tensor = 0;
        fill(self)?;
        assert_eq!(
            self.in_tensor, want,
            "tensor `{name}`: wrote the wrong number of bytes"
        );
        self.next += 1;
        Ok(())
    }

    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(b);
        self.in_tensor += b.len() as u64;
        if self.buf.len() >= CHUNK {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn f16(&mut self, x: f32) -> io::Result<()> {
        self.bytes(&half::f16::from_f32(x).to_le_bytes())
    }

    fn f32(&mut self, x: f32) -> io::Result<()> {
        self.bytes(&x.to_le_bytes())
    }

    /// Flushes, syncs (so the timed runs do not share the disk with write-back) and renames.
    fn finish(mut self) -> io::Result<()> {
        assert_eq!(
            self.next,
            self.spec.tensors.len(),
            "every tensor must be written"
        );
        self.file.write_all(&self.buf)?;
        self.file.sync_all()?;
        fs::rename(&self.partial, &self.spec.path)
    }
}

// ---------------------------------------------------------------------------------------------
// The files of one size
// ---------------------------------------------------------------------------------------------

fn features_spec(dir: &Path, prefix: &str, net: Network, images: Images, size: &Size) -> FileSpec {
    let (n, l, c) = (images.n, size.layers, size.channels);
    let path = dir.join(format!(
        "{prefix}features-{}-{GENERATOR}-s{}-n{n}-l{l}-c{c}.safetensors",
        net.name, images.seed
    ));
    let mut tensors = Vec::with_capacity(2 * l);
    for i in 0..l {
        tensors.push(TensorSpec::new(
            format!("layers.{i}.local"),
            "F16",
            &[n, c, GRID, GRID],
        ));
        tensors.push(TensorSpec::new(
            format!("layers.{i}.global"),
            "F16",
            &[n, c],
        ));
    }
    let names: Vec<String> = (0..l).map(|i| format!("block{i}")).collect();
    let metadata = BTreeMap::from([
        ("model".to_string(), format!("bench-net-{}", net.name)),
        (
            "layer_names".to_string(),
            serde_json::to_string(&names).expect("strings serialise"),
        ),
    ]);
    FileSpec {
        path,
        tensors,
        metadata,
        content: Content::Features(net, images),
    }
}

/// Layer `l` of `net` on image `n`: `[C, G, G]` loading × latent + noise, and `[C]` the same
/// on the latent's spatial mean.
fn write_features(spec: &FileSpec, net: Network, images: Images, size: &Size) -> io::Result<()> {
    let mut w = TensorWriter::create(spec)?;
    for l in 0..size.layers {
        let load = net.loadings(l, size.channels);
        let latent = net.latent_layer(l, size.layers);
        let mut noise = Rng::derive(&[net.seed, images.seed, l as u64]);
        w.tensor(&format!("layers.{l}.local"), |w| {
            for n in 0..images.n {
                let z = images.latent(n, latent);
                for &a in &load {
                    for &zg in &z {
                        w.f16(a * zg + noise.normal())?;
                    }
                }
            }
            Ok(())
        })?;
        w.tensor(&format!("layers.{l}.global"), |w| {
            for n in 0..images.n {
                let mean = images.latent(n, latent).iter().sum::<f32>() / CELLS as f32;
                for &a in &load {
                    w.f16(a * mean + 0.5 * noise.normal())?;
                }
            }
            Ok(())
        })?;
    }
    w.finish()
}

fn brain_spec(dir: &Path, prefix: &str, images: Images, size: &Size) -> FileSpec {
    let (n, v, l) = (images.n, size.vertices, size.layers);
    let path = dir.join(format!(
        "{prefix}brain-{GENERATOR}-s{}-n{n}-v{v}-l{l}.safetensors",
        images.seed
    ));
    let tensors = vec![
        TensorSpec::new("responses", "F32", &[n, v]),
        TensorSpec::new("coords", "F32", &[v, 3]),
        TensorSpec::new("flat", "F32", &[v, 2]),
        TensorSpec::new("roi", "I32", &[v]),
        TensorSpec::new("hemisphere", "U8", &[v]),
        TensorSpec::new("noise_ceiling", "F32", &[v]),
    ];
    let metadata = BTreeMap::from([
        (
            "roi_names".to_string(),
            serde_json::to_string(&ROI_NAMES).expect("strings serialise"),
        ),
        (
            "roi_levels".to_string(),
            serde_json::to_string(&ROI_LEVELS).expect("ints serialise"),
        ),
        ("subject".to_string(), "bench-subject".to_string()),
    ]);
    FileSpec {
        path,
        tensors,
        metadata,
        content: Content::Brain(images),
    }
}

/// Responses: each vertex's latent (its layer, its cell) scaled to the vertex's noise ceiling,
/// plus noise making up the rest of unit variance.
fn write_brain(spec: &FileSpec, cortex: &Cortex, images: Images, size: &Size) -> io::Result<()> {
    let mut w = TensorWriter::create(spec)?;
    let mut noise = Rng::derive(&[images.seed, 0xB2A1]);
    let signal: Vec<f32> = cortex.noise_ceiling.iter().map(|nc| nc.sqrt()).collect();
    let rest: Vec<f32> = cortex
        .noise_ceiling
        .iter()
        .map(|nc| (1.0 - nc).sqrt())
        .collect();
    w.tensor("responses", |w| {
        for n in 0..images.n {
            let z: Vec<[f32; CELLS]> = (0..size.layers).map(|l| images.latent(n, l)).collect();
            for v in 0..cortex.len() {
                let s = z[cortex.layer[v]][cortex.cell[v]];
                w.f32(signal[v] * s + rest[v] * noise.normal())?;
            }
        }
        Ok(())
    })?;
    w.tensor("coords", |w| {
        (0..cortex.len()).try_for_each(|v| cortex.coords(v).iter().try_for_each(|&x| w.f32(x)))
    })?;
    w.tensor("flat", |w| {
        (0..cortex.len()).try_for_each(|v| cortex.flat(v).iter().try_for_each(|&x| w.f32(x)))
    })?;
    w.tensor("roi", |w| {
        cortex
            .roi
            .iter()
            .try_for_each(|r| w.bytes(&r.to_le_bytes()))
    })?;
    w.tensor("hemisphere", |w| w.bytes(&cortex.hemisphere))?;
    w.tensor("noise_ceiling", |w| {
        cortex.noise_ceiling.iter().try_for_each(|&x| w.f32(x))
    })?;
    w.finish()
}

/// The generated files of one size.
struct Files {
    features_a: FileSpec,
    features_b: FileSpec,
    brain: FileSpec,
    probe_a: FileSpec,
    probe_b: FileSpec,
    probe_brain: FileSpec,
}

impl Files {
    fn plan(dir: &Path, size: &Size) -> Files {
        let subject = Images {
            seed: 1,
            n: size.images,
        };
        let probe = Images {
            seed: 2,
            n: size.probe_images(),
        };
        Files {
            features_a: features_spec(dir, "", NET_A, subject, size),
            features_b: features_spec(dir, "", NET_B, subject, size),
            brain: brain_spec(dir, "", subject, size),
            probe_a: features_spec(dir, "probe-", NET_A, probe, size),
            probe_b: features_spec(dir, "probe-", NET_B, probe, size),
            probe_brain: brain_spec(dir, "probe-", probe, size),
        }
    }

    fn all(&self) -> [&FileSpec; 6] {
        [
            &self.features_a,
            &self.features_b,
            &self.brain,
            &self.probe_a,
            &self.probe_b,
            &self.probe_brain,
        ]
    }

    /// The files `cmds` read (a monitor-only run needs none of the subject-sized files).
    fn needed(&self, cmds: &[Cmd]) -> Vec<&FileSpec> {
        let has = |c: Cmd| cmds.contains(&c);
        let subject = cmds.iter().any(|&c| c != Cmd::Monitor);
        let mut out = Vec::new();
        if subject {
            out.push(&self.features_a);
        }
        if has(Cmd::Rank) {
            out.push(&self.features_b);
        }
        if subject {
            out.push(&self.brain);
        }
        if has(Cmd::Monitor) {
            out.extend([&self.probe_a, &self.probe_b, &self.probe_brain]);
        }
        out
    }

    /// Writes the files `cmds` read that are not there yet, one at a time.
    fn generate(&self, size: &Size, cmds: &[Cmd]) -> io::Result<()> {
        // One cortex for both brains: the probe set is shown to the same vertices.
        let cortex = Cortex::new(size.vertices, size.layers, 3);
        for spec in self.needed(cmds) {
            let name = spec.path.file_name().unwrap_or_default().to_string_lossy();
            if spec.already_there() {
                eprintln!(
                    "  reusing    {name} ({:.2} GiB)",
                    spec.file_bytes() as f64 / GIB
                );
                continue;
            }
            let t = Instant::now();
            match spec.content {
                Content::Features(net, images) => write_features(spec, net, images, size)?,
                Content::Brain(images) => write_brain(spec, &cortex, images, size)?,
            }
            let gib = spec.file_bytes() as f64 / GIB;
            eprintln!(
                "  generated  {name} ({gib:.2} GiB in {:.1} s)",
                t.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    fn remove(&self) {
        for spec in self.all() {
            let _ = fs::remove_file(&spec.path);
            let _ = fs::remove_file(spec.path.with_extension("partial"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running one command
// ---------------------------------------------------------------------------------------------

/// How a child ended.
enum Exit {
    Code(i32),
    Signal(i32),
}

struct Measured {
    wall_s: f64,
    peak_rss_bytes: u64,
    exit: Exit,
    /// The line of stderr that says why it failed ([`failure_line`]).
    last_line: String,
}

/// Runs `bin args` with stdout and stderr in files under `logs` (files, not pipes: nothing to
/// drain, and the bench holds no child output in memory) and measures it with `wait4`.
fn run_measured(bin: &Path, args: &[String], logs: &Path, name: &str) -> io::Result<Measured> {
    let stdout = File::create(logs.join(format!("{name}.stdout")))?;
    let stderr_path = logs.join(format!("{name}.stderr"));
    let stderr = File::create(&stderr_path)?;
    let start = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()?;
    let (status, usage) = wait4(child.id() as libc::pid_t)?;
    let wall_s = start.elapsed().as_secs_f64();
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Measured {
        wall_s,
        // ru_maxrss is in kilobytes on Linux.
        peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        exit,
        last_line: failure_line(&stderr_path),
    })
}

/// Waits for the child `pid` and returns its wait status and resource usage, whose `ru_maxrss`
/// is the child's own peak (std's `Child::wait` does not give the usage).
fn wait4(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data, for which all-zero bytes are a valid value; `wait4`
    // only writes through the two pointers, which point to live locals of the right types for
    // the duration of the call. `pid` is our own unwaited child, so no other waiter races us.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: see above.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A one-line failure reason from a child's stderr (its last 8 KiB): the last line that starts
/// with `error` (clap prints usage and a hint after its error line), else the last non-empty one.
fn failure_line(path: &Path) -> String {
    let tail = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(8192)))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = tail().unwrap_or_default();
    // Progress bars end their lines with '\r'.
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines.iter().rfind(|l| l.starts_with("error"));
    error
        .or(lines.last())
        .map_or(String::new(), |l| l.to_string())
}

// ---------------------------------------------------------------------------------------------
// One row: what a command reads and how it is called
// ---------------------------------------------------------------------------------------------

/// What one command reads: the table reports its sizes and holds it to the memory bound.
struct Inputs {
    images: usize,
    vertices: usize,
    /// One network's features file.
    features_bytes: u64,
    brain_bytes: u64,
}

struct Plan<'a> {
    size: &'a Size,
    files: &'a Files,
    out: PathBuf,
    opts: &'a Opts,
}

impl Plan<'_> {
    fn path(spec: &FileSpec) -> String {
        spec.path.display().to_string()
    }

    fn out(&self, name: &str) -> String {
        self.out.join(name).display().to_string()
    }

    fn encoder(&self) -> PathBuf {
        self.out.join("fit").join("encoder.safetensors")
    }

    fn inputs(&self, cmd: Cmd) -> Inputs {
        let f = self.files;
        let (features, brain, images) = match cmd {
            Cmd::Monitor => (&f.probe_a, &f.probe_brain, self.size.probe_images()),
            _ => (&f.features_a, &f.brain, self.size.images),
        };
        Inputs {
            images,
            vertices: self.size.vertices,
            features_bytes: features.file_bytes(),
            brain_bytes: brain.file_bytes(),
        }
    }

    /// The command line of `cmd`, without the binary.
    fn args(&self, cmd: Cmd) -> Vec<String> {
        let f = self.files;
        let (feat, brain) = (Self::path(&f.features_a), Self::path(&f.brain));
        let mut a: Vec<String> = match cmd {
            Cmd::Fit => [
                "fit",
                "--features",
                &feat,
                "--brain",
                &brain,
                "--out",
                &self.out("fit"),
                "--no-plots",
            ]
            .map(String::from)
            .to_vec(),
            Cmd::Ridge => {
                let out = self.out("ridge");
                [
                    "fit",
                    "--method",
                    "ridge",
                    "--features",
                    &feat,
                    "--brain",
                    &brain,
                    "--out",
                    &out,
                    "--no-plots",
                ]
                .map(String::from)
                .to_vec()
            }
            Cmd::Score => {
                let enc = self.encoder().display().to_string();
                [
                    "score",
                    "--encoder",
                    &enc,
                    "--features",
                    &feat,
                    "--brain",
                    &brain,
                    "--out",
                    &self.out("score.json"),
                ]
                .map(String::from)
                .to_vec()
            }
            Cmd::Predict => {
                let enc = self.encoder().display().to_string();
                [
                    "predict",
                    "--encoder",
                    &enc,
                    "--features",
                    &feat,
                    "--out",
                    &self.out("predictions.safetensors"),
                ]
                .map(String::from)
                .to_vec()
            }
            Cmd::Rank => ["rank", "--brain", &brain, &feat, &Self::path(&f.features_b)]
                .map(String::from)
                .to_vec(),
            Cmd::Monitor => {
                let (pa, pb, pbrain) = (
                    Self::path(&f.probe_a),
                    Self::path(&f.probe_b),
                    Self::path(&f.probe_brain),
                );
                [
                    "monitor",
                    "--brain",
                    &pbrain,
                    "--reference",
                    &pa,
                    "--out",
                    &self.out("monitor"),
                    &pb,
                ]
                .map(String::from)
                .to_vec()
            }
        };
        if let (Some(k), Cmd::Fit | Cmd::Rank | Cmd::Monitor) = (self.opts.epochs, cmd) {
            a.extend(["--epochs".to_string(), k.to_string()]);
        }
        if let Some(extra) = &self.opts.extra {
            a.extend(extra.split_whitespace().map(String::from));
        }
        a
    }

    /// Why `cmd` cannot run now, if it cannot.
    fn blocked(&self, cmd: Cmd) -> Option<String> {
        let needs_encoder = matches!(cmd, Cmd::Score | Cmd::Predict);
        (needs_encoder && !self.encoder().is_file())
            .then(|| "skipped: needs fit's encoder (run fit first)".to_string())
    }

    /// The fit's wall time per optimiser step, the steps read from its report.json
    /// (`fit.steps`). The wall time includes loading, scoring and writing: what a user waits for.
    fn seconds_per_step(&self, wall_s: f64) -> Option<f64> {
        let text = fs::read_to_string(self.out.join("fit").join("report.json")).ok()?;
        let report: serde_json::Value = serde_json::from_str(&text).ok()?;
        let steps = report.get("fit")?.get("steps")?.as_u64()?;
        (steps > 0).then(|| wall_s / steps as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn table_header() {
    println!(
        "| size | command | images × vertices | layers × channels | features GiB | brain GiB | wall s | s/step \
         | peak RSS GiB | RSS / (features + brain) | bound GiB | run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn print_row(
    size: &Size,
    cmd: Cmd,
    inputs: &Inputs,
    result: Result<(Measured, Option<f64>), String>,
) {
    let input = (inputs.features_bytes + inputs.brain_bytes) as f64;
    let bound = 1.2 * input + GIB;
    let lead = format!(
        "| {} | {} | {} × {} | {} × {} | {:.2} | {:.2} |",
        size.name,
        cmd.name(),
        inputs.images,
        inputs.vertices,
        size.layers,
        size.channels,
        inputs.features_bytes as f64 / GIB,
        inputs.brain_bytes as f64 / GIB
    );
    let (m, per_step) = match result {
        Ok(r) => r,
        Err(why) => {
            println!("{lead} | | | | {:.2} | {} |", bound / GIB, cell(&why));
            return;
        }
    };
    let peak = m.peak_rss_bytes as f64;
    let verdict = if peak <= bound { "ok" } else { "OVER" };
    let run = match m.exit {
        Exit::Code(0) => "ok".to_string(),
        Exit::Code(c) => format!("FAILED (exit {c}): {}", m.last_line),
        Exit::Signal(s) => format!(
            "KILLED by signal {s}{}: {}",
            if s == libc::SIGKILL {
                " (OOM killer?)"
            } else {
                ""
            },
            m.last_line
        ),
    };
    println!(
        "{lead} {:.1} | {} | {:.2} | {:.2} | {:.2} {verdict} | {} |",
        m.wall_s,
        per_step.map_or(String::new(), |s| format!("{s:.3}")),
        peak / GIB,
        peak / input,
        bound / GIB,
        cell(&run)
    );
}

/// Text safe inside a markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores (nproc), {cpu}, MemTotal {:.1} GiB",
        mem_kib / (1u64 << 20) as f64
    )
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC` (civil-from-days, H. Hinnant).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// The release binary, built when it does not exist yet.
fn binary(opts: &Opts) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(&opts.bin);
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "{} is missing: cargo build --release --bin factortopy",
        bin.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "--bin", "factortopy"])
        .current_dir(root)
        .status()
        .is_ok_and(|s| s.success());
    if ok && bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("could not build {}", bin.display()))
    }
}

/// The working folder and whether this run created it (and so may remove it).
fn work_dir(opts: &Opts) -> io::Result<(PathBuf, bool)> {
    if let Some(d) = &opts.dir {
        let created = !d.exists();
        fs::create_dir_all(d)?;
        return Ok((d.clone(), created));
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let d = std::env::temp_dir().join(format!(
        "factortopy-subject-scale-{}-{stamp}",
        std::process::id()
    ));
    fs::create_dir(&d)?;
    Ok((d, true))
}

/// Generates the files of `size`, then runs `cmds` one after another, printing a row each (or,
/// without a binary, lists the files). Removes the files and outputs afterwards, also after an
/// error, unless --keep: the larger sizes leave tens of GiB behind otherwise.
fn run_size(
    size: &Size,
    cmds: &[Cmd],
    bin: Option<&Path>,
    dir: &Path,
    opts: &Opts,
) -> io::Result<()> {
    let files = Files::plan(dir, size);
    let out = dir.join(format!("out-{}", size.name));
    let result = generate_and_run(size, &files, cmds, bin, &out, opts);
    if !opts.keep {
        files.remove();
        let _ = fs::remove_dir_all(&out);
    }
    result
}

fn generate_and_run(
    size: &Size,
    files: &Files,
    cmds: &[Cmd],
    bin: Option<&Path>,
    out: &Path,
    opts: &Opts,
) -> io::Result<()> {
    let total: u64 = files.needed(cmds).iter().map(|s| s.file_bytes()).sum();
    eprintln!(
        "{}: {} images × {} vertices, {} × {}; {:.2} GiB of input files in {}",
        size.name,
        size.images,
        size.vertices,
        size.layers,
        size.channels,
        total as f64 / GIB,
        out.parent().unwrap_or(out).display()
    );
    files.generate(size, cmds)?;
    let Some(bin) = bin else {
        for spec in files.needed(cmds) {
            println!(
                "{:>8.3} GiB  {}",
                spec.file_bytes() as f64 / GIB,
                spec.path.display()
            );
        }
        return Ok(());
    };
    // Outputs of an earlier run would let score and predict run without this run's fit.
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out)?;
    let plan = Plan {
        size,
        files,
        out: out.to_path_buf(),
        opts,
    };
    for &cmd in cmds {
        let result = match plan.blocked(cmd) {
            Some(why) => Err(why),
            None => run_measured(bin, &plan.args(cmd), out, cmd.name())
                .map_err(|e| format!("could not run {}: {e}", bin.display()))
                .map(|m| {
                    let per_step = (cmd == Cmd::Fit && matches!(m.exit, Exit::Code(0)))
                        .then(|| plan.seconds_per_step(m.wall_s))
                        .flatten();
                    (m, per_step)
                }),
        };
        print_row(size, cmd, &plan.inputs(cmd), result);
    }
    Ok(())
}

fn main() {
    let opts = Opts::parse();
    let parsed = (|| -> Result<(Vec<Size>, Vec<Cmd>), String> {
        let sizes = opts
            .sizes
            .iter()
            .map(|s| Size::parse(s.trim(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cmds = opts
            .commands
            .iter()
            .map(|c| Cmd::parse(c.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        cmds.sort();
        cmds.dedup();
        Ok((sizes, cmds))
    })();
    let (sizes, cmds) = parsed.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let bin = if opts.generate_only {
        None
    } else {
        match binary(&opts) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    };
    let (dir, created) = work_dir(&opts).unwrap_or_else(|e| {
        eprintln!("error: cannot create the working folder: {e}");
        std::process::exit(1);
    });
    println!("subject_scale, {}", utc_now());
    println!("machine: {}", machine());
    if let Some(b) = &bin {
        println!(
            "binary: {}{}",
            b.display(),
            opts.extra
                .as_deref()
                .map_or(String::new(), |e| format!(", extra flags: {e}"))
        );
        println!("bound: 1.2 × (features + brain) + 1 GiB, features = one network's file (rank and monitor read two)\n");
        table_header();
    }
    let mut failed = false;
    for size in &sizes {
        if let Err(e) = run_size(size, &cmds, bin.as_deref(), &dir, &opts) {
            eprintln!("error: size {}: {e}", size.name);
            failed = true;
        }
    }
    if created && !opts.keep {
        let _ = fs::remove_dir_all(&dir);
    } else if opts.keep {
        eprintln!("kept: {}", dir.display());
    }
    if failed {
        std::process::exit(1);
    }
}
