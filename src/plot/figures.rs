//! Every picture of a fit, drawn from memory right after `fit` or from a saved fit directory by
//! `factortopy plot`, `ft_plot` and `factortopy.plot`: the one place that decides which
//! pictures a fit has, what they are called and how they are titled.

use std::path::{Path, PathBuf};

use crate::cluster::{DEFAULT_K, MAX_K};
use crate::data::{Brain, TensorFile};
use crate::error::{Error, Result};
use crate::model::Selections;
use crate::scores::Report;

use super::brain_map::{self, Geometry};
use super::overview::{self, Panel};
use super::{channel_map, layer_map, profile, r2_map, scale_map, space_map};

/// One picture of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Picture {
    /// Each voxel coloured by the depth of the layer it reads from (`layer_map.png`).
    Layer,
    /// Each voxel coloured by its image location (`space_map.png`).
    Space,
    /// Each voxel coloured by its scale, patch to global token (`scale_map.png`).
    Scale,
    /// Each voxel's held-out R² (`r2_map.png`).
    R2,
    /// Each voxel coloured by its group of readout directions (`channel_map.png`).
    Channels,
    /// Per-ROI histogram of argmax layers (`profile.png`).
    Profile,
    /// The maps and the profile on one page (`overview.png`).
    Overview,
}

impl Picture {
    /// Every picture, in drawing order.
    pub const ALL: [Picture; 7] =
        [Picture::Layer, Picture::Space, Picture::Scale, Picture::R2, Picture::Channels, Picture::Profile, Picture::Overview];

    /// The name used on the command line and in the C ABI.
    pub fn name(self) -> &'static str {
        match self {
            Picture::Layer => "layer",
            Picture::Space => "space",
            Picture::Scale => "scale",
            Picture::R2 => "r2",
            Picture::Channels => "channels",
            Picture::Profile => "profile",
            Picture::Overview => "overview",
        }
    }

    /// The file it is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            Picture::Layer => "layer_map.png",
            Picture::Space => "space_map.png",
            Picture::Scale => "scale_map.png",
            Picture::R2 => "r2_map.png",
            Picture::Channels => "channel_map.png",
            Picture::Profile => "profile.png",
            Picture::Overview => "overview.png",
        }
    }

    /// A comma-separated list of names (`all` for every picture), in the order given, without
    /// repeats.
    pub fn parse_list(s: &str) -> Result<Vec<Picture>> {
        let mut out = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let found: Vec<Picture> = if word == "all" {
                Picture::ALL.to_vec()
            } else {
                match Picture::ALL.iter().find(|p| p.name() == word) {
                    Some(&p) => vec![p],
                    None => {
                        let names: Vec<&str> = Picture::ALL.iter().map(|p| p.name()).collect();
                        return Err(Error::invalid(format!("unknown map `{word}`; expected some of {} or all", names.join(","))));
                    }
                }
            };
            for p in found {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        if out.is_empty() {
            return Err(Error::invalid(format!("no map named in `{s}`")));
        }
        Ok(out)
    }
}

/// Smallest and largest side of a picture, in pixels.
pub const MIN_SIDE: usize = 320;
/// Largest side of a picture, in pixels.
pub const MAX_SIDE: usize = 8000;

/// `WxH`, each side in [`MIN_SIDE`, `MAX_SIDE`].
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid(format!("--size `{s}`: expected WIDTHxHEIGHT, e.g. 800x600"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let size = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    check_size(size)?;
    Ok(size)
}

fn check_size((w, h): (usize, usize)) -> Result<()> {
    if !(MIN_SIDE..=MAX_SIDE).contains(&w) || !(MIN_SIDE..=MAX_SIDE).contains(&h) {
        return Err(Error::invalid(format!("picture size {w}x{h}: each side must be in {MIN_SIDE}..={MAX_SIDE} pixels")));
    }
    Ok(())
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// `None`: every picture the fit has (see [`available`]); a list: exactly these, and an
    /// error naming any the fit cannot have.
    pub pictures: Option<Vec<Picture>>,
    /// Size of each single picture; the overview's cells are three quarters of it.
    pub size: (usize, usize),
    /// Number of channel groups.
    pub groups: usize,
    /// Seed of the channel grouping.
    pub seed: u64,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self { pictures: None, size: layer_map::SIZE, groups: DEFAULT_K, seed: 0 }
    }
}

/// A fit as the pictures need it.
pub struct FitView<'a> {
    /// The fit's report.
    pub report: &'a Report,
    /// Every voxel's layer probabilities, location and scale.
    pub selections: &'a Selections,
    /// Held-out R² per voxel.
    pub r2: &'a [f32],
    /// The readout `W` `[V, D]` row-major and D, when the fit has one (FactorTopy encoders do,
    /// the ridge baseline does not).
    pub readout: Option<(&'a [f32], usize)>,
}

