//! The schedule of a fit for a probe set of N images (a probe set of hundreds of images needs a
//! shorter warm-up than DESIGN's ten thousand): the optimiser step, how long the regulariser's
//! warm-up lasts, how patient early stopping is and how long a fit may run. The one
//! place where a front end's default settings are resolved ([`Preset::config`]): the CLI (`fit`,
//! `rank`, `monitor`), the C ABI (`ft_fit_config_new`, and NULL options in the older forms) and Python go
//! through it.
//!
//! DESIGN §3.5 counts the warm-up in optimiser steps (2000 at lr 1e-3, batch 8) and patience in
//! epochs, a schedule made for ~10 000 images (1125 steps an epoch: the warm-up is over within two
//! epochs). On 800 images (90 steps an epoch) the same numbers keep the regulariser on for 22 of
//! the 40 epochs, patience cannot start before then, and lr 1e-3 needs tens of thousands of steps:
//! the fit runs all 40 epochs (≈ 13 minutes at 800 × 4 000 voxels on the 2-core machine) and is
//! still far from converged. The default ([`FitConfig::for_images`]) counts everything in optimiser
//! steps, which is what the optimisation depends on, and turns steps into epochs with N:
//!
//! - the optimiser step of the fast preset, lr 1e-2 at batch 32 (10× DESIGN's lr at 4× its
//!   batch). Smaller batches at this lr were unstable on planted data (at batch 16 one planted set
//!   of 800 images never learned the locations), and a learning rate scaled down with the batch
//!   gains nothing per epoch;
//! - the warm-up fades over [`WARMUP_STEPS`] = 150 optimiser steps, whatever N: Adam's step is
//!   about lr, so at 10× the learning rate that moves the parameters about as far as DESIGN's
//!   2000 steps at lr 1e-3 (the fast preset's 300 steps converged later);
//! - patience is [`PATIENCE_STEPS`] = 60 optimiser steps, in whole epochs, at least two;
//! - a fit runs at most [`MAX_STEPS`] = 1200 optimiser steps (38 400 image presentations, which
//!   bounds the wall time whatever N), in whole epochs, at least [`MIN_EPOCHS`] and at most
//!   DESIGN's 40: planted data converge in 300–500 steps from 400 to 10 000 images
//!   (docs/schedule.md), so early stopping is the usual end.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::model::FitConfig;

/// Learning rate of the default schedule.
pub const LR: f64 = 1e-2;
/// Batch size of the default schedule.
pub const BATCH: usize = 32;
/// Optimiser steps over which the warm-up regulariser fades.
pub const WARMUP_STEPS: usize = 150;
/// Optimiser steps without improvement (after the warm-up) before stopping.
pub const PATIENCE_STEPS: usize = 60;
/// Fewest epochs of patience.
pub const MIN_PATIENCE_EPOCHS: usize = 2;
/// Longest fit in optimiser steps.
pub const MAX_STEPS: usize = 1200;
/// Fewest epochs [`MAX_STEPS`] may turn into.
pub const MIN_EPOCHS: usize = 3;
/// Most epochs [`MAX_STEPS`] may turn into (DESIGN's maximum).
pub const MAX_EPOCHS: usize = 40;

impl FitConfig {
    /// The default schedule for a probe set of `n_images` images (module docs): DESIGN's
    /// settings except lr, batch, warm-up, patience and maximum epochs, which follow N, and the
    /// `auto` grid resampling of [`FitConfig::default`]. Every value it produces is valid, for
    /// any N.
    pub fn for_images(n_images: usize) -> Self {
        let base = Self::default();
        let n_val = (n_images as f64 * base.val_fraction).round() as usize;
        let n_train = n_images.saturating_sub(n_val).max(1);
        let per_epoch = n_train.div_ceil(BATCH);
        Self {
            lr: LR,
            batch_size: BATCH,
            reg_steps: WARMUP_STEPS,
            patience: PATIENCE_STEPS.div_ceil(per_epoch).max(MIN_PATIENCE_EPOCHS),
            max_epochs: MAX_STEPS.div_ceil(per_epoch).clamp(MIN_EPOCHS, MAX_EPOCHS),
            ..base
        }
    }
}

