//! The fuzz suite for bad input: valid features, brain, encoder, monitor-state and `.npy` files are
//! mutated (truncation, flipped bytes, header lengths, dtypes, shapes, NaN/Inf, metadata JSON,
//! control characters, duplicate keys) and handed to every loader (in process, under
//! `catch_unwind`) and to the CLI commands that read them (as subprocesses with a time limit).
//! Each run must end in success or in exit 1 with one error line; never a panic, an abort, a
//! signal or a hang, and a failed command leaves no output behind.
//!
//! Deterministic from a seed. `cargo test --release` runs `FACTORTOPY_FUZZ_CASES` cases
//! (default 400, about half a minute on two cores); more on demand:
//!
//! ```text
//! FACTORTOPY_FUZZ_CASES=2000 FACTORTOPY_FUZZ_SEED=7 cargo test --release --test cli fuzz_inputs:: -- --nocapture
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use factortopy::data::{read_npy, read_npy_i64, write_npy, Array, Brain, Features};
use factortopy::model::encoder_file::load_encoder;
use factortopy::monitor::Monitor;
use factortopy::rng::Rng;

use crate::common::cli::{bin, s};

/// Wall-clock limit of one CLI run (the commands below take well under a second on the small
/// inputs; a run this long is a hang).
const LIMIT: Duration = Duration::from_secs(60);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Features,
    Brain,
    Encoder,
    MonitorState,
    Npy,
}

struct Seeds {
    dir: PathBuf,
}

impl Seeds {
    fn features(&self) -> PathBuf {
        self.dir.join("features.safetensors")
    }
    fn brain(&self) -> PathBuf {
        self.dir.join("brain.safetensors")
    }
    fn encoder(&self) -> PathBuf {
        self.dir.join("fit/encoder.safetensors")
    }
    fn state(&self) -> PathBuf {
        self.dir.join("mon/monitor.safetensors")
    }
    fn npy(&self) -> PathBuf {
        self.dir.join("coords.npy")
    }
    fn seed_file(&self, k: Kind) -> PathBuf {
        match k {
            Kind::Features => self.features(),
            Kind::Brain => self.brain(),
            Kind::Encoder => self.encoder(),
            Kind::MonitorState => self.state(),
            Kind::Npy => self.npy(),
        }
    }
}

/// Runs the CLI with a time limit: (exit code or None for a signal, stderr, timed out).
fn run_cli(args: &[&str]) -> (Option<i32>, String, bool) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn factortopy");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let t0 = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > LIMIT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (status.code(), reader.join().unwrap_or_default(), timed_out)
}

fn setup(dir: &Path) -> Seeds {
    let seeds = Seeds { dir: dir.to_path_buf() };
    let ok = |args: &[&str]| {
        let (code, err, _) = run_cli(args);
        assert_eq!(code, Some(0), "setup {args:?} failed: {err}");
    };
    ok(&["synth", "--out", s(dir), "--images", "120", "--voxels", "30", "--layers", "2", "--width", "3", "--grid", "2", "--noise-ceiling", "0.9", "--seed", "1"]);
    let (f, b) = (seeds.features(), seeds.brain());
    ok(&["fit", "--features", s(&f), "--brain", s(&b), "--out", s(&dir.join("fit")), "--preset", "fast", "--epochs", "25", "--dim", "4", "--grid", "2", "--val-fraction", "0.25", "--quiet"]);
    ok(&["monitor", "--brain", s(&b), "--reference", s(&f), "--encoder", s(&seeds.encoder()), "--out", s(&dir.join("mon")), s(&f)]);
    let coords: Vec<f32> = (0..30 * 3).map(|i| (i % 7) as f32).collect();
    write_npy(&seeds.npy(), &Array::new(vec![30, 3], coords).unwrap()).unwrap();
    seeds
}

/// Offset and length of a safetensors JSON header (or a .npy header dict), when readable.
fn header_span(kind: Kind, b: &[u8]) -> Option<(usize, usize)> {
    if kind == Kind::Npy {
        let n = u16::from_le_bytes(b.get(8..10)?.try_into().ok()?) as usize;
        return (10 + n <= b.len()).then_some((10, n));
    }
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    (n.checked_add(8)? <= b.len()).then_some((8, n))
}

