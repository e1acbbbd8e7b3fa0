//! Pictures (DESIGN §7): PNG output drawn with a small raster canvas.

pub mod canvas;
pub mod colormap;
pub mod layer_map;
pub mod line_chart;

pub use canvas::{Canvas, Rgb};
pub use layer_map::{layer_map, scale_map, space_map};
pub use line_chart::{line_chart, roi_profile_chart};
