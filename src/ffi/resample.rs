//! The library's grid resampling through the C ABI (`ft_resample`), so that a caller that shrinks
//! feature maps before handing them over (Python's `hooks.to_grid`, to keep host memory small)
//! computes exactly what the encoder would: one implementation, `model::resample`.

use crate::error::Error;
use std::ffi::c_char;

use crate::ffi::config::resample_arg;
use crate::ffi::{ft_status, guard, FfiError};
use crate::model::resample::resample_into;

/// Resizes `n · channels` maps of `height × width` f32 values (row-major `[N, C, H, W]`, `input`
/// holding `input_len` floats, which must be `n · channels · height · width`) to
/// `out_height × out_width` with the grid resampling the encoders use: `resample` is
/// `"bilinear"`, `"area"` or `"auto"` (NULL: `"auto"`; see `ft_fit_new_resampled`), each axis
/// resized by its own rule (`auto`: area where the axis shrinks, bilinear where it grows or
/// keeps its size). The result, row-major `[N, C, out_height, out_width]`, is written into
/// `out[0 .. n · channels · out_height · out_width)`; `capacity` is the number of floats `out`
/// holds. Resizing to the fit's grid G this way gives the maps, bit for bit, that a fit or an
/// encoder with the same `resample` computes from the full-size maps.
///
/// Errors, with nothing written (except after `FT_ERR_MEMORY`, when `out` may hold some maps):
/// `FT_ERR_NULL` (`input` or `out` NULL), `FT_ERR_SHAPE` (a zero
/// height, width or output size, `input_len` not the product of the sizes, `capacity` too
/// small), `FT_ERR_INVALID_ARGUMENT` (sizes whose product overflows, an unknown `resample`, one
/// input map (`height · width`), one output map (`out_height · out_width`) or the working row
/// (`height · out_width`) beyond the library's limit on one array, 2³¹ elements, even when `n`
/// or `channels` is 0), `FT_ERR_DATA` (a NaN or infinite input value, named by its index),
/// `FT_ERR_MEMORY` (that working row cannot be allocated). Nothing else is allocated: no table
/// is sized by the requested output.
///
/// # Safety
/// `input` is NULL or valid for `input_len` reads; `out` is NULL or valid for `capacity` writes
/// and does not overlap `input`; `resample` is NULL or a NUL-terminated string.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ft_resample(
    input: *const f32,
    input_len: usize,
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_height: usize,
    out_width: usize,
    resample: *const c_char,
    out: *mut f32,
    capacity: usize,
) -> ft_status {
    guard(|| {
        if input.is_null() {
            return Err(FfiError::null("input"));
        }
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        // SAFETY: caller's contract.
        let method = unsafe { resample_arg(resample) }?;
        let shape = |msg: String| FfiError::from(Error::shape("input", msg));
        if height == 0 || width == 0 || out_height == 0 || out_width == 0 {
            return Err(shape(format!(
                "ft_resample: every map size must be positive, got {height}×{width} to {out_height}×{out_width}"
            )));
        }
        let product = |dims: [usize; 4], what: &str| {
            dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
                FfiError::invalid(format!("ft_resample: the {what} size {dims:?} overflows"))
            })
        };
        let need_in = product([n, channels, height, width], "input")?;
        let need_out = product([n, channels, out_height, out_width], "output")?;
        if input_len != need_in {
            return Err(shape(format!(
                "ft_resample: input holds {input_len} floats; [{n}, {channels}, {height}, {width}] needs {need_in}"
            )));
        }
        if capacity < need_out {
            return Err(shape(format!(
                "ft_resample: out holds {capacity} floats; [{n}, {channels}, {out_height}, {out_width}] needs {need_out}"
            )));
        }
        // SAFETY: non-NULL and valid for `input_len` = `need_in` reads by the caller's contract.
        let src = unsafe { std::slice::from_raw_parts(input, need_in) };
        if let Some(i) = crate::data::array::first_non_finite(src) {
            return Err(FfiError::new(
                ft_status::FT_ERR_DATA,
                format!("ft_resample: input value {i} is {} (maps must be finite)", src[i]),
            ));
        }
        // SAFETY: non-NULL, valid for `capacity` ≥ `need_out` writes and not overlapping `input`
        // by the caller's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(out, need_out) };
        // Sizes checked above: non-zero, and `dst` holds as many maps as `src`.
        resample_into(src, (height, width), (out_height, out_width), method, dst)?;
        Ok(())
    })
}
