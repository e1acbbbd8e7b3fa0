//! Importer for one subject of the Algonauts 2023 challenge data (DESIGN §2):
//!
//! ```text
//! subjXX/
//!   training_split/training_fmri/lh_training_fmri.npy   [N, V_lh]
//!   training_split/training_fmri/rh_training_fmri.npy   [N, V_rh]
//!   training_split/training_images/*.png                 (optional: names become stimulus ids)
//!   roi_masks/{lh,rh}.prf-visualrois_challenge_space.npy [V_h] class ids (0 = none)
//!   roi_masks/{lh,rh}.floc-{faces,bodies,places,words}_challenge_space.npy
//!   roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy   [163842] 0/1: challenge vertices
//! ```
//!
//! Voxels are the left-hemisphere vertices followed by the right-hemisphere ones, as in the
//! challenge. ROI labels come from the class-id masks with the challenge's fixed class names
//! (the `mapping_*.npy` files are Python pickles and are not read); ventral and dorsal parts
//! of V1–V3 are merged (`V1v`+`V1d` → `V1`, ...) and both hemispheres share an ROI. A vertex in
//! several masks takes the first in the order prf-visualrois, floc-faces, floc-bodies,
//! floc-places, floc-words. Levels follow DESIGN §2 ([`Brain::default_level`]).
//!
//! Coordinates come from a user-given `.npy` of fsaverage sphere positions, either
//! `[V_lh + V_rh, 3]` (already in challenge order) or `[F_lh + F_rh, 3]` (every fsaverage vertex,
//! left hemisphere first, F = 163842), in which case the `all-vertices` masks pick the challenge
//! vertices. Without coordinates, each voxel gets the centre of its (hemisphere, ROI) group as
//! a placeholder, so FactorTopy's selectors can only choose per ROI; the importer says so.

use std::path::{Path, PathBuf};

use crate::data::npy::{read_npy, read_npy_i64};
use crate::data::{Array, Brain};
use crate::error::{Error, Result};

/// ROI class files in priority order, with the challenge's class names (index = class id).
pub const ROI_CLASSES: [(&str, &[&str]); 5] = [
    ("prf-visualrois", &["", "V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"]),
    ("floc-faces", &["", "OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"]),
    ("floc-bodies", &["", "EBA", "FBA-1", "FBA-2", "mTL-bodies"]),
    ("floc-places", &["", "OPA", "PPA", "RSC"]),
    ("floc-words", &["", "OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"]),
];

/// Options of [`import_algonauts`].
#[derive(Debug, Clone, Default)]
pub struct AlgonautsOptions {
    /// `.npy` of vertex positions (see the module documentation).
    pub coords: Option<PathBuf>,
    /// Subject name for the brain file; default: the directory's name.
    pub subject: Option<String>,
    /// Optional `.npy` `[V_lh + V_rh]` noise ceiling in R² units (fraction, 0..1).
    pub noise_ceiling: Option<PathBuf>,
}

/// What the importer found, for the user.
#[derive(Debug, Clone)]
pub struct AlgonautsImport {
    /// The brain file's contents.
    pub brain: Brain,
    /// Vertices of the left hemisphere (they come first).
    pub n_lh: usize,
    /// Vertices of the right hemisphere.
    pub n_rh: usize,
    /// Vertices in no ROI.
    pub unlabelled: usize,
    /// Vertices listed in more than one ROI class file (kept in the first).
    pub overlapping: usize,
    /// ROI class files that were not present.
    pub missing_masks: Vec<String>,
    /// No coordinates were given, so each ROI's vertices got placeholder positions.
    pub placeholder_coords: bool,
}

/// Merged ROI name of a challenge class name: ventral/dorsal halves of V1–V3 become one ROI.
pub fn merged_roi_name(name: &str) -> &str {
    match name {
        "V1v" | "V1d" => "V1",
        "V2v" | "V2d" => "V2",
        "V3v" | "V3d" => "V3",
        other => other,
    }
}

fn need(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::data(
            path,
            "not found: expected the Algonauts 2023 subject layout (training_split/training_fmri/\
             {lh,rh}_training_fmri.npy and roi_masks/*.npy)",
        ))
    }
}

fn read_matrix(path: &Path) -> Result<Array> {
    need(path)?;
    let a = read_npy(path)?;
    if a.shape.len() != 2 || a.shape.contains(&0) {
        return Err(Error::shape_in(path, "array", format!("expected a 2-D [images, vertices] array, got shape {:?}", a.shape)));
    }
    Ok(a)
}

