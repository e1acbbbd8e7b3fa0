//! Brains: loaded from a file or built from in-memory arrays (a host that already holds the fMRI
//! data in numpy or torch should not have to write a file first), saved and described.

use crate::error::Error;
use std::ffi::c_char;
use std::path::Path;

use serde::Deserialize;

use crate::data::{Array, Brain, BrainHeader};
use crate::ffi::tensor::{ft_tensor, RawView};
use crate::ffi::{boxed, c_string, copy_arg, free_box, ft_status, guard, handle, out_arg, str_arg, FfiError, FfiResult, Immutable};

// ---------------------------------------------------------------------------------------------
// Handles

/// A subject's brain data (responses z-scored per voxel on load). Immutable once loaded: every
/// function taking `const ft_brain *` may be called from several threads at once.
pub struct ft_brain {
    pub(crate) inner: Brain,
}

impl Immutable for ft_brain {}

// ---------------------------------------------------------------------------------------------
// Brains

/// Loads and validates a brain file (DESIGN §2) and z-scores each voxel. On success `*out` is a
/// new handle to free with `ft_brain_free`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_load(path: *const c_char, out: *mut *mut ft_brain) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let brain = Brain::load(Path::new(path))?;
        *out = boxed(ft_brain { inner: brain });
        Ok(())
    })
}

/// Frees a brain (NULL is a no-op).
///
/// # Safety
/// `brain` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_free(brain: *mut ft_brain) {
    // SAFETY: caller's contract.
    unsafe { free_box(brain) }
}

/// Number of probe images and voxels of a brain.
///
/// # Safety
/// `brain` is a live handle; the out-pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_shape(brain: *const ft_brain, n_images: *mut usize, n_voxels: *mut usize) -> ft_status {
    guard(|| {
        let b = handle(brain, "brain")?;
        let n = out_arg(n_images, "n_images")?;
        let v = out_arg(n_voxels, "n_voxels")?;
        *n = b.inner.n_images();
        *v = b.inner.n_voxels();
        Ok(())
    })
}

/// The arrays of a brain (DESIGN §2), for `ft_brain_new`. Optional members are NULL when absent.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_brain_arrays {
    /// `[N, V]` responses to the probe images (f32, f16 or bf16).
    pub responses: *const ft_tensor,
    /// `[V, 3]` voxel positions.
    pub coords: *const ft_tensor,
    /// `[V]` index into the ROI names, -1 for voxels outside every ROI.
    pub roi: *const i32,
    /// Length of `roi`; must equal V.
    pub roi_len: usize,
    /// `[V]` noise ceiling in R² units, or NULL.
    pub noise_ceiling: *const ft_tensor,
    /// `[V, 2]` flatmap positions for pictures, or NULL.
    pub flat: *const ft_tensor,
    /// A JSON object: `roi_names` (list of strings, required when any voxel is in an ROI),
    /// `roi_levels` (list of integers; default from the names as in DESIGN §2), `subject`
    /// (string), `stimulus_ids` (list of N strings). NULL: `{}`.
    pub metadata_json: *const c_char,
    /// Non-zero: z-score each voxel over images, as `ft_brain_load` does (recommended).
    pub zscore: i32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BrainMetadata {
    #[serde(default)]
    roi_names: Option<Vec<String>>,
    #[serde(default)]
    roi_levels: Option<Vec<i32>>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    stimulus_ids: Option<Vec<String>>,
}

const ORIGIN: &str = "brain arrays";

/// Converts an optional tensor argument.
///
/// # Safety
/// `t` is NULL or satisfies the `ft_tensor` contract.
unsafe fn opt_array(t: *const ft_tensor, what: &str) -> FfiResult<Option<Array>> {
    // SAFETY: forwarded contract.
    match unsafe { t.as_ref() } {
        None => Ok(None),
        // SAFETY: forwarded contract.
        Some(t) => Ok(Some(unsafe { RawView::from_ft(t, what)?.to_array()? })),
    }
}

