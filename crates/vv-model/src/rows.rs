//! Rows of batch tensors: an utterance keeps its conditions, latent and decoder state as a row
//! of the batch tensor that produced them, and a round gathers the rows it needs back into one
//! tensor. When a round's utterances are the previous round's, in the same order, the gather is
//! the previous output itself (no copy); otherwise it copies runs of rows.

use candle_core::Tensor;

use crate::error::Result;

/// Row `index` of `source` (`[N, ...]`).
#[derive(Debug, Clone)]
pub(crate) struct BatchRow {
    source: Tensor,
    index: usize,
}

impl BatchRow {
    /// Row `index` of `source`.
    pub(crate) fn new(source: &Tensor, index: usize) -> Self {
        Self {
            source: source.clone(),
            index,
        }
    }

    /// A row standing alone (`t` is `[1, ...]`).
    pub(crate) fn single(t: &Tensor) -> Self {
        Self::new(t, 0)
    }

    /// The row as a `[1, ...]` view.
    pub(crate) fn get(&self) -> Result<Tensor> {
        Ok(self.source.narrow(0, self.index, 1)?)
    }
}

/// The rows stacked into one `[rows.len(), ...]` tensor, contiguous: the source itself when the
/// rows are all of one source in order, a view when they are a run of it, else copies of the
/// runs of consecutive rows.
pub(crate) fn gather(rows: &[&BatchRow]) -> Result<Tensor> {
    if rows.is_empty() {
        return Err(crate::ModelError::InvalidInput("no rows to gather".into()));
    }
    let mut runs: Vec<(&Tensor, usize, usize)> = Vec::new();
    for row in rows {
        match runs.last_mut() {
            Some((source, start, len))
                if source.id() == row.source.id() && *start + *len == row.index =>
            {
                *len += 1
            }
            _ => runs.push((&row.source, row.index, 1)),
        }
    }
    let parts = runs
        .iter()
        .map(|(source, start, len)| {
            if *start == 0 && *len == source.dim(0)? && source.is_contiguous() {
                Ok((*source).clone())
            } else {
                Ok(source.narrow(0, *start, *len)?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let out = match parts.as_slice() {
        [one] => one.clone(),
        _ => Tensor::cat(&parts, 0)?,
    };
    Ok(out.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn values(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    #[test]
    fn rows_of_one_source_in_order_are_the_source_itself() {
        let a = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((3, 2))
            .unwrap();
        let rows: Vec<BatchRow> = (0..3).map(|i| BatchRow::new(&a, i)).collect();
        let refs: Vec<&BatchRow> = rows.iter().collect();
        let g = gather(&refs).unwrap();
        assert_eq!(g.id(), a.id());
        // A run in the middle is a view of the same values.
        let g = gather(&refs[1..]).unwrap();
        assert_eq!(values(&g), [[2., 3.], [4., 5.]]);
    }

    #[test]
    fn mixed_sources_and_orders_are_copied_in_the_asked_order() {
        let a = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((3, 2))
            .unwrap();
        let b = Tensor::new(&[[10f32, 11.]], &Device::Cpu).unwrap();
        let rows = [
            BatchRow::new(&a, 2),
            BatchRow::single(&b),
            BatchRow::new(&a, 0),
            BatchRow::new(&a, 1),
        ];
        let refs: Vec<&BatchRow> = rows.iter().collect();
        let g = gather(&refs).unwrap();
        assert_eq!(values(&g), [[4., 5.], [10., 11.], [0., 1.], [2., 3.]]);
        assert!(gather(&[]).is_err());
    }
}