/// Why a fit cannot have `p`, or `None` when it can.
fn unavailable(fit: &FitView, p: Picture) -> Option<&'static str> {
    let ridge = fit.report.method == crate::baseline::layerwise::METHOD;
    match p {
        Picture::Space | Picture::Scale if ridge => {
            Some("the ridge baseline reads the global token only: it has no image location or scale")
        }
        Picture::Channels if fit.readout.is_none() => {
            Some("the fit has no shared channel readout (no encoder.safetensors with a `weight` [V, D])")
        }
        _ => None,
    }
}

/// The pictures a fit has, in the order of [`Picture::ALL`].
pub fn available(fit: &FitView) -> Vec<Picture> {
    Picture::ALL.iter().copied().filter(|&p| unavailable(fit, p).is_none()).collect()
}

/// Draws the pictures `opts` asks for into `dir` and returns them with their paths, in order.
pub fn write_pictures(dir: &Path, brain: &Brain, fit: &FitView, opts: &PlotOptions) -> Result<Vec<(Picture, PathBuf)>> {
    check_size(opts.size)?;
    if !(1..=MAX_K).contains(&opts.groups) {
        return Err(Error::invalid(format!("number of channel groups {} is outside 1..={MAX_K}", opts.groups)));
    }
    let pictures = match &opts.pictures {
        None => available(fit),
        Some(list) => {
            for &p in list {
                if let Some(why) = unavailable(fit, p) {
                    return Err(Error::invalid(format!("cannot draw the {} map: {why}", p.name())));
                }
            }
            list.clone()
        }
    };
    layer_map::check_selections(brain, fit.selections)?;
    let v = brain.roi.len();
    if fit.r2.len() != v || fit.report.n_voxels != v {
        return Err(Error::mismatch(format!(
            "the fit has {} voxels ({} R² values), the brain has {v}",
            fit.report.n_voxels,
            fit.r2.len()
        )));
    }
    if let Some((w, d)) = fit.readout {
        if d == 0 || w.len() != v * d {
            return Err(Error::mismatch(format!("readout of {} values is not [{v}, {d}]", w.len())));
        }
    }
    let geo = Geometry::of(brain)?;
    let model = &fit.report.model;
    let overview = pictures.contains(&Picture::Overview);
    // The profile's checks of the report (one histogram per ROI over the report's layers), on a
    // small canvas before any picture is drawn or written.
    if overview || pictures.contains(&Picture::Profile) {
        profile::render((MIN_SIDE, MIN_SIDE), fit.report)?;
    }
    if fit.selections.layer_probs.shape.get(1) != Some(&fit.report.n_layers) {
        return Err(Error::mismatch(format!(
            "the selectors choose among {:?} layers, the report has {}",
            fit.selections.layer_probs.shape.get(1),
            fit.report.n_layers
        )));
    }
    // Every map the overview or a file needs, built once.
    let wanted: Vec<Picture> = if overview { available(fit) } else { pictures.clone() };
    let mut panels: Vec<(Picture, Panel)> = Vec::new();
    for &p in &wanted {
        let panel = match p {
            Picture::Layer => Panel::Map(layer_map::layer_panel(brain, fit.selections, &format!("{model}: layer"))?),
            Picture::Space => Panel::Map(space_map::space_panel(brain, fit.selections, &format!("{model}: image location"))?),
            Picture::Scale => Panel::Map(scale_map::scale_panel(brain, fit.selections, &format!("{model}: scale"))?),
            Picture::R2 => Panel::Map(r2_map::r2_panel(brain, fit.r2, &format!("{model}: held-out R^2"))?),
            Picture::Channels => {
                let (w, d) = fit.readout.ok_or_else(|| Error::invalid("no readout to group"))?;
                let g = channel_map::channel_groups(w, d, opts.groups, opts.seed)?;
                Panel::Map(channel_map::channel_panel(brain, &g, &format!("{model}: channel groups"))?)
            }
            Picture::Profile => Panel::Profile(fit.report),
            Picture::Overview => continue,
        };
        panels.push((p, panel));
    }
    let mut written = Vec::new();
    for &p in &pictures {
        let path = dir.join(p.file_name());
        match p {
            Picture::Overview => {
                let cell = (opts.size.0 * 3 / 4, opts.size.1 * 3 / 4);
                let list: Vec<&Panel> = panels.iter().map(|(_, x)| x).collect();
                overview::render(cell, &overview::title_line(fit.report), brain, &geo, &list)?.save_png(&path)?;
            }
            Picture::Profile => profile::profile_chart(&path, opts.size, fit.report)?,
            _ => {
                let Some((_, Panel::Map(m))) = panels.iter().find(|(q, _)| *q == p) else {
                    return Err(Error::invalid(format!("the {} map was not built", p.name())));
                };
                brain_map::save(&path, opts.size, brain, &geo, m)?;
            }
        }
        written.push((p, path));
    }
    Ok(written)
}

/// A fit read back from its output directory.
pub struct SavedFit {
    /// `report.json`.
    pub report: Report,
    /// The selections of `selectors.safetensors`.
    pub selections: Selections,
    /// Held-out R² per voxel, from `selectors.safetensors`.
    pub r2: Vec<f32>,
    /// `W` `[V, D]` and D from `encoder.safetensors`, when the directory has one.
    pub readout: Option<(Vec<f32>, usize)>,
}

