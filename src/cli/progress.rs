//! Progress of the long commands (`fit`, `fit --method ridge`, `rank`, `monitor`) on stderr: a
//! bar redrawn in place with the epoch, the held-out R² and the time left when stderr is a
//! terminal, one plain line per epoch (or ridge layer) otherwise, nothing with `--quiet`.
//!
//! Hand-written rather than a progress-bar crate: events come once per epoch or layer (seconds
//! apart), so the bar is one redrawn line (`\r`, erase line) with no ticking thread, and the
//! crate adds no dependency to build offline on the 2-core CI machine.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::baseline::LayerSummary;
use crate::engine::FitEvent;
use crate::model::Progress;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line redrawn in place (stderr is a terminal).
    Bar,
    /// One line per event (stderr is a file or a pipe).
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

impl Mode {
    /// The mode for stderr: `Quiet` with `--quiet`, `Bar` on a terminal, else `Lines`.
    pub fn for_stderr(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Width of the bar in characters.
const BAR_WIDTH: usize = 24;

/// Shows the progress of fits on a writer (stderr in the CLI).
pub struct FitProgress<W: Write> {
    out: W,
    mode: Mode,
    /// Printed before every line: which network of a ranking, for example.
    prefix: String,
    /// Layers of a ridge fit (its bar needs the total).
    ridge_layers: usize,
    /// A bar is drawn and its line not yet ended.
    open: bool,
    t0: Instant,
}

impl FitProgress<std::io::Stderr> {
    /// Progress on stderr in the mode `--quiet` and the terminal say.
    pub fn stderr(quiet: bool) -> Self {
        Self::new(std::io::stderr(), Mode::for_stderr(quiet))
    }
}

impl<W: Write> FitProgress<W> {
    pub fn new(out: W, mode: Mode) -> Self {
        Self { out, mode, prefix: String::new(), ridge_layers: 0, open: false, t0: Instant::now() }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sets the prefix of the following lines (ends a drawn bar first).
    pub fn set_prefix(&mut self, prefix: impl Into<String>) {
        self.end_line();
        self.prefix = prefix.into();
    }

    /// The number of layers a ridge fit will report.
    pub fn set_ridge_layers(&mut self, n: usize) {
        self.ridge_layers = n;
    }

    /// Shows one event.
    pub fn event(&mut self, e: FitEvent<'_>) {
        match e {
            FitEvent::Epoch(p) => self.epoch(p),
            FitEvent::RidgeLayer(s) => self.ridge_layer(s),
        }
    }

    /// Shows the end of an epoch.
    pub fn epoch(&mut self, p: &Progress) {
        let left = epoch_time_left(p);
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                let line = format!(
                    "{}epoch {:>3}/{}  step {:>6}  loss {:.4}  val R² {:.4}  (best {:.4} at epoch {})  {:.1} s  {} left",
                    self.prefix,
                    p.epoch,
                    p.max_epochs,
                    p.step,
                    p.train_loss,
                    p.val_r2,
                    p.best_val_r2,
                    p.best_epoch,
                    p.seconds,
                    left
                );
                self.line(&line);
            }
            Mode::Bar => {
                let line = format!(
                    "{}epoch {:>3}/{} {} val R² {:.4} (best {:.4})  {}  {} left",
                    self.prefix,
                    p.epoch,
                    p.max_epochs,
                    bar(p.epoch, p.max_epochs),
                    p.val_r2,
                    p.best_val_r2,
                    clock(p.seconds),
                    left
                );
                self.redraw(&line);
            }
        }
    }

    /// Shows the end of one ridge layer.
    pub fn ridge_layer(&mut self, s: &LayerSummary) {
        let done = s.layer + 1;
        let total = self.ridge_layers.max(done);
        let elapsed = self.t0.elapsed().as_secs_f64();
        let left = clock(elapsed / done as f64 * (total - done) as f64);
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => {
                let line = format!(
                    "{}layer {:>2}/{} ({}, {} features): mean CV score {:.4}  mean held-out R² {:.4}  {:.1} s  ≈ {} left",
                    self.prefix, done, total, s.name, s.width, s.mean_cv_score, s.mean_val_r2, s.seconds, left
                );
                self.line(&line);
            }
            Mode::Bar => {
                let line = format!(
                    "{}layer {:>2}/{} {} held-out R² {:.4} ({})  {}  ≈ {} left",
                    self.prefix,
                    done,
                    total,
                    bar(done, total),
                    s.mean_val_r2,
                    s.name,
                    clock(elapsed),
                    left
                );
                self.redraw(&line);
            }
        }
    }