fn brain_from_arrays(a: &ft_brain_arrays) -> FfiResult<Brain> {
    // SAFETY: by the contract of `ft_brain_new`, each non-NULL tensor satisfies `ft_tensor`'s.
    let responses = unsafe { opt_array(a.responses, "responses") }?.ok_or_else(|| FfiError::null("arrays.responses"))?;
    // SAFETY: as above.
    let coords = unsafe { opt_array(a.coords, "coords") }?.ok_or_else(|| FfiError::null("arrays.coords"))?;
    if a.roi.is_null() {
        return Err(FfiError::null("arrays.roi"));
    }
    // SAFETY: non-NULL and, by the contract, valid for `roi_len` reads.
    let roi = unsafe { copy_arg(a.roi, a.roi_len, "arrays.roi (roi_len)", crate::data::limits::MAX_ELEMENTS) }?;
    // SAFETY: as above for the optional tensors.
    let noise_ceiling = unsafe { opt_array(a.noise_ceiling, "noise_ceiling") }?;
    // SAFETY: as above.
    let flat = unsafe { opt_array(a.flat, "flat") }?;
    let meta: BrainMetadata = match a.metadata_json.is_null() {
        true => BrainMetadata::default(),
        false => {
            // SAFETY: non-NULL, NUL-terminated by the contract.
            let s = unsafe { str_arg(a.metadata_json, "arrays.metadata_json") }?;
            serde_json::from_str(s).map_err(|e| FfiError::invalid(format!("arrays.metadata_json: {e}")))?
        }
    };
    if let Some(nc) = &noise_ceiling {
        if nc.shape.len() != 1 {
            return Err(Error::shape("noise_ceiling", format!("noise_ceiling has shape {:?}; expected [V]", nc.shape)).into());
        }
    }
    let roi_names = match meta.roi_names {
        Some(n) => n,
        None if roi.iter().any(|&r| r >= 0) => {
            return Err(FfiError::invalid(
                "arrays.metadata_json needs `roi_names` (a JSON list of ROI names) because `roi` assigns voxels to ROIs",
            ))
        }
        None => Vec::new(),
    };
    let roi_levels = meta.roi_levels.unwrap_or_else(|| roi_names.iter().map(|n| Brain::default_level(n)).collect());
    let mut brain = Brain {
        responses: responses.into(),
        coords,
        roi,
        noise_ceiling: noise_ceiling.map(|a| a.data),
        flat,
        hemisphere: None,
        roi_names,
        roi_levels,
        stimulus_ids: meta.stimulus_ids,
        subject: meta.subject,
    };
    brain.validate(ORIGIN)?;
    if a.zscore != 0 {
        brain.zscore(ORIGIN)?;
    }
    Ok(brain)
}

/// Builds a brain from arrays (copied; nothing is kept) and validates it as `ft_brain_load`
/// validates a file: shapes, finiteness, ROI indices, and with `zscore` no constant voxel.
///
/// # Safety
/// `arrays` is valid for reads; its non-NULL tensors satisfy the `ft_tensor` contract, `roi` is
/// valid for `roi_len` reads and `metadata_json` is NULL or a NUL-terminated string; `out` is
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_new(arrays: *const ft_brain_arrays, out: *mut *mut ft_brain) -> ft_status {
    guard(|| {
        let a = crate::ffi::arg_ref(arrays, "arrays")?;
        let out = out_arg(out, "out")?;
        let brain = brain_from_arrays(a)?;
        *out = Box::into_raw(Box::new(ft_brain { inner: brain }));
        Ok(())
    })
}

/// Writes a brain file (atomically) that `ft_brain_load` and the CLI read. The responses are
/// written as held, i.e. z-scored when the brain was.
///
/// # Safety
/// `brain` is a live handle; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_save(brain: *const ft_brain, path: *const c_char) -> ft_status {
    guard(|| {
        let b = handle(brain, "brain")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        b.inner.save(Path::new(path))?;
        Ok(())
    })
}

/// A JSON object describing a brain: `n_images`, `n_voxels`, `roi_names`, `roi_levels`,
/// `roi_sizes` (voxels per ROI), `subject` (or null), `has_noise_ceiling`. Free `*out` with
/// `ft_string_free`.
///
/// # Safety
/// `brain` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_info_json(brain: *const ft_brain, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let b = &handle(brain, "brain")?.inner;
        let out = out_arg(out, "out")?;
        let mut sizes = vec![0usize; b.roi_names.len()];
        for &r in &b.roi {
            if let Some(s) = usize::try_from(r).ok().and_then(|r| sizes.get_mut(r)) {
                *s += 1;
            }
        }
        let info = serde_json::json!({
            "n_images": b.n_images(),
            "n_voxels": b.n_voxels(),
            "roi_names": b.roi_names,
            "roi_levels": b.roi_levels,
            "roi_sizes": sizes,
            "subject": b.subject,
            "has_noise_ceiling": b.noise_ceiling.is_some(),
        });
        *out = c_string(info.to_string());
        Ok(())
    })
}

/// What a brain file's header says, without reading its values: `*out` is JSON with
/// `n_images`, `n_voxels` and `subject` (`null` when the file names none); free it with
/// `ft_string_free`. For planning a grid (the schedule follows the number of images).
///
/// # Safety
/// `path` is NUL-terminated; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_file_header(path: *const c_char, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let h = BrainHeader::read(std::path::Path::new(path))?;
        *out = c_string(
            serde_json::json!({ "n_images": h.n_images, "n_voxels": h.n_voxels, "subject": h.subject }).to_string(),
        );
        Ok(())
    })
}