impl SavedFit {
    /// Reads `report.json`, `selectors.safetensors` and, when present, the readout `weight` of
    /// `encoder.safetensors` from a directory written by `factortopy fit`.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::data(dir, "not a directory (expected the output directory of `factortopy fit`)"));
        }
        let report = Report::read_json(&dir.join("report.json"))?;
        let sel_path = dir.join("selectors.safetensors");
        let (selections, r2) = load_selections(&sel_path)?;
        let r2 = r2.ok_or_else(|| Error::data(&sel_path, "tensor `r2` is missing"))?;
        if r2.len() != selections.n_voxels() {
            return Err(Error::data(&sel_path, format!("tensor `r2` has {} values for {} voxels", r2.len(), selections.n_voxels())));
        }
        if let Some(i) = r2.iter().position(|x| !x.is_finite()) {
            return Err(Error::data(&sel_path, format!("tensor `r2` has a non-finite value at voxel {i}")));
        }
        let (v, l) = (selections.n_voxels(), selections.layer_probs.shape[1]);
        if report.n_voxels != v || report.n_layers != l {
            return Err(Error::data(
                &sel_path,
                format!(
                    "the selectors are of {v} voxels over {l} layers, report.json of {} voxels over {} layers",
                    report.n_voxels, report.n_layers
                ),
            ));
        }
        let enc_path = dir.join("encoder.safetensors");
        let readout = if enc_path.is_file() {
            // The whole encoder, through the loader `fit`, `score` and `predict` use: a corrupt
            // encoder is refused here, not drawn.
            let (enc, _) = crate::model::encoder_file::load_encoder(&enc_path)?;
            if enc.spec.n_voxels != v || enc.spec.widths.len() != l {
                return Err(Error::data(
                    &enc_path,
                    format!(
                        "the encoder is of {} voxels over {} layers, the selectors of {v} voxels over {l} layers",
                        enc.spec.n_voxels,
                        enc.spec.widths.len()
                    ),
                ));
            }
            let w = enc.weight.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            Some((w, enc.spec.d))
        } else {
            None
        };
        Ok(Self { report, selections, r2, readout })
    }

    /// The fit as the pictures need it.
    pub fn view(&self) -> FitView<'_> {
        FitView {
            report: &self.report,
            selections: &self.selections,
            r2: &self.r2,
            readout: self.readout.as_ref().map(|(w, d)| (w.as_slice(), *d)),
        }
    }
}

/// `layer_probs`, `space`, `scale` and (when present) `r2` of a selectors file, checked for
/// consistent voxel counts and finite values.
pub fn load_selections(path: &Path) -> Result<(Selections, Option<Vec<f32>>)> {
    let f = TensorFile::open(path)?;
    let layer_probs = f.f32("layer_probs")?;
    let space = f.f32("space")?;
    let scale = f.f32("scale")?.data;
    let v = scale.len();
    if layer_probs.shape.len() != 2 || layer_probs.shape[0] != v || space.shape != [v, 2] {
        return Err(Error::data(
            path,
            format!("inconsistent selectors: layer_probs {:?}, space {:?}, scale [{v}]", layer_probs.shape, space.shape),
        ));
    }
    for (name, data) in [("layer_probs", &layer_probs.data), ("space", &space.data), ("scale", &scale)] {
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::data(path, format!("tensor `{name}` has a non-finite value at flat index {i}")));
        }
    }
    let r2 = if f.has("r2") { Some(f.f32("r2")?.data) } else { None };
    Ok((Selections { layer_probs, space, scale }, r2))
}

/// `factortopy plot`: redraws a saved fit's pictures into `out` (the fit directory when `None`).
pub fn plot_fit_dir(fit_dir: &Path, brain: &Brain, out: Option<&Path>, opts: &PlotOptions) -> Result<Vec<(Picture, PathBuf)>> {
    let fit = SavedFit::load(fit_dir)?;
    let out = out.unwrap_or(fit_dir);
    let written = crate::data::write_into(out, |stage| write_pictures(stage, brain, &fit.view(), opts))?;
    Ok(written.into_iter().map(|(p, _)| (p, out.join(p.file_name()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_lists_and_sizes() {
        assert_eq!(Picture::parse_list("layer, r2,layer").unwrap(), vec![Picture::Layer, Picture::R2]);
        assert_eq!(Picture::parse_list("all").unwrap(), Picture::ALL.to_vec());
        let e = Picture::parse_list("layer,colour").unwrap_err().to_string();
        assert!(e.contains("unknown map `colour`") && e.contains("channels"), "{e}");
        assert!(Picture::parse_list(" , ").is_err());
        assert_eq!(parse_size("1024x768").unwrap(), (1024, 768));
        assert!(parse_size("10x10").is_err());
        assert!(parse_size("800").is_err());
        assert!(parse_size("99999x600").is_err());
    }
}