/// Replaces the `k`-th match of `pat` inside the header with `with`, fixing the length prefix.
fn replace_in_header(kind: Kind, b: &mut Vec<u8>, rng: &mut Rng, pats: &[&str], with: &str) -> bool {
    let Some((start, n)) = header_span(kind, b) else { return false };
    let text = String::from_utf8_lossy(&b[start..start + n]).into_owned();
    let hits: Vec<(usize, &str)> = pats.iter().flat_map(|p| text.match_indices(p).collect::<Vec<_>>()).collect();
    if hits.is_empty() {
        return false;
    }
    let (at, pat) = hits[rng.below(hits.len())];
    let new = format!("{}{}{}", &text[..at], with, &text[at + pat.len()..]);
    let mut out = b[..start].to_vec();
    if kind == Kind::Npy {
        out[8..10].copy_from_slice(&(new.len() as u16).to_le_bytes());
    } else {
        out[..8].copy_from_slice(&(new.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&b[start + n..]);
    *b = out;
    true
}

const NUMBERS: &[&str] = &["0", "1", "-1", "4294967296", "18446744073709551615", "1e308", "99999999999999999999", "2.5", "null", "\"3\""];
const DTYPES: &[&str] = &["\"F64\"", "\"F16\"", "\"BF16\"", "\"I8\"", "\"BOOL\"", "\"U64\"", "\"F8_E4M3\"", "\"C64\"", "\"\"", "7"];
const NPY_DESCRS: &[&str] = &["'f4'", "'>f4'", "'<f8'", "'|b1'", "'<u8'", "'O'", "'<c16'", "'S3'", "[('a', '<f4')]", "'<i2'"];
const JSON_VALUES: &[&str] = &["\"[]\"", "\"{}\"", "\"NaN\"", "\"[1e999]\"", "\"[-1]\"", "\"[\\\"a\\u0000\\\"]\"", "\"\\n\\u001b[2J\"", "\"x\"", "\"[4294967296]\"", "\"[0.5]\""];

/// One mutation of the bytes of a valid file; returns its description.
fn mutate(kind: Kind, b: &mut Vec<u8>, rng: &mut Rng) -> String {
    let len = b.len();
    match rng.below(9) {
        0 => {
            let cut = rng.below(len);
            b.truncate(cut);
            format!("truncated to {cut} bytes")
        }
        1 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            format!("{n} flipped bits")
        }
        2 => {
            // The header length prefix.
            let v = [0u64, 1, 7, u64::MAX, u64::MAX / 2, len as u64, len as u64 - 9, 1 << 40][rng.below(8)];
            if kind == Kind::Npy {
                b[8..10].copy_from_slice(&(v as u16).to_le_bytes());
            } else {
                b[..8].copy_from_slice(&v.to_le_bytes());
            }
            format!("header length {v}")
        }
        3 => {
            let (pats, with): (&[&str], &str) = if kind == Kind::Npy {
                (&["'<f4'"], NPY_DESCRS[rng.below(NPY_DESCRS.len())])
            } else {
                (&["\"F32\"", "\"I32\"", "\"U8\""], DTYPES[rng.below(DTYPES.len())])
            };
            if replace_in_header(kind, b, rng, pats, with) { format!("dtype -> {with}") } else { "dtype (no match)".into() }
        }
        4 => {
            // A number in the header: a shape extent, an offset, a metadata size.
            let with = NUMBERS[rng.below(NUMBERS.len())];
            let pats = ["0", "1", "2", "3", "4", "8", "30", "48"];
            if replace_in_header(kind, b, rng, &pats, with) { format!("a header number -> {with}") } else { "number (no match)".into() }
        }
        5 => {
            // NaN/Inf written over an aligned f32 in the data.
            let start = header_span(kind, b).map_or(0, |(s, n)| s + n);
            if len < start + 4 {
                return "nan (no data)".into();
            }
            let at = start + 4 * rng.below((len - start) / 4);
            let v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -0.0, 1e-45][rng.below(6)];
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            format!("{v} at byte {at}")
        }
        6 if kind != Kind::Npy => {
            // A metadata value replaced by other JSON.
            let with = JSON_VALUES[rng.below(JSON_VALUES.len())];
            let Some((start, n)) = header_span(kind, b) else { return "metadata (no header)".into() };
            let text = String::from_utf8_lossy(&b[start..start + n]).into_owned();
            let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str::<serde_json::Value>(&text) else {
                return "metadata (unparsable)".into();
            };
            let Some(serde_json::Value::Object(meta)) = m.get_mut("__metadata__") else { return "metadata (none)".into() };
            let keys: Vec<String> = meta.keys().cloned().collect();
            let key = keys[rng.below(keys.len())].clone();
            meta.insert(key.clone(), serde_json::from_str(with).unwrap());
            let new = serde_json::to_string(&m).unwrap();
            let mut out = (new.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(new.as_bytes());
            out.extend_from_slice(&b[start + n..]);
            *b = out;
            format!("metadata `{key}` -> {with}")
        }
        7 if kind != Kind::Npy => {
            // A tensor renamed (control characters) or listed twice.
            let Some((start, n)) = header_span(kind, b) else { return "names (no header)".into() };
            let text = String::from_utf8_lossy(&b[start..start + n]).into_owned();
            let Some(at) = text[1..].find("\":{").map(|i| i + 1) else { return "names (none)".into() };
            let new = if rng.below(2) == 0 {
                format!("{}\\n\\u001b{}", &text[..at], &text[at..])
            } else {
                // Duplicate the first entry.
                let end = text[at..].find('}').map(|i| at + i + 1).unwrap_or(text.len());
                let first_key_start = text[..at].rfind('"').unwrap_or(1);
                format!("{},{}", &text[..end], &text[first_key_start..end]) + &text[end..]
            };
            let mut out = (new.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(new.as_bytes());
            out.extend_from_slice(&b[start + n..]);
            *b = out;
            "tensor names".into()
        }
        _ => {
            // Several of the above at once.
            let a = mutate(kind, b, rng);
            if b.is_empty() {
                return a;
            }
            format!("{a}; {}", mutate(kind, b, rng))
        }
    }
}

/// The in-process loaders of a file kind, under `catch_unwind`; a panic is a crash.
fn load_in_process(kind: Kind, p: &Path, brain: &Brain) -> Result<(), String> {
    let r = catch_unwind(AssertUnwindSafe(|| match kind {
        Kind::Features => Features::load(p).map(drop).map_err(|e| e.to_string()),
        Kind::Brain => Brain::load(p).map(drop).map_err(|e| e.to_string()),
        Kind::Encoder => load_encoder(p).map(drop).map_err(|e| e.to_string()),
        Kind::MonitorState => Monitor::load(p, brain).map(drop).map_err(|e| e.to_string()),
        Kind::Npy => {
            let a = read_npy(p).map(drop).map_err(|e| e.to_string());
            let _ = read_npy_i64(p);
            a
        }
    }));
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(msg)) if msg.contains('\n') => Err(format!("multi-line error: {msg:?}")),
        Ok(Err(_)) => Ok(()),
        Err(_) => Err("panic in the loader".into()),
    }
}