/// Named starting points for the fit settings; flags and fields given by the user override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preset {
    /// The schedule follows the probe-set size ([`FitConfig::for_images`]): the default.
    #[default]
    Auto,
    /// DESIGN §3 exactly ([`FitConfig::design`]): lr 1e-3, batch 8, warm-up over 2000 steps,
    /// patience 5 epochs, at most 40 epochs (made for ~10 000 images), §3.1's bilinear
    /// resampling.
    Design,
    /// lr 1e-2, batch 32, warm-up over 300 steps, patience 3 ([`FitConfig::fast`]).
    Fast,
}

impl Preset {
    /// Every preset, the default first.
    pub const ALL: [Preset; 3] = [Preset::Auto, Preset::Design, Preset::Fast];

    /// The name used by the CLI's `--preset`, the C ABI and Python.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Auto => "auto",
            Preset::Design => "design",
            Preset::Fast => "fast",
        }
    }

    /// The settings of this preset for a probe set of `n_images` images (only `Auto` depends on
    /// it). Every entry point resolves its starting settings here.
    pub fn config(self, n_images: usize) -> FitConfig {
        match self {
            Preset::Auto => FitConfig::for_images(n_images),
            Preset::Design => FitConfig::design(),
            Preset::Fast => FitConfig::fast(),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL.into_iter().find(|p| p.name() == s.trim()).ok_or_else(|| {
            Error::invalid(format!("unknown preset `{s}`; expected `auto`, `design` or `fast`"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_is_the_paper_schedule_at_every_size() {
        for n in [0, 10, 400, 800, 10_000, 1_000_000] {
            let c = Preset::Design.config(n);
            assert_eq!(c, FitConfig::design());
            assert_eq!(c.resample, crate::model::Resample::Bilinear);
            assert_eq!((c.lr, c.batch_size, c.reg_steps, c.patience, c.max_epochs), (1e-3, 8, 2000, 5, 40));
        }
        assert_eq!(Preset::Fast.config(800), FitConfig::fast());
    }

    /// Hand-worked: 800 images hold out 80, 720 train: 23 steps an epoch of 32; patience
    /// ⌈60 / 23⌉ = 3 epochs; ⌈1200 / 23⌉ = 53 epochs, capped at 40.
    #[test]
    fn auto_follows_the_probe_set_size() {
        let row = |n: usize| {
            let c = FitConfig::for_images(n);
            (c.batch_size, c.patience, c.max_epochs)
        };
        assert_eq!(row(800), (32, 3, 40));
        // 360 train: 12 steps, patience 5.
        assert_eq!(row(400), (32, 5, 40));
        // 1350 train: 43 steps, patience 2, ⌈1200 / 43⌉ = 28 epochs.
        assert_eq!(row(1500), (32, 2, 28));
        // 9000 train: 282 steps, patience 1 → 2, ⌈1200 / 282⌉ = 5 epochs.
        assert_eq!(row(10_000), (32, 2, 5));
        // A huge set still gets MIN_EPOCHS; a tiny one DESIGN's 40.
        assert_eq!(row(1_000_000), (32, 2, 3));
        assert_eq!(row(60), (32, 30, 40));
        let c = FitConfig::for_images(800);
        assert_eq!((c.lr, c.reg_steps), (LR, WARMUP_STEPS));
        // Everything but the schedule is DESIGN's.
        let d = FitConfig::default();
        assert_eq!(FitConfig { lr: d.lr, batch_size: 8, reg_steps: 2000, patience: 5, max_epochs: 40, ..c }, d);
    }

    #[test]
    fn auto_is_valid_at_every_size() {
        for n in (0..3000).step_by(7).chain([usize::MAX / 2]) {
            FitConfig::for_images(n).validate().unwrap();
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        assert_eq!(Preset::default(), Preset::Auto);
        assert!("paper".parse::<Preset>().unwrap_err().to_string().contains("expected `auto`"));
    }
}
