//! `factortopy plot`: redraw the pictures of a saved fit (layer, space, scale, R² and channel
//! maps, the per-ROI layer profile and the overview) without refitting.

use crate::cluster::DEFAULT_K;
use crate::data::Brain;
use crate::error::Result;
use crate::plot::figures::{parse_size, plot_fit_dir, Picture, PlotOptions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Output directory of `factortopy fit` (report.json, selectors.safetensors and, for the
    /// channel map, encoder.safetensors).
    pub fit_dir: PathBuf,
    /// The brain file the fit was made on (positions, ROIs, hemispheres, noise ceiling).
    #[arg(long)]
    pub brain: PathBuf,
    /// Comma-separated pictures: layer, space, scale, r2, channels, profile, overview, or all.
    /// Default: every picture the fit has.
    #[arg(long, value_name = "LIST")]
    pub maps: Option<String>,
    /// Where to write the pictures (default: FIT_DIR).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Size of each picture, WIDTHxHEIGHT; the overview's panels are three quarters of it.
    #[arg(long, value_name = "WxH", default_value = "800x600")]
    pub size: String,
    /// Number of channel groups on the channel map.
    #[arg(long, default_value_t = DEFAULT_K)]
    pub groups: usize,
    /// Seed of the channel grouping.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: PlotArgs) -> Result<i32> {
    // Parse every argument before reading anything large.
    let opts = PlotOptions {
        pictures: a.maps.as_deref().map(Picture::parse_list).transpose()?,
        size: parse_size(&a.size)?,
        groups: a.groups,
        seed: a.seed,
    };
    let brain = Brain::load(&a.brain)?;
    for (p, path) in plot_fit_dir(&a.fit_dir, &brain, a.out.as_deref(), &opts)? {
        println!("{:<9} {}", format!("{}:", p.name()), path.display());
    }
    Ok(0)
}
