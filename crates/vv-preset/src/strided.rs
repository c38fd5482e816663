//! Gathers a strided tensor view out of a raw storage into row-major bytes, bounds-checked.

/// A view into a storage, in elements: `offset + Σ index[d] · stride[d]`.
pub(super) struct StridedView<'a> {
    pub offset: usize,
    pub size: &'a [usize],
    pub stride: &'a [usize],
}

impl StridedView<'_> {
    /// Number of elements of the view (checked product of the sizes).
    pub(super) fn numel(&self) -> Result<usize, String> {
        self.size
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor size {:?} overflows", self.size))
    }

    /// Copies the view into a new row-major buffer. `storage` holds `storage.len() / elem_size`
    /// elements; every element the view touches must lie inside it.
    pub(super) fn gather(&self, storage: &[u8], elem_size: usize) -> Result<Vec<u8>, String> {
        let numel = self.numel()?;
        if numel == 0 {
            return Ok(Vec::new());
        }
        let storage_numel = storage.len() / elem_size.max(1);
        if numel > storage_numel {
            return Err(format!(
                "tensor of {numel} elements is larger than its storage of {storage_numel}"
            ));
        }
        let last = self
            .size
            .iter()
            .zip(self.stride)
            .try_fold(self.offset, |acc, (&n, &s)| {
                (n - 1)
                    .checked_mul(s)
                    .and_then(|step| acc.checked_add(step))
            })
            .ok_or("tensor view overflows")?;
        if last >= storage_numel {
            return Err(format!(
                "tensor view (offset {}, size {:?}, stride {:?}) reaches element {last} \
                 of a storage with {storage_numel} elements",
                self.offset, self.size, self.stride
            ));
        }
        // From here on every index is <= `last` < `storage_numel`, so nothing can overflow.
        let (outer_size, inner) = match self.size.split_last() {
            Some((&n, outer)) => (outer, n),
            None => (&[][..], 1),
        };
        let inner_stride = self.stride.last().copied().unwrap_or(1);
        let outer_stride = self.stride.get(..outer_size.len()).unwrap_or_default();
        let mut out = Vec::with_capacity(numel * elem_size);
        let mut index = vec![0usize; outer_size.len()];
        loop {
            let base = self.offset
                + index
                    .iter()
                    .zip(outer_stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            if inner_stride == 1 {
                out.extend_from_slice(element_run(storage, base, inner, elem_size)?);
            } else {
                for i in 0..inner {
                    out.extend_from_slice(element_run(
                        storage,
                        base + i * inner_stride,
                        1,
                        elem_size,
                    )?);
                }
            }
            if !advance(&mut index, outer_size) {
                return Ok(out);
            }
        }
    }
}

/// `count` consecutive elements starting at element `start`.
fn element_run(
    storage: &[u8],
    start: usize,
    count: usize,
    elem_size: usize,
) -> Result<&[u8], String> {
    storage
        .get(start * elem_size..(start + count) * elem_size)
        .ok_or_else(|| "tensor element outside its storage".to_string())
}

/// Row-major odometer step; returns false after the last index.
fn advance(index: &mut [usize], size: &[usize]) -> bool {
    for (i, &n) in index.iter_mut().zip(size).rev() {
        *i += 1;
        if *i < n {
            return true;
        }
        *i = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_major_kv_is_transposed_to_head_major() {
        // storage [T=3][kv=2][hd=2] as u8 elements 0..12; view [1, 2, 3, 2] strides (12, 2, 4, 1)
        let storage: Vec<u8> = (0..12).collect();
        let view = StridedView {
            offset: 0,
            size: &[1, 2, 3, 2],
            stride: &[12, 2, 4, 1],
        };
        let out = view.gather(&storage, 1).unwrap();
        assert_eq!(out, vec![0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]);
    }

    #[test]
    fn views_past_the_storage_are_refused() {
        let storage = [0u8; 8];
        let view = StridedView {
            offset: 1,
            size: &[2, 2],
            stride: &[2, 1],
        };
        let err = view.gather(&storage, 2).unwrap_err();
        assert!(err.contains("reaches element 4"), "{err}");
        let broadcast = StridedView {
            offset: 0,
            size: &[1_000_000],
            stride: &[0],
        };
        assert!(broadcast
            .gather(&storage, 2)
            .unwrap_err()
            .contains("larger"));
        let huge = StridedView {
            offset: 0,
            size: &[usize::MAX, 2],
            stride: &[1, 1],
        };
        assert!(huge.gather(&storage, 2).is_err());
    }

    #[test]
    fn scalar_and_empty_views() {
        let storage = [7u8, 9];
        let scalar = StridedView {
            offset: 1,
            size: &[],
            stride: &[],
        };
        assert_eq!(scalar.gather(&storage, 1).unwrap(), vec![9]);
        let empty = StridedView {
            offset: 100,
            size: &[0, 5],
            stride: &[5, 1],
        };
        assert!(empty.gather(&storage, 1).unwrap().is_empty());
    }
}
