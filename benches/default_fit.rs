//! Wall time of `factortopy fit` and `factortopy rank` with their default settings, as a user
//! runs them (the goal: the default `fit` at 800 images × 4 000 voxels × 6 layers in ≤ 2 minutes,
//! `rank` of three such networks in ≤ 6 minutes on the 2-core machine). Everything the commands
//! do is timed: reading the inputs, the fit with the default schedule, the bootstrap and
//! permutations, and (for `fit`) the pictures. The planted data come from `factortopy synth`
//! (hierarchical scenario); `rank` gets that network's features K times (`--networks K`), so
//! every one of its fits learns the planted brain, as real networks' fits do (unrelated random
//! networks stop early and would understate the time). The load average is printed before and
//! after, since the machine is shared.
//!
//! Usage: `cargo bench --bench default_fit -- [--images N --voxels V --layers L --width C
//! --networks K --preset auto|design|fast --skip-fit --skip-rank]`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the CLI with `args`; its stderr (progress) is passed through.
fn factortopy(args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_factortopy"))
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run factortopy");
    assert!(out.status.success(), "factortopy {args:?} failed: {}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let images = arg(&args, "--images").unwrap_or("800");
    let voxels = arg(&args, "--voxels").unwrap_or("4000");
    let layers = arg(&args, "--layers").unwrap_or("6");
    let width = arg(&args, "--width").unwrap_or("64");
    let networks: usize = arg(&args, "--networks").and_then(|s| s.parse().ok()).unwrap_or(3);
    let preset = arg(&args, "--preset").unwrap_or("auto");
    let skip_fit = args.iter().any(|a| a == "--skip-fit");
    let skip_rank = args.iter().any(|a| a == "--skip-rank");
    let dir = tempfile::tempdir().expect("temporary directory");
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_string();
    let net = dir.path().join("net");
    factortopy(&[
        "synth", "--out", &s(&net), "--images", images, "--voxels", voxels, "--layers", layers, "--width", width, "--seed",
        "1",
    ]);
    let brain = s(&net.join("brain.safetensors"));
    let features = |_: usize| s(&net.join("features.safetensors"));
    println!("size: {images} images x {voxels} voxels x {layers} layers of width {width}; preset {preset}");
    if !skip_fit {
        println!("load average before fit: {}", loadavg());
        let fit_out = s(&dir.path().join("fit"));
        let secs =
            factortopy(&["fit", "--features", &features(0), "--brain", &brain, "--out", &fit_out, "--preset", preset]);
        println!("RESULT fit: {secs:.1} s (load average after: {})", loadavg());
    }
    if skip_rank {
        return;
    }
    println!("load average before rank: {}", loadavg());
    let mut rank = vec!["rank".to_string(), "--brain".into(), brain.clone(), "--preset".into(), preset.into()];
    rank.extend((0..networks).map(features));
    let rank: Vec<&str> = rank.iter().map(String::as_str).collect();
    let secs = factortopy(&rank);
    println!("RESULT rank of {networks} networks: {secs:.1} s (load average after: {})", loadavg());
}
