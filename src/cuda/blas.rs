//! Row-major matrix products on cuBLAS. cuBLAS is column-major; a row-major `C = op(A)·op(B)`
//! is the column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`, so the operands are swapped and the leading
//! dimensions are the row strides. Every extent is checked before the call, since cuBLAS reads
//! and writes whatever the pointers and strides say.

use super::module::Gpu;
use crate::error::{Error, Result};
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaView, CudaViewMut};

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

impl Op {
    fn cublas(self) -> cublasOperation_t {
        match self {
            Op::N => cublasOperation_t::CUBLAS_OP_N,
            Op::T => cublasOperation_t::CUBLAS_OP_T,
        }
    }
}

/// A row-major matrix operand: `rows × cols` as used (after `op`), row stride `ld`.
fn extent(what: &str, op: Op, rows: usize, cols: usize, ld: usize) -> Result<usize> {
    // Stored shape: as used for N, transposed for T.
    let (sr, sc) = if op == Op::N { (rows, cols) } else { (cols, rows) };
    if ld < sc.max(1) {
        return Err(Error::invalid(format!("gemm {what}: row stride {ld} is less than the {sc} stored columns")));
    }
    Ok(if sr == 0 { 0 } else { (sr - 1) * ld + sc })
}

fn int(what: &str, x: usize) -> Result<i32> {
    i32::try_from(x).map_err(|_| Error::invalid(format!("gemm {what} = {x} exceeds cuBLAS's 32-bit sizes")))
}

/// The shape of a row-major product `C[m×n] = alpha·op(A)[m×k]·op(B)[k×n] + beta·C`.
#[derive(Debug, Clone, Copy)]
pub struct Gemm2 {
    pub ta: Op,
    pub tb: Op,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub alpha: f32,
    pub beta: f32,
}

impl Gemm2 {
    /// Dense operands: row strides equal to the stored widths.
    pub fn dense(ta: Op, tb: Op, m: usize, n: usize, k: usize) -> Self {
        let lda = if ta == Op::N { k } else { m };
        let ldb = if tb == Op::N { n } else { k };
        Gemm2 { ta, tb, m, n, k, lda, ldb, ldc: n, alpha: 1.0, beta: 0.0 }
    }
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }
    pub fn lds(mut self, lda: usize, ldb: usize, ldc: usize) -> Self {
        self.lda = lda;
        self.ldb = ldb;
        self.ldc = ldc;
        self
    }

    fn extents(&self) -> Result<(usize, usize, usize)> {
        Ok((
            extent("A", self.ta, self.m, self.k, self.lda)?,
            extent("B", self.tb, self.k, self.n, self.ldb)?,
            extent("C", Op::N, self.m, self.n, self.ldc)?,
        ))
    }

    fn config(&self) -> Result<GemmConfig<f32>> {
        // Column-major Cᵀ[n×m] = op(B)ᵀ[n×k] · op(A)ᵀ[k×m].
        Ok(GemmConfig {
            transa: self.tb.cublas(),
            transb: self.ta.cublas(),
            m: int("n", self.n)?,
            n: int("m", self.m)?,
            k: int("k", self.k)?,
            alpha: self.alpha,
            lda: int("ldb", self.ldb)?,
            ldb: int("lda", self.lda)?,
            beta: self.beta,
            ldc: int("ldc", self.ldc)?,
        })
    }
}

fn too_short(what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(Error::invalid(format!("gemm {what}: buffer holds {have} elements, the product reads {need}")));
    }
    Ok(())
}

/// `C = alpha·op(A)·op(B) + beta·C`, row-major.
pub fn gemm(gpu: &Gpu, g: &Gemm2, a: &CudaView<f32>, b: &CudaView<f32>, c: &mut CudaViewMut<f32>) -> Result<()> {
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    let (ea, eb, ec) = g.extents()?;
    too_short("A", a.len(), ea)?;
    too_short("B", b.len(), eb)?;
    too_short("C", c.len(), ec)?;
    let cfg = g.config()?;
    // cuBLAS works in the calling thread's current context, which cudarc only sets for its own
    // calls.
    gpu.ctx.bind_to_thread().map_err(|e| Error::Cuda(format!("binding the CUDA context: {e:?}")))?;
    // SAFETY: the extents of all three operands were checked against their buffers above, and
    // the configuration is the column-major transcription of the checked row-major shape.
    unsafe { gpu.blas.gemm(cfg, b, a, c) }.map_err(|e| Error::Cuda(format!("cuBLAS sgemm {g:?}: {e:?}")))
}

