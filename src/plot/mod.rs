//! Pictures (DESIGN §7): PNG output drawn with a small raster canvas. The maps share one layout
//! (`brain_map`); each map, the profile chart and the overview have their own file; `figures`
//! decides which pictures a fit has and writes them.

#![warn(missing_docs)]

pub mod brain_map;
pub mod canvas;
pub mod channel_map;
pub mod colormap;
pub mod figures;
pub mod layer_map;
pub mod line_chart;
pub mod overview;
pub mod profile;
pub mod r2_map;
pub mod scale_map;
pub mod space_map;

pub use canvas::{Canvas, Rgb};
pub use channel_map::channel_map;
pub use figures::{plot_fit_dir, write_pictures, FitView, Picture, PlotOptions, SavedFit};
pub use layer_map::layer_map;
pub use line_chart::line_chart;
pub use profile::profile_chart;
pub use r2_map::r2_map;
pub use scale_map::scale_map;
pub use space_map::space_map;
