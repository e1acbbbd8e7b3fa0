//! Epoch bookkeeping shared by the CPU and GPU training loops (DESIGN §3.6): step and time
//! budgets, best-epoch selection by mean validation R², patience that starts counting once the
//! warm-up regulariser has faded, progress reports and the fit summary. The loops own the
//! parameters; this tells them when a new best must be snapshotted and when to stop.

use std::time::Instant;

use crate::engine::outcome::FitOutcome;
use crate::model::loss::regulariser_weight;
use crate::model::{Encoder, FitConfig, FitSummary, Progress, Split};

/// The training loop's bookkeeping: the regulariser's step clock, the epoch's loss, the best
/// epoch and its scores, and when to stop.
pub struct EpochTracker<'c> {
    cfg: &'c FitConfig,
    t0: Instant,
    /// The regulariser's clock: optimiser steps including those before this run.
    step: usize,
    steps_done: usize,
    best_r2: f64,
    best_epoch: usize,
    since_best: usize,
    epochs_run: usize,
    best_scores: (Vec<f32>, Vec<f32>),
    loss_sum: f64,
    n_batches: usize,
}

/// Mean of per-voxel scores (−∞ for none, so any real score beats it).
pub fn mean(xs: &[f32]) -> f64 {
    if xs.is_empty() {
        return f64::NEG_INFINITY;
    }
    xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len() as f64
}

impl<'c> EpochTracker<'c> {
    /// A tracker for a fit with settings `cfg` whose regulariser clock starts at `start_step`
    /// (0 for a fresh fit, the reference fit's steps for a warm start).
    pub fn new(cfg: &'c FitConfig, start_step: usize) -> Self {
        Self {
            cfg,
            t0: Instant::now(),
            step: start_step,
            steps_done: 0,
            best_r2: f64::NEG_INFINITY,
            best_epoch: 0,
            since_best: 0,
            epochs_run: 0,
            best_scores: (Vec::new(), Vec::new()),
            loss_sum: 0.0,
            n_batches: 0,
        }
    }

    /// The step the next optimiser step runs at (the regulariser's clock).
    pub fn step(&self) -> usize {
        self.step
    }

    /// Starts an epoch's loss average.
    pub fn begin_epoch(&mut self) {
        self.loss_sum = 0.0;
        self.n_batches = 0;
    }

    /// Counts one optimiser step; true when the step or time budget is spent.
    pub fn after_step(&mut self, loss: f64) -> bool {
        self.loss_sum += loss;
        self.n_batches += 1;
        self.step += 1;
        self.steps_done += 1;
        let out_of_steps = self.cfg.max_steps.is_some_and(|m| self.steps_done >= m);
        let out_of_time = self.cfg.max_seconds.is_some_and(|s| self.t0.elapsed().as_secs_f64() >= s);
        out_of_steps || out_of_time
    }

    /// A budgeted run's last evaluation, mid-epoch: true when it beats the best so far (the caller
    /// snapshots its parameters then).
    pub fn record_budget_end(&mut self, epoch: usize, r2: Vec<f32>, pearson: Vec<f32>) -> bool {
        self.epochs_run = epoch;
        let m = mean(&r2);
        let better = m > self.best_r2;
        if better {
            self.best_r2 = m;
            self.best_epoch = epoch;
            self.best_scores = (r2, pearson);
        }
        better
    }

