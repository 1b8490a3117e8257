//! One safe entry to the `gemm` crate (the matrix kernels burn's Flex backend runs on) for the
//! CPU kernels: `dst (+)= lhs · rhs` on row-major slices, either operand optionally transposed,
//! single-threaded (the kernels parallelise over groups) ([`matmul`]); and a product into a
//! new vector on every core ([`product`]), which writes its output once: no zero-fill first.

/// A row-major `rows × cols` matrix in a slice (rows `ld` elements apart), read as its
/// transpose when `t`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// The elements: row r starts at `r · ld`.
    pub data: &'a [f32],
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Distance between rows, elements (≥ cols).
    pub ld: usize,
    /// Read as the transpose.
    pub t: bool,
}

/// Elements a `rows × cols` matrix with rows `ld` apart spans.
fn span(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

impl<'a> Mat<'a> {
    /// The stored matrix, rows packed.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// The stored matrix with rows `ld` apart (a column block of a wider matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            ld,
            t: false,
        }
    }

    /// Its transpose (no copy).
    pub fn t(self) -> Self {
        Self { t: !self.t, ..self }
    }

    /// (rows, cols) as read.
    fn shape(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// (column stride, row stride) as read.
    fn strides(&self) -> (isize, isize) {
        if self.t {
            (self.ld as isize, 1)
        } else {
            (1, self.ld as isize)
        }
    }

    fn fits(&self) -> bool {
        self.ld >= self.cols && self.data.len() >= span(self.rows, self.cols, self.ld)
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`), `dst` row-major `m × n`.
///
/// # Panics
/// When the shapes do not chain or a slice is shorter than its matrix.
pub fn matmul(dst: &mut [f32], lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool) {
    let n = rhs.shape().1;
    matmul_strided(dst, n, lhs, rhs, accumulate);
}

/// As [`matmul`], with `dst`'s rows `dst_ld` elements apart.
///
/// # Panics
/// When the shapes do not chain or a slice is shorter than its matrix.
pub fn matmul_strided(
    dst: &mut [f32],
    dst_ld: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    accumulate: bool,
) {
    let ((m, k), (k2, n)) = (lhs.shape(), rhs.shape());
    assert_eq!(k, k2, "matmul: inner dimensions {k} and {k2} differ");
    assert!(
        dst_ld >= n && dst.len() >= span(m, n, dst_ld) && lhs.fits() && rhs.fits(),
        "matmul: a slice is shorter than its matrix"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_ld..r * dst_ld + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the assertions above bound every index gemm reads or writes: lhs is m × k and
    // rhs k × n within their slices' spans, dst m × n with rows dst_ld apart within its slice;
    // the slices cannot overlap (dst is borrowed mutably).
    #[allow(unsafe_code)]
    unsafe {
        run(
            dst.as_mut_ptr(),
            dst_ld,
            accumulate,
            lhs,
            rhs,
            gemm::Parallelism::None,
        )
    }
}

/// `dst (+)= lhs · rhs` through gemm, `dst` row-major with rows `dst_ld` apart.
///
/// # Safety
/// `lhs` and `rhs` must chain and lie within their slices; `dst` must be valid for writes of
/// the m × n result with rows `dst_ld` apart, not overlap them, and be initialised when
/// `accumulate`.
#[allow(unsafe_code)]
unsafe fn run(
    dst: *mut f32,
    dst_ld: usize,
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    parallelism: gemm::Parallelism,
) {
    let ((m, k), (_, n)) = (lhs.shape(), rhs.shape());
    let (lcs, lrs) = lhs.strides();
    let (rcs, rrs) = rhs.strides();
    // SAFETY: the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_ld as isize,
            accumulate,
            lhs.data.as_ptr(),
            lcs,
            lrs,
            rhs.data.as_ptr(),
            rcs,
            rrs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `lhs · rhs`, plus `bias` on every row when given, as a new row-major `m × n` vector, computed
/// on every core (gemm's rayon parallelism).
///
/// # Panics
/// When the shapes do not chain, a slice is shorter than its matrix, or `bias` is not `n` long.
pub fn product(lhs: Mat<'_>, rhs: Mat<'_>, bias: Option<&[f32]>) -> Vec<f32> {
    let ((m, k), (k2, n)) = (lhs.shape(), rhs.shape());
    assert_eq!(k, k2, "product: inner dimensions {k} and {k2} differ");
    assert!(
        lhs.fits() && rhs.fits(),
        "product: a slice is shorter than its matrix"
    );
    let mut out = Vec::with_capacity(m * n);
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "product: the bias is not one row long");
        for _ in 0..m {
            out.extend_from_slice(b);
        }
    }
    if m == 0 || n == 0 {
        return out;
    }
    if k == 0 {
        out.resize(m * n, 0.0);
        return out;
    }
    let accumulate = bias.is_some();
    // SAFETY: `out` has room for m · n elements; lhs (m × k) and rhs (k × n) lie within their
    // slices (asserted above) and cannot overlap `out`, a fresh allocation. With `accumulate`
    // the m · n elements are initialised (the bias rows); without it gemm does not read `dst`
    // (`read_dst = false` sets its α to zero, and the micro-kernels then store β · lhs · rhs
    // without loading: `gemm-common`'s `gemm_basic_generic`, tested below on a NaN-filled
    // destination) and writes every one of the m · n elements, so all are initialised when the
    // length is set.
    #[allow(unsafe_code)]
    unsafe {
        run(
            out.as_mut_ptr(),
            n,
            accumulate,
            lhs,
            rhs,
            gemm::Parallelism::Rayon(0),
        );
        out.set_len(m * n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_the_loops_with_transposes_and_accumulation() {
        let a: Vec<f32> = (0..6).map(|x| x as f32 - 2.0).collect(); // 2 × 3
        let b: Vec<f32> = (0..12).map(|x| 0.5 * x as f32).collect(); // 3 × 4
        let mut c = vec![1.0; 8];
        matmul(&mut c, Mat::new(&a, 2, 3), Mat::new(&b, 3, 4), false);
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..3).map(|p| a[i * 3 + p] * b[p * 4 + j]).sum();
                assert_eq!(c[i * 4 + j], want);
            }
        }
        // (aᵀ)ᵀ · (bᵀ)ᵀ accumulated onto c doubles it.
        let at: Vec<f32> = (0..6).map(|x| a[(x % 2) * 3 + x / 2]).collect(); // 3 × 2
        let bt: Vec<f32> = (0..12).map(|x| b[(x % 3) * 4 + x / 3]).collect(); // 4 × 3
        let once = c.clone();
        matmul(
            &mut c,
            Mat::new(&at, 3, 2).t(),
            Mat::new(&bt, 4, 3).t(),
            true,
        );
        for (x, y) in c.iter().zip(&once) {
            assert_eq!(*x, 2.0 * y);
        }
    }

    /// What `product` relies on: without accumulation gemm never reads the destination, so a
    /// NaN-filled one comes out NaN-free; shapes from 1 × 1 × 1 (gemm's small-size paths) up.
    #[test]
    fn gemm_overwrites_without_reading_the_destination() {
        for (m, n, k) in [
            (1, 1, 1),
            (1, 7, 3),
            (5, 1, 4),
            (3, 3, 1),
            (17, 33, 9),
            (64, 48, 130),
        ] {
            let a: Vec<f32> = (0..m * k).map(|x| (x % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 * 0.5).collect();
            let mut c = vec![f32::NAN; m * n];
            matmul(&mut c, Mat::new(&a, m, k), Mat::new(&b, k, n), false);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    assert_eq!(c[i * n + j], want, "({m}, {n}, {k}) at ({i}, {j})");
                }
            }
            let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
            let with_bias = product(Mat::new(&a, m, k), Mat::new(&b, k, n), Some(&bias));
            let plain = product(Mat::new(&a, m, k), Mat::new(&b, k, n), None);
            for (idx, (x, y)) in with_bias.iter().zip(&plain).enumerate() {
                assert_eq!(*y, c[idx]);
                assert_eq!(*x, c[idx] + bias[idx % n]);
            }
        }
    }
}
