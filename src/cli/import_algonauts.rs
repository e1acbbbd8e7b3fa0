//! `factortopy import-algonauts`: read one Algonauts 2023 subject folder and write a brain file.

use std::path::PathBuf;

use clap::Args;

use crate::data::algonauts::{import_algonauts, AlgonautsOptions};
use crate::error::Result;

/// Convert an Algonauts 2023 subject folder into a brain file.
///
/// Reads training_split/training_fmri/{lh,rh}_training_fmri.npy and the ROI class masks in
/// roi_masks/ (prf-visualrois, floc-faces, floc-bodies, floc-places, floc-words), maps the ROI
/// names to hierarchy levels (V1 0, V2 1, V3 2, hV4 3, the rest 4) and writes the brain file.
/// Vertex positions come from --coords: a .npy of fsaverage sphere positions, either one row per
/// challenge vertex (lh then rh) or every fsaverage vertex of both hemispheres (lh then rh).
#[derive(Args, Debug)]
pub struct ImportAlgonautsArgs {
    /// Subject folder (e.g. algonauts_2023_challenge_data/subj01).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Brain file to write (safetensors).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Vertex positions (.npy, [vertices, 3]); without it, placeholder positions per ROI.
    #[arg(long, value_name = "FILE")]
    pub coords: Option<PathBuf>,
    /// Per-vertex noise ceiling (.npy, R² units in [0, 1], lh then rh).
    #[arg(long, value_name = "FILE")]
    pub noise_ceiling: Option<PathBuf>,
    /// Subject name stored in the file [default: the folder's name].
    #[arg(long)]
    pub subject: Option<String>,
}

pub fn run(a: ImportAlgonautsArgs) -> Result<i32> {
    let opts = AlgonautsOptions { coords: a.coords.clone(), subject: a.subject.clone(), noise_ceiling: a.noise_ceiling.clone() };
    let imp = import_algonauts(&a.dir, &opts)?;
    let parent = a.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let out_dir = crate::data::OutputDir::prepare(parent)?;
    imp.brain.save(&a.out)?;
    out_dir.keep();
    let b = &imp.brain;
    println!(
        "wrote {}: {} images, {} vertices ({} lh + {} rh), {} ROIs{}",
        a.out.display(),
        b.n_images(),
        b.n_voxels(),
        imp.n_lh,
        imp.n_rh,
        b.roi_names.len(),
        b.subject.as_ref().map(|s| format!(", subject {s}")).unwrap_or_default()
    );
    let counts: Vec<String> = b
        .roi_names
        .iter()
        .enumerate()
        .map(|(k, name)| format!("{name} (level {}): {}", b.roi_levels[k], b.roi.iter().filter(|&&r| r == k as i32).count()))
        .collect();
    println!("ROIs: {}", counts.join(", "));
    println!("{} vertices in no ROI; {} listed in several ROI files (kept in the first)", imp.unlabelled, imp.overlapping);
    if !imp.missing_masks.is_empty() {
        eprintln!("note: ROI masks not found: {}", imp.missing_masks.join(", "));
    }
    if b.stimulus_ids.is_none() {
        eprintln!("note: no training_split/training_images with one image per row; stimulus ids not stored");
    }
    if imp.placeholder_coords {
        eprintln!(
            "warning: no --coords given: every vertex of an ROI (per hemisphere) got the same placeholder \
             position, so FactorTopy can only choose per ROI; pass fsaverage sphere positions for vertex-level maps"
        );
    }
    Ok(0)
}
