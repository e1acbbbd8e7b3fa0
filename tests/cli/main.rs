//! The command-line tests, one binary (cargo links one test program instead of one a file): each
//! module runs `factortopy` the way a user does, through [`common::cli`], on planted data from
//! [`common`]. Every test that changes something process-wide does it in the child it spawns
//! (`RAYON_NUM_THREADS`, `ulimit -v`, `FACTORTOPY_MEMORY_LIMIT`, a tmpfs mount), never in this
//! process, so the modules run side by side in one process as they did in their own.
//!
//! Run one module with a filter: `cargo test --release --test cli rank_cli::`.

#[path = "../common/mod.rs"]
mod common;

mod algonauts_import;
mod engine;
mod fuzz_inputs;
mod monitor_cli;
mod plot_cli;
mod progress_cli;
mod rank_cli;
mod rank_subjects;
mod reports;
mod robustness;
mod subject_memory;
mod synth_cli;
