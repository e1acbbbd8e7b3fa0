//! Pictures (DESIGN §7): PNG output drawn with a small raster canvas.