/// The CLI commands that read a file of this kind, with the mutated file in its place.
fn commands(kind: Kind, m: &Path, seeds: &Seeds, out: &Path) -> Vec<Vec<String>> {
    let (f, b, e) = (seeds.features(), seeds.brain(), seeds.encoder());
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let tiny = ["--preset", "fast", "--epochs", "1", "--dim", "4", "--grid", "2", "--quiet"];
    let fit = |ff: &Path, bb: &Path| {
        let mut a = v(&["fit", "--features", s(ff), "--brain", s(bb), "--out", s(out)]);
        a.extend(v(&tiny));
        a
    };
    match kind {
        Kind::Features => vec![
            fit(m, &b),
            v(&["score", "--encoder", s(&e), "--features", s(m), "--brain", s(&b), "--out", s(&out.join("r.json"))]),
            v(&["monitor", "--brain", s(&b), "--reference", s(&f), "--encoder", s(&e), "--out", s(out), s(m)]),
            v(&["rank", "--brain", s(&b), s(m), "--method", "ridge", "--quiet", "--out", s(out)]),
            v(&["synth", "--from-features", s(m), "--out", s(out), "--voxels", "20"]),
        ],
        Kind::Brain => vec![
            fit(&f, m),
            v(&["score", "--encoder", s(&e), "--features", s(&f), "--brain", s(m), "--out", s(&out.join("r.json"))]),
        ],
        Kind::Encoder => vec![
            v(&["score", "--encoder", s(m), "--features", s(&f), "--brain", s(&b), "--out", s(&out.join("r.json"))]),
            v(&["monitor", "--brain", s(&b), "--reference", s(&f), "--encoder", s(m), "--out", s(out), s(&f)]),
        ],
        // No command reads a monitor state; its loader runs in process.
        Kind::MonitorState => vec![],
        Kind::Npy => vec![v(&["import-algonauts", s(&seeds.dir.join("nodir")), "--out", s(&out.join("b.safetensors")), "--coords", s(m)])],
    }
}

