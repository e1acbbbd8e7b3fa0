//! Row-major views of flat `f32` buffers and the one matrix product the trainer uses (faer's
//! blocked SIMD GEMM, always sequential: `Par::Seq`). Parallelism comes from rayon loops over
//! independent products (layers, images) or over fixed blocks of output rows ([`gemm_rows`]),
//! so there is one thread pool, no spinning barrier, and every output element is summed in the
//! same order on every run.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// `rows × cols` row-major view of `data[off..]` with `stride` elements between rows.
pub fn view(data: &[f32], off: usize, rows: usize, cols: usize, stride: usize) -> MatRef<'_, f32> {
    if rows == 0 || cols == 0 {
        return MatRef::from_row_major_slice(&data[..0], rows, cols);
    }
    let end = off + (rows - 1) * stride + cols;
    MatRef::from_column_major_slice_with_stride(&data[off..end], cols, rows, stride).transpose()
}

/// Mutable version of [`view`].
pub fn view_mut(data: &mut [f32], off: usize, rows: usize, cols: usize, stride: usize) -> MatMut<'_, f32> {
    if rows == 0 || cols == 0 {
        return MatMut::from_row_major_slice_mut(&mut data[..0], rows, cols);
    }
    let end = off + (rows - 1) * stride + cols;
    // Built column-major and transposed: `from_row_major_slice_with_stride_mut` of faer 0.24.4
    // builds a column-major view (see baseline::linalg).
    MatMut::from_column_major_slice_with_stride_mut(&mut data[off..end], cols, rows, stride).transpose_mut()
}

/// Contiguous row-major view.
pub fn rm(data: &[f32], rows: usize, cols: usize) -> MatRef<'_, f32> {
    view(data, 0, rows, cols, cols)
}

/// `dst = a·b`, or `dst += a·b` when `add`.
pub fn gemm(dst: MatMut<'_, f32>, add: bool, a: MatRef<'_, f32>, b: MatRef<'_, f32>, par: Par) {
    if a.ncols() == 0 {
        if !add {
            let mut dst = dst;
            dst.fill(0.0);
        }
        return;
    }
    matmul(dst, if add { Accum::Add } else { Accum::Replace }, a, b, 1.0f32, par);
}

/// `dst = a·b` (or `+=`) with `dst` the `m × n` row-major block at `off` with row stride
/// `stride` inside `buf`, its rows split in fixed blocks of `block` rows, one sequential product
/// per block on rayon's pool. faer's own parallel product synchronises its threads with spinning
/// barriers, which collapses when the machine is shared; blocks of rows need no synchronisation,
/// and because the split does not depend on the thread count each output element is summed in
/// the same order on every run.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows(
    buf: &mut [f32],
    off: usize,
    m: usize,
    n: usize,
    stride: usize,
    add: bool,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    block: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let end = off + (m - 1) * stride + n;
    buf[off..end].par_chunks_mut(block * stride).enumerate().for_each(|(i, chunk)| {
        let r0 = i * block;
        let rows = block.min(m - r0);
        gemm(view_mut(chunk, 0, rows, n, stride), add, a.subrows(r0, rows), b, Par::Seq);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_multiply_like_the_definition() {
        // a: 3×2 at offset 1 with stride 4 inside a buffer; b: 2×3 contiguous; dst: 3×3 stride 5.
        let buf: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let b: Vec<f32> = vec![1.0, -1.0, 2.0, 0.5, 3.0, -2.0];
        let mut out = vec![7f32; 15];
        gemm(view_mut(&mut out, 0, 3, 3, 5), false, view(&buf, 1, 3, 2, 4), rm(&b, 2, 3), Par::Seq);
        for i in 0..3 {
            for j in 0..3 {
                let want: f32 = (0..2).map(|k| buf[1 + i * 4 + k] * b[k * 3 + j]).sum();
                assert_eq!(out[i * 5 + j], want);
            }
            // Elements between rows are untouched.
            assert_eq!(out[i * 5 + 3], 7.0);
        }
        // Transposed operand and accumulation.
        gemm(view_mut(&mut out, 0, 3, 3, 5), true, view(&buf, 1, 3, 2, 4), rm(&b, 2, 3), Par::Seq);
        let want: f32 = 2.0 * (0..2).map(|k| buf[1 + k] * b[k * 3]).sum::<f32>();
        assert_eq!(out[0], want);
        let t = rm(&b, 2, 3).transpose();
        assert_eq!(t[(2, 1)], b[5]);
    }
}