    /// The end of an epoch: true when its validation scores are the new best (the caller
    /// snapshots its parameters then). Reports progress.
    pub fn record_epoch(
        &mut self,
        epoch: usize,
        r2: Vec<f32>,
        pearson: Vec<f32>,
        progress: &mut Option<&mut dyn FnMut(&Progress)>,
    ) -> bool {
        self.epochs_run = epoch;
        let m = mean(&r2);
        let better = m > self.best_r2 + self.cfg.min_delta || self.best_scores.0.is_empty();
        if better {
            self.best_r2 = m;
            self.best_epoch = epoch;
            self.best_scores = (r2, pearson);
            self.since_best = 0;
        } else if regulariser_weight(self.cfg.reg_lambda, self.step, self.cfg.reg_steps) == 0.0 {
            // Patience only counts once the warm-up regulariser has faded: before that the
            // objective itself is still changing.
            self.since_best += 1;
        }
        if let Some(cb) = progress.as_mut() {
            cb(&Progress {
                epoch,
                max_epochs: self.cfg.max_epochs,
                step: self.step,
                train_loss: self.loss_sum / self.n_batches.max(1) as f64,
                val_r2: m,
                best_val_r2: self.best_r2,
                best_epoch: self.best_epoch,
                seconds: self.t0.elapsed().as_secs_f64(),
            });
        }
        better
    }

    /// Patience is spent.
    pub fn should_stop(&self) -> bool {
        self.since_best >= self.cfg.patience
    }

    /// The outcome, for `encoder` already holding the best epoch's parameters.
    pub fn finish(self, encoder: Encoder, split: Split) -> FitOutcome {
        let summary = FitSummary {
            seed: self.cfg.seed,
            n_train: split.train.len(),
            n_val: split.val.len(),
            epochs_run: self.epochs_run,
            best_epoch: self.best_epoch,
            best_val_r2: self.best_r2,
            steps: self.steps_done,
        };
        let (val_r2, val_pearson) = self.best_scores;
        FitOutcome { encoder, summary, split, val_r2, val_pearson }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FitConfig {
        FitConfig { patience: 2, reg_steps: 2, min_delta: 0.01, ..FitConfig::default() }
    }

    #[test]
    fn best_epoch_patience_and_budget() {
        let c = cfg();
        let mut t = EpochTracker::new(&c, 0);
        let mut none: Option<&mut dyn FnMut(&Progress)> = None;
        // Epoch 1 is always the first best; patience waits for the regulariser to fade.
        assert!(!t.after_step(1.0));
        assert!(t.record_epoch(1, vec![0.1, 0.3], vec![0.5, 0.5], &mut none));
        assert!(!t.record_epoch(2, vec![0.2, 0.2], vec![0.0, 0.0], &mut none));
        assert!(!t.should_stop(), "the regulariser is still on at step 1");
        t.after_step(1.0);
        // Within min_delta of the best: not better, and now patience counts.
        assert!(!t.record_epoch(3, vec![0.205, 0.205], vec![0.0, 0.0], &mut none));
        assert!(!t.record_epoch(4, vec![0.2, 0.2], vec![0.0, 0.0], &mut none));
        assert!(t.should_stop());
        assert!(t.record_budget_end(5, vec![0.5, 0.5], vec![0.9, 0.9]));
        assert!(!t.record_budget_end(5, vec![0.4, 0.4], vec![0.9, 0.9]));
        let mut seen = Vec::new();
        let mut cb = |p: &Progress| seen.push((p.epoch, p.best_epoch, p.train_loss));
        let mut some: Option<&mut dyn FnMut(&Progress)> = Some(&mut cb);
        t.begin_epoch();
        t.after_step(3.0);
        t.after_step(5.0);
        t.record_epoch(6, vec![0.0], vec![0.0], &mut some);
        assert_eq!(seen, vec![(6, 5, 4.0)]);
    }

    #[test]
    fn step_budget() {
        let c = FitConfig { max_steps: Some(3), ..FitConfig::default() };
        let mut t = EpochTracker::new(&c, 10);
        assert_eq!((t.after_step(0.0), t.after_step(0.0), t.after_step(0.0)), (false, false, true));
        assert_eq!(t.step(), 13);
    }

    #[test]
    fn mean_of_nothing_loses_to_anything() {
        assert_eq!(mean(&[]), f64::NEG_INFINITY);
        assert_eq!(mean(&[1.0, 2.0]), 1.5);
    }
}
