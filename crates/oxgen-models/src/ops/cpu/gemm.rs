//! One safe entry to the `gemm` crate (the matrix kernels burn's Flex backend runs on) for the
//! CPU kernels: `dst (+)= lhs · rhs` on row-major slices, either operand optionally transposed,
//! single-threaded (the kernels parallelise over groups).

/// A row-major `rows × cols` matrix in a slice, read as its transpose when `t`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// The elements, row-major, at least `rows · cols` of them.
    pub data: &'a [f32],
    /// Rows as stored.
    pub rows: usize,
    /// Columns as stored.
    pub cols: usize,
    /// Read as the transpose.
    pub t: bool,
}

impl<'a> Mat<'a> {
    /// The stored matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
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
            (self.cols as isize, 1)
        } else {
            (1, self.cols as isize)
        }
    }
}

/// `dst = lhs · rhs` (or `dst += lhs · rhs` with `accumulate`), `dst` row-major `m × n`.
///
/// # Panics
/// When the shapes do not chain or a slice is shorter than its matrix.
pub fn matmul(dst: &mut [f32], lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool) {
    let ((m, k), (k2, n)) = (lhs.shape(), rhs.shape());
    assert_eq!(k, k2, "matmul: inner dimensions {k} and {k2} differ");
    assert!(
        dst.len() >= m * n
            && lhs.data.len() >= lhs.rows * lhs.cols
            && rhs.data.len() >= rhs.rows * rhs.cols,
        "matmul: a slice is shorter than its matrix"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let (lcs, lrs) = lhs.strides();
    let (rcs, rrs) = rhs.strides();
    // SAFETY: the assertions above bound every index gemm reads or writes: lhs is m × k with
    // strides within `rows · cols` elements, rhs k × n likewise, dst m × n row-major; the three
    // slices cannot overlap (one is borrowed mutably).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
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
            gemm::Parallelism::None,
        )
    }
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
}