    /// Prints a line of its own (a seed's result, a ranking's next network) without breaking a
    /// drawn bar; nothing when quiet.
    pub fn message(&mut self, text: &str) {
        if self.mode != Mode::Quiet {
            self.end_line();
            self.line(text);
        }
    }

    /// Ends a drawn bar's line so that what follows starts on a new one.
    pub fn end_line(&mut self) {
        if self.open {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
            self.open = false;
        }
    }

    /// Restarts the clock of the time estimates (a new fit).
    pub fn restart(&mut self) {
        self.t0 = Instant::now();
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    fn redraw(&mut self, text: &str) {
        // Carriage return and "erase line" (ESC [ 2 K): the bar replaces itself.
        let _ = write!(self.out, "\r\x1b[2K{text}");
        let _ = self.out.flush();
        self.open = true;
    }
}

impl<W: Write> Drop for FitProgress<W> {
    fn drop(&mut self) {
        self.end_line();
    }
}

/// Time left of a fit at the end of epoch `p.epoch`: an upper bound, since early stopping may end
/// it before `max_epochs` (mean epoch time × epochs still allowed).
fn epoch_time_left(p: &Progress) -> String {
    if p.epoch == 0 {
        return "?".into();
    }
    let per_epoch = p.seconds / p.epoch as f64;
    let left = per_epoch * p.max_epochs.saturating_sub(p.epoch) as f64;
    format!("≤ {}", clock(left))
}

/// `[#########...............]` for `done` of `total`.
fn bar(done: usize, total: usize) -> String {
    let filled = (done.min(total) * BAR_WIDTH).checked_div(total).unwrap_or(BAR_WIDTH);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled))
}

/// Seconds as `42s`, `3m05s` or `1h02m`.
fn clock(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(epoch: usize) -> Progress {
        Progress {
            epoch,
            max_epochs: 10,
            step: 45 * epoch,
            train_loss: 0.5,
            val_r2: 0.25,
            best_val_r2: 0.3,
            best_epoch: 1,
            seconds: 12.0 * epoch as f64,
        }
    }

    fn shown(mode: Mode, f: impl FnOnce(&mut FitProgress<&mut Vec<u8>>)) -> String {
        let mut buf = Vec::new();
        {
            let mut p = FitProgress::new(&mut buf, mode);
            f(&mut p);
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn lines_bar_and_quiet() {
        let lines = shown(Mode::Lines, |p| {
            p.epoch(&progress(1));
            p.epoch(&progress(2));
        });
        // 12 s an epoch, 8 epochs still allowed: at most 96 s.
        assert_eq!(
            lines,
            "epoch   1/10  step     45  loss 0.5000  val R² 0.2500  (best 0.3000 at epoch 1)  12.0 s  ≤ 1m48s left\n\
             epoch   2/10  step     90  loss 0.5000  val R² 0.2500  (best 0.3000 at epoch 1)  24.0 s  ≤ 1m36s left\n"
        );
        let drawn = shown(Mode::Bar, |p| {
            p.set_prefix("[1/2] net ");
            p.epoch(&progress(5));
            p.message("next");
        });
        assert_eq!(
            drawn,
            "\r\x1b[2K[1/2] net epoch   5/10 [############............] val R² 0.2500 (best 0.3000)  1m00s  ≤ 1m00s left\nnext\n"
        );
        assert_eq!(shown(Mode::Quiet, |p| {
            p.epoch(&progress(1));
            p.message("seed 1");
        }), "");
    }

    #[test]
    fn clocks_and_bars() {
        assert_eq!([0.4, 59.0, 61.0, 3725.0].map(clock), ["0s", "59s", "1m01s", "1h02m"]);
        assert_eq!(clock(f64::NAN), "?");
        assert_eq!(bar(0, 4), format!("[{}]", ".".repeat(24)));
        assert_eq!(bar(4, 4), format!("[{}]", "#".repeat(24)));
        assert_eq!(bar(1, 0), format!("[{}]", "#".repeat(24)));
    }
}
