//! The few things every CPU kernel does with a Flex tensor: make it contiguous, read its f32
//! elements, read its shape, and wrap a result.

use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};

/// The tensor with a row-major layout (copied only when it is not already).
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// The f32 elements of a contiguous tensor, in order.
pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    let start = t.layout().start_offset();
    &t.storage::<f32>()[start..start + t.layout().num_elements()]
}

/// The tensor's shape.
pub(crate) fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().iter().copied().collect()
}

/// A result as a Flex tensor (the vector is moved, not copied).
pub(crate) fn tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