/// Checks one CLI run; `Err` describes a crash.
fn check_run(args: &[String], out: &Path) -> Result<(), String> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, err, timed_out) = run_cli(&refs);
    if timed_out {
        return Err(format!("hang (killed after {LIMIT:?})"));
    }
    if err.contains("panicked") {
        return Err(format!("panic: {err}"));
    }
    match code {
        Some(0) => Ok(()),
        Some(1) => {
            let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
            if errors.len() != 1 || err.lines().last() != Some(errors[0]) {
                return Err(format!("exit 1 without exactly one final error line: {err:?}"));
            }
            if out.exists() {
                return Err(format!("failed run left output {}", out.display()));
            }
            Ok(())
        }
        other => Err(format!("exit status {other:?} (signal or abort): {err}")),
    }
}

#[test]
fn mutated_inputs_never_crash_any_loader_or_command() {
    let cases = env_num("FACTORTOPY_FUZZ_CASES", 400);
    let seed = env_num("FACTORTOPY_FUZZ_SEED", 12);
    let tmp = tempfile::tempdir().unwrap();
    let seeds = setup(&tmp.path().join("seeds"));
    let brain = Brain::load(&seeds.brain()).unwrap();
    let kinds = [Kind::Features, Kind::Brain, Kind::Encoder, Kind::MonitorState, Kind::Npy];
    let mut rng = Rng::derive(seed, "fuzz");
    let (mut crashes, mut runs, mut accepted) = (Vec::new(), 0usize, 0usize);
    let t0 = Instant::now();
    for case in 0..cases {
        let kind = kinds[case as usize % kinds.len()];
        let mut bytes = std::fs::read(seeds.seed_file(kind)).unwrap();
        let what = mutate(kind, &mut bytes, &mut rng);
        let m = tmp.path().join(format!("case{case}.{}", if kind == Kind::Npy { "npy" } else { "safetensors" }));
        std::fs::write(&m, &bytes).unwrap();
        if let Err(c) = load_in_process(kind, &m, &brain) {
            crashes.push(format!("case {case} ({kind:?}, {what}): loader: {c}"));
        }
        // One of the kind's commands per case, rotating, so every command sees mutated files.
        let cmds = commands(kind, &m, &seeds, &tmp.path().join(format!("out{case}")));
        if !cmds.is_empty() {
            let args = &cmds[(case as usize / kinds.len()) % cmds.len()];
            let out = tmp.path().join(format!("out{case}"));
            runs += 1;
            match check_run(args, &out) {
                Ok(()) if out.exists() => accepted += 1,
                Ok(()) => {}
                Err(c) => crashes.push(format!("case {case} ({kind:?}, {what}): `{}`: {c}", args.join(" "))),
            }
            let _ = std::fs::remove_dir_all(&out);
        }
        let _ = std::fs::remove_file(&m);
    }
    eprintln!(
        "fuzz: {cases} cases (seed {seed}), {runs} CLI runs ({accepted} accepted the mutated file), {} crashes, {:.1} s",
        crashes.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(crashes.is_empty(), "{} crashes:\n{}", crashes.len(), crashes.join("\n"));
}