fn read_labels(path: &Path, n: usize, n_classes: usize) -> Result<Vec<i64>> {
    let (shape, v) = read_npy_i64(path)?;
    if shape.iter().product::<usize>() != n || shape.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(Error::shape_in(path, "array", format!("expected {n} labels (one per vertex), got shape {shape:?}")));
    }
    if let Some((i, &x)) = v.iter().enumerate().find(|(_, &x)| x < 0 || x as usize >= n_classes) {
        return Err(Error::data(
            path,
            format!("label {x} at vertex {i} is not a class id of this file (0..{})", n_classes - 1),
        ));
    }
    Ok(v)
}

/// Sorted file stems of the training images, when the folder exists and holds one per row.
fn stimulus_ids(dir: &Path, n: usize) -> Option<Vec<String>> {
    let rd = std::fs::read_dir(dir.join("training_split/training_images")).ok()?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|s| !s.starts_with('.'))
        .collect();
    names.sort();
    (names.len() == n).then_some(names)
}

/// Reads one Algonauts 2023 subject directory into a (not z-scored) brain.
pub fn import_algonauts(dir: &Path, opts: &AlgonautsOptions) -> Result<AlgonautsImport> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "not a directory (expected an Algonauts 2023 subject folder, e.g. subj01)"));
    }
    let fmri = dir.join("training_split/training_fmri");
    let lh = read_matrix(&fmri.join("lh_training_fmri.npy"))?;
    let rh = read_matrix(&fmri.join("rh_training_fmri.npy"))?;
    let n = lh.shape[0];
    if rh.shape[0] != n {
        return Err(Error::mismatch(format!(
            "lh_training_fmri.npy has {n} images but rh_training_fmri.npy has {}",
            rh.shape[0]
        )));
    }
    let (n_lh, n_rh) = (lh.shape[1], rh.shape[1]);
    let v = n_lh + n_rh;
    let mut data = Vec::with_capacity(n * v);
    for i in 0..n {
        data.extend_from_slice(&lh.data[i * n_lh..(i + 1) * n_lh]);
        data.extend_from_slice(&rh.data[i * n_rh..(i + 1) * n_rh]);
    }
    drop((lh, rh));
    let responses = Array::new(vec![n, v], data)?;

    // ROI labels.
    let masks = dir.join("roi_masks");
    if !masks.is_dir() {
        return Err(Error::data(&masks, "not found: the Algonauts layout keeps ROI masks in roi_masks/"));
    }
    let mut roi_names: Vec<String> = Vec::new();
    let mut roi = vec![-1i32; v];
    let mut overlapping = vec![false; v];
    let mut missing_masks = Vec::new();
    for (class, names) in ROI_CLASSES {
        for (hemi, offset, count) in [("lh", 0, n_lh), ("rh", n_lh, n_rh)] {
            let path = masks.join(format!("{hemi}.{class}_challenge_space.npy"));
            if !path.is_file() {
                missing_masks.push(format!("{hemi}.{class}_challenge_space.npy"));
                continue;
            }
            let labels = read_labels(&path, count, names.len())?;
            for (i, &c) in labels.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let vi = offset + i;
                if roi[vi] >= 0 {
                    overlapping[vi] = true;
                    continue;
                }
                let name = merged_roi_name(names[c as usize]);
                let k = match roi_names.iter().position(|r| r == name) {
                    Some(k) => k,
                    None => {
                        roi_names.push(name.to_string());
                        roi_names.len() - 1
                    }
                };
                roi[vi] = k as i32;
            }
        }
    }
    if roi_names.is_empty() {
        return Err(Error::data(
            &masks,
            "no vertex belongs to any ROI (expected {lh,rh}.prf-visualrois_challenge_space.npy and \
             floc-*_challenge_space.npy class-id masks)",
        ));
    }
    // Order ROIs by hierarchy level, then by first appearance, so reports read V1, V2, ... .
    let levels: Vec<i32> = roi_names.iter().map(|r| Brain::default_level(r)).collect();
    let mut order: Vec<usize> = (0..roi_names.len()).collect();
    order.sort_by_key(|&k| (levels[k], k));
    let mut remap = vec![0i32; roi_names.len()];
    for (new, &old) in order.iter().enumerate() {
        remap[old] = new as i32;
    }
    roi.iter_mut().filter(|r| **r >= 0).for_each(|r| *r = remap[*r as usize]);
    let roi_names: Vec<String> = order.iter().map(|&k| roi_names[k].clone()).collect();
    let roi_levels: Vec<i32> = order.iter().map(|&k| levels[k]).collect();

    // Coordinates.
    let (coords, placeholder_coords) = match &opts.coords {
        Some(path) => (read_coords(path, &masks, n_lh, n_rh)?, false),
        None => (placeholder(&roi, n_lh, roi_names.len()), true),
    };

    let noise_ceiling = match &opts.noise_ceiling {
        None => None,
        Some(path) => {
            let a = read_npy(path)?;
            if a.data.len() != v {
                return Err(Error::shape_in(path, "array", format!("expected {v} noise-ceiling values (lh then rh), got shape {:?}", a.shape)));
            }
            if let Some((i, &x)) = a.data.iter().enumerate().find(|(_, &x)| !(0.0..=1.0).contains(&x)) {
                return Err(Error::data(
                    path,
                    format!(
                        "noise ceiling {x} at vertex {i} is outside [0, 1]; the brain file wants R² units \
                         (divide percentages by 100)"
                    ),
                ));
            }
            Some(a.data)
        }
    };

    let subject = opts
        .subject
        .clone()
        .or_else(|| dir.canonicalize().ok()?.file_name().map(|s| s.to_string_lossy().into_owned()));
    let brain = Brain {
        responses: responses.into(),
        coords,
        roi: roi.clone(),
        noise_ceiling,
        flat: None,
        // Left-hemisphere vertices come first (see the module docs).
        hemisphere: Some((0..n_lh + n_rh).map(|i| u8::from(i >= n_lh)).collect()),
        roi_names,
        roi_levels,
        stimulus_ids: stimulus_ids(dir, n),
        subject,
    };
    brain.validate(&dir.display().to_string())?;
    Ok(AlgonautsImport {
        brain,
        n_lh,
        n_rh,
        unlabelled: roi.iter().filter(|&&r| r < 0).count(),
        overlapping: overlapping.iter().filter(|&&o| o).count(),
        missing_masks,
        placeholder_coords,
    })
}

