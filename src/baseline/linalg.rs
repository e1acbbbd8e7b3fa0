//! The dense linear algebra the ridge baseline needs, on row-major buffers: matrix products
//! (faer's blocked, SIMD, rayon-parallel GEMM), a symmetric eigendecomposition and a thin SVD.
//! Everything here works on plain `Vec`/slices so the rest of the module stays backend-free.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par, Side};

use crate::error::{Error, Result};

/// Parallelism for the products: the global rayon pool (so `RAYON_NUM_THREADS` sets it).
pub(crate) fn par() -> Par {
    Par::rayon(0)
}

/// Row-major view of `data` as an `rows × cols` matrix.
pub(crate) fn rm<T>(data: &[T], rows: usize, cols: usize) -> MatRef<'_, T> {
    MatRef::from_row_major_slice(&data[..rows * cols], rows, cols)
}

/// Mutable row-major view.
pub(crate) fn rm_mut<T>(data: &mut [T], rows: usize, cols: usize) -> MatMut<'_, T> {
    MatMut::from_row_major_slice_mut(&mut data[..rows * cols], rows, cols)
}

/// Row-major view of columns `c0..c0+cols` of a row-major matrix with `stride` columns.
pub(crate) fn rm_cols<T>(data: &[T], rows: usize, stride: usize, c0: usize, cols: usize) -> MatRef<'_, T> {
    if rows == 0 || cols == 0 {
        return MatRef::from_row_major_slice(&data[..0], rows, cols);
    }
    let end = (rows - 1) * stride + c0 + cols;
    MatRef::from_column_major_slice_with_stride(&data[c0..end], cols, rows, stride).transpose()
}

/// Mutable view of columns `c0..c0+cols` of a row-major matrix with `stride` columns.
pub(crate) fn rm_cols_mut<T>(
    data: &mut [T],
    rows: usize,
    stride: usize,
    c0: usize,
    cols: usize,
) -> MatMut<'_, T> {
    if rows == 0 || cols == 0 {
        return MatMut::from_row_major_slice_mut(&mut data[..0], rows, cols);
    }
    let end = (rows - 1) * stride + c0 + cols;
    // Not `from_row_major_slice_with_stride_mut`: in faer 0.24.4 it builds a column-major view.
    MatMut::from_column_major_slice_with_stride_mut(&mut data[c0..end], cols, rows, stride).transpose_mut()
}

/// `dst = a · b` (or `dst += a · b` when `add`), f32.
pub(crate) fn gemm_f32(dst: MatMut<'_, f32>, add: bool, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    if a.ncols() == 0 {
        // faer handles k = 0, but make the "replace" contract explicit.
        if !add {
            let mut dst = dst;
            dst.fill(0.0);
        }
        return;
    }
    matmul(dst, if add { Accum::Add } else { Accum::Replace }, a, b, 1.0f32, par());
}

/// `dst = a · b`, f64.
pub(crate) fn gemm_f64(dst: MatMut<'_, f64>, a: MatRef<'_, f64>, b: MatRef<'_, f64>) {
    matmul(dst, Accum::Replace, a, b, 1.0f64, par());
}

/// Eigendecomposition of a symmetric `n × n` matrix (row-major; only the lower triangle is
/// read). Returns the eigenvalues in nondecreasing order and the eigenvectors as the columns of
/// a row-major `n × n` matrix.
pub(crate) fn sym_eig(g: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let evd = rm(g, n, n)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numeric(format!("symmetric eigendecomposition did not converge: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let vals: Vec<f64> = (0..n).map(|i| s[i]).collect();
    let mut vecs = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            vecs[i * n + j] = u[(i, j)];
        }
    }
    Ok((vals, vecs))
}

/// Thin SVD of a row-major `m × n` f64 matrix: `(U [m × r], s [r], V [n × r])`, r = min(m, n),
/// singular values nonincreasing; `U` and `V` row-major.
pub(crate) fn thin_svd(a: &[f64], m: usize, n: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let r = m.min(n);
    if r == 0 {
        return Ok((Vec::new(), Vec::new(), Vec::new()));
    }
    let svd = rm(a, m, n)
        .thin_svd()
        .map_err(|e| Error::Numeric(format!("SVD did not converge: {e:?}")))?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let mut uo = vec![0.0; m * r];
    let mut vo = vec![0.0; n * r];
    for i in 0..m {
        for j in 0..r {
            uo[i * r + j] = u[(i, j)];
        }
    }
    for i in 0..n {
        for j in 0..r {
            vo[i * r + j] = v[(i, j)];
        }
    }
    Ok((uo, (0..r).map(|i| s[i]).collect(), vo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_on_column_slices() {
        // a = [[1,2],[3,4]], b = columns 1..3 of [[0,1,2],[0,3,4]].
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [0.0f32, 1.0, 2.0, 0.0, 3.0, 4.0];
        let mut c = vec![0.0f32; 2 * 4];
        gemm_f32(rm_cols_mut(&mut c, 2, 4, 1, 2), false, rm(&a, 2, 2), rm_cols(&b, 2, 3, 1, 2));
        assert_eq!(c, vec![0.0, 7.0, 10.0, 0.0, 0.0, 15.0, 22.0, 0.0]);
        gemm_f32(rm_cols_mut(&mut c, 2, 4, 1, 2), true, rm(&a, 2, 2), rm_cols(&b, 2, 3, 1, 2));
        assert_eq!(c[1], 14.0);
    }

    #[test]
    fn eig_and_svd_reconstruct() {
        let g = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (l, v) = sym_eig(&g, 3).unwrap();
        assert!(l[0] <= l[1] && l[1] <= l[2]);
        for i in 0..3 {
            for j in 0..3 {
                let x: f64 = (0..3).map(|k| v[i * 3 + k] * l[k] * v[j * 3 + k]).sum();
                assert!((x - g[i * 3 + j]).abs() < 1e-12);
            }
        }
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.5];
        let (u, s, vv) = thin_svd(&a, 2, 3).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let x: f64 = (0..2).map(|k| u[i * 2 + k] * s[k] * vv[j * 2 + k]).sum();
                assert!((x - a[i * 3 + j]).abs() < 1e-12);
            }
        }
    }
}