/// `batch` products at element strides `sa`, `sb`, `sc` (a stride of 0 reuses one operand).
pub fn gemm_strided_batched(
    gpu: &Gpu,
    g: &Gemm2,
    batch: usize,
    (sa, sb, sc): (usize, usize, usize),
    a: &CudaView<f32>,
    b: &CudaView<f32>,
    c: &mut CudaViewMut<f32>,
) -> Result<()> {
    if g.m == 0 || g.n == 0 || batch == 0 {
        return Ok(());
    }
    let (ea, eb, ec) = g.extents()?;
    too_short("A", a.len(), (batch - 1) * sa + ea)?;
    too_short("B", b.len(), (batch - 1) * sb + eb)?;
    too_short("C", c.len(), (batch - 1) * sc + ec)?;
    if sc < ec && batch > 1 {
        return Err(Error::invalid("gemm: batched outputs overlap"));
    }
    gpu.ctx.bind_to_thread().map_err(|e| Error::Cuda(format!("binding the CUDA context: {e:?}")))?;
    let cfg = StridedBatchedConfig {
        gemm: g.config()?,
        batch_size: int("batch", batch)?,
        stride_a: sb as i64,
        stride_b: sa as i64,
        stride_c: sc as i64,
    };
    // SAFETY: as in gemm, for every batch member: the last member's extents were checked.
    unsafe { gpu.blas.gemm_strided_batched(cfg, b, a, c) }
        .map_err(|e| Error::Cuda(format!("cuBLAS sgemm_strided_batched {g:?}: {e:?}")))
}

#[cfg(test)]
mod tests {
    //! The row-major → column-major transcription, checked on the host against a literal
    //! implementation of cuBLAS's sgemm contract, for the operand shapes the GPU fit uses
    //! (padded leading dimensions, column offsets, transposes). Needs no GPU.
    use super::*;
    use crate::rng::Rng;

    /// cuBLAS sgemm semantics, column-major: C = alpha·op(A)·op(B) + beta·C.
    fn sgemm_colmajor(cfg: &GemmConfig<f32>, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
        let (lda, ldb, ldc) = (cfg.lda as usize, cfg.ldb as usize, cfg.ldc as usize);
        let n_op = |t: cublasOperation_t| t == cublasOperation_t::CUBLAS_OP_N;
        for j in 0..n {
            for i in 0..m {
                let mut s = 0f64;
                for p in 0..k {
                    let av = if n_op(cfg.transa) { a[i + p * lda] } else { a[p + i * lda] };
                    let bv = if n_op(cfg.transb) { b[p + j * ldb] } else { b[j + p * ldb] };
                    s += av as f64 * bv as f64;
                }
                let old = c[i + j * ldc];
                c[i + j * ldc] = (cfg.alpha as f64 * s + cfg.beta as f64 * old as f64) as f32;
            }
        }
    }

    /// The row-major meaning of a [`Gemm2`], computed directly.
    fn rowmajor(g: &Gemm2, a: &[f32], b: &[f32], c: &mut [f32]) {
        for i in 0..g.m {
            for j in 0..g.n {
                let mut s = 0f64;
                for p in 0..g.k {
                    let av = if g.ta == Op::N { a[i * g.lda + p] } else { a[p * g.lda + i] };
                    let bv = if g.tb == Op::N { b[p * g.ldb + j] } else { b[j * g.ldb + p] };
                    s += av as f64 * bv as f64;
                }
                let old = c[i * g.ldc + j];
                c[i * g.ldc + j] = (g.alpha as f64 * s + g.beta as f64 * old as f64) as f32;
            }
        }
    }

    #[test]
    fn transcription_matches_row_major_meaning() {
        let (v, h, k, sw) = (7usize, 5usize, 3usize, 9usize);
        let cases = [
            // MLP layer: [V, 192]·W1ᵀ.
            Gemm2::dense(Op::N, Op::T, v, h, 6),
            // Head into the packed [V, L+3] input at a column offset.
            Gemm2::dense(Op::N, Op::T, v, k, h).lds(h, h, sw),
            // d W5 = d rawᵀ·h3 with d raw strided.
            Gemm2::dense(Op::T, Op::N, k, h, v).lds(sw, h, h),
            // d h3 = d raw·W5.
            Gemm2::dense(Op::N, Op::N, v, h, k).lds(sw, h, h),
            // Bias gradient 1ᵀ·d a, accumulating.
            Gemm2::dense(Op::N, Op::N, 1, h, v).beta(1.0),
            // d Q = d Gᵀ·x with d G rows far apart.
            Gemm2::dense(Op::T, Op::N, 4, 6, 3).lds(23, 6, 6),
            // Global alignment into rows far apart.
            Gemm2::dense(Op::N, Op::T, 3, 4, 6).lds(6, 6, 23),
        ];
        let mut rng = Rng::new(1);
        for g in cases {
            let (ea, eb, ec) = g.extents().unwrap();
            let a: Vec<f32> = (0..ea).map(|_| rng.normal() as f32).collect();
            let b: Vec<f32> = (0..eb).map(|_| rng.normal() as f32).collect();
            let c0: Vec<f32> = (0..ec + 2).map(|_| rng.normal() as f32).collect();
            let mut want = c0.clone();
            rowmajor(&g, &a, &b, &mut want);
            let mut got = c0.clone();
            // As `gemm` calls it: operands swapped.
            sgemm_colmajor(&g.config().unwrap(), &b, &a, &mut got);
            for (x, y) in got.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5, "{g:?}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn extents_reject_short_strides() {
        assert!(Gemm2::dense(Op::N, Op::N, 3, 4, 5).lds(4, 4, 4).extents().is_err());
        assert!(Gemm2::dense(Op::N, Op::N, 3, 4, 5).lds(5, 4, 3).extents().is_err());
        assert_eq!(
            Gemm2::dense(Op::T, Op::N, 3, 4, 5).lds(7, 4, 4).extents().unwrap(),
            (4 * 7 + 3, 4 * 4 + 4, 2 * 4 + 4)
        );
    }
}
