//! Small checks shared by the kernel wrappers.

use crate::error::{Error, Result};

/// A device buffer must hold exactly the elements its shape says (kernels do not bounds-check).
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::shape(what, format!("{what}: buffer holds {got} elements, the shape needs {want}")));
    }
    Ok(())
}

/// A size passed to a kernel as a 32-bit int.
pub(crate) fn dim_i32(what: &str, x: usize) -> Result<i32> {
    i32::try_from(x).map_err(|_| Error::invalid(format!("{what} = {x} does not fit the GPU kernels' 32-bit sizes")))
}

pub(crate) fn launch_err<E: std::fmt::Debug>(kernel: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Cuda(format!("launching {kernel}: {e:?}"))
}

/// Blocks for a grid-stride loop over `n` elements: enough to fill a large GPU, never more than
/// the work.
pub(crate) fn stride_blocks(n: usize, block: u32) -> u32 {
    (n.div_ceil(block as usize)).clamp(1, 4096) as u32
}