fn read_coords(path: &Path, masks: &Path, n_lh: usize, n_rh: usize) -> Result<Array> {
    let a = read_npy(path)?;
    let v = n_lh + n_rh;
    if a.shape.len() != 2 || a.shape[1] != 3 {
        return Err(Error::shape_in(path, "array", format!("expected vertex positions of shape [vertices, 3], got {:?}", a.shape)));
    }
    if let Some(i) = a.first_non_finite() {
        return Err(Error::data(path, format!("non-finite coordinate at {:?}", a.unravel(i))));
    }
    let rows = a.shape[0];
    if rows == v {
        return Ok(a);
    }
    // Full fsaverage hemispheres: select the challenge vertices with the all-vertices masks.
    let mut picked = Vec::with_capacity(3 * v);
    let mut offset = 0;
    for (hemi, count) in [("lh", n_lh), ("rh", n_rh)] {
        let mpath = masks.join(format!("{hemi}.all-vertices_fsaverage_space.npy"));
        if !mpath.is_file() {
            return Err(Error::data(
                path,
                format!(
                    "has {rows} rows, not {v} (one per challenge vertex), and {} is missing to select \
                     the challenge vertices from full fsaverage hemispheres",
                    mpath.display()
                ),
            ));
        }
        let (_, mask) = read_npy_i64(&mpath)?;
        let sel: Vec<usize> = mask.iter().enumerate().filter(|(_, &m)| m != 0).map(|(i, _)| i).collect();
        if sel.len() != count {
            return Err(Error::data(
                &mpath,
                format!("selects {} vertices but the {hemi} fMRI has {count}", sel.len()),
            ));
        }
        if offset + mask.len() > rows {
            return Err(Error::data(
                path,
                format!(
                    "has {rows} rows; expected {v} (challenge vertices, lh then rh) or {} (all fsaverage \
                     vertices of both hemispheres, lh then rh)",
                    mask.len() * 2
                ),
            ));
        }
        for &i in &sel {
            picked.extend_from_slice(&a.data[(offset + i) * 3..(offset + i) * 3 + 3]);
        }
        offset += mask.len();
    }
    if offset != rows {
        return Err(Error::data(
            path,
            format!("has {rows} rows; expected {v} (challenge vertices) or {offset} (both full fsaverage hemispheres)"),
        ));
    }
    Array::new(vec![v, 3], picked)
}

/// Placeholder positions: one point per (hemisphere, ROI), ROIs along y, hemispheres along x.
fn placeholder(roi: &[i32], n_lh: usize, n_rois: usize) -> Array {
    let mut data = Vec::with_capacity(roi.len() * 3);
    for (i, &r) in roi.iter().enumerate() {
        let x = if i < n_lh { -50.0 } else { 50.0 };
        let y = if r >= 0 { 100.0 * (r as f32 + 1.0) / (n_rois as f32 + 1.0) } else { 0.0 };
        data.extend_from_slice(&[x, y, 0.0]);
    }
    Array { shape: vec![roi.len(), 3], data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_names_and_levels() {
        assert_eq!(merged_roi_name("V2d"), "V2");
        assert_eq!(merged_roi_name("FFA-1"), "FFA-1");
        assert_eq!(Brain::default_level(merged_roi_name("V3v")), 2);
        assert_eq!(Brain::default_level("hV4"), 3);
        assert_eq!(Brain::default_level("PPA"), 4);
    }
}
