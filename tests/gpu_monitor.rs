//! The forgetting monitor on a CUDA device (DESIGN §5): the reference fit, `observe`
//! (retention through the one predict path) and refits run on the GPU, and agree with the same
//! monitor on the CPU. Without a GPU each test prints `SKIPPED: <reason>`; the device errors are
//! checked everywhere. On the CPU emulator of a CUDA device (scripts/cuda-emu) the scenario has
//! fewer voxels.

mod common;

use factortopy::engine::Device;
use factortopy::model::FitConfig;
use factortopy::monitor::MonitorConfig;
use factortopy::Error;

fn config(device: Device) -> MonitorConfig {
    MonitorConfig {
        fit: FitConfig { d: 16, grid: 4, max_epochs: 8, batch_size: 16, lr: 3e-3, reg_steps: 100, seed: 3, ..FitConfig::default() },
        held_out_fraction: 0.2,
        refit_every: 2,
        refit_max_steps: 20,
        device,
        ..MonitorConfig::default()
    }
}

/// Runs everywhere: a monitor on a device that cannot be used is refused with
/// `Error::DeviceUnavailable`
/// before any fitting, whether the build lacks CUDA or the machine lacks the device.
#[test]
fn unusable_devices_are_refused_up_front() {
    let e = config(Device::Cuda(1_000_000)).validate().unwrap_err();
    assert!(matches!(e, Error::DeviceUnavailable { .. }), "{e}");
}

#[cfg(feature = "cuda")]
mod on_gpu {
    use super::{common, config};
    use common::planted;
    use factortopy::data::Features;
    use factortopy::engine::Device;
    use factortopy::monitor::Monitor;
    use factortopy::rng::Rng;
    use factortopy::synth::{Scenario, SynthConfig};

    fn noisy(f: &Features, sigma: f32, seed: u64) -> Features {
        let mut out = f.clone();
        let mut rng = Rng::new(seed);
        for l in &mut out.layers {
            for x in l.local.data.iter_mut() {
                *x += sigma * rng.normal() as f32;
            }
        }
        out
    }

    #[test]
    fn observe_on_the_gpu_equals_observe_on_the_cpu() {
        let Some(g) = common::gpu_or_skip("observe_on_the_gpu_equals_observe_on_the_cpu") else { return };
        // On the CPU emulator of a CUDA device (scripts/cuda-emu) the same test on fewer voxels,
        // so that its fits take seconds, not minutes.
        let (n_images, n_voxels) = if common::on_emulator(&g) { (300, 250) } else { (300, 400) };
        let (syn, brain) = planted(&SynthConfig {
            scenario: Scenario::Hierarchical,
            n_images,
            n_voxels,
            n_layers: 4,
            width: 16,
            grid: 4,
            noise_ceiling: 0.8,
            seed: 11,
            ..SynthConfig::default()
        });
        // The reference fit on the GPU, then the same reference encoder observed on both devices.
        let t = std::time::Instant::now();
        let gpu_mon = Monitor::new(&brain, &syn.features, config(Device::Cuda(g.ordinal)), None).unwrap();
        eprintln!("reference fit on cuda:{}: {:.1} s, held-out R² {:.4}", g.ordinal, t.elapsed().as_secs_f64(), gpu_mon.reference_r2());
        assert!(gpu_mon.reference_r2() > 0.05, "the GPU reference fit predicts (R² {})", gpu_mon.reference_r2());
        let enc = gpu_mon.encoder().deep_copy().unwrap();
        let record = gpu_mon.fit_record().clone();
        let mut on_gpu = gpu_mon;
        let mut on_cpu = Monitor::with_encoder(&brain, &syn.features, enc, record, config(Device::Cpu)).unwrap();
        for (k, sigma) in [0.0f32, 0.5, 1.0].into_iter().enumerate() {
            let f = noisy(&syn.features, sigma, k as u64);
            let t = std::time::Instant::now();
            let a = on_gpu.observe(k as u64, &f).unwrap();
            let gpu_s = t.elapsed().as_secs_f64();
            let b = on_cpu.observe(k as u64, &f).unwrap();
            eprintln!("σ {sigma}: retention GPU {:.6} CPU {:.6} (GPU observe {:.3} s)", a.retention, b.retention, gpu_s);
            assert!((a.retention - b.retention).abs() < 1e-4, "retention {} (GPU) vs {} (CPU)", a.retention, b.retention);
            for (x, y) in a.cka.iter().zip(&b.cka) {
                assert!((x - y).abs() < 1e-9, "CKA does not depend on the device: {x} vs {y}");
            }
            if let (Some(ra), Some(rb)) = (&a.refit, &b.refit) {
                eprintln!("refit: slope GPU {:?} CPU {:?}", ra.hierarchy.slope, rb.hierarchy.slope);
                assert!((ra.r2 - rb.r2).abs() < 2e-2, "refit R² {} (GPU) vs {} (CPU)", ra.r2, rb.r2);
            }
        }
    }
}
