//! What every WGSL kernel of this crate shares: a `KernelSource` keyed on its compile-time
//! variant, and the byte layout of its parameter words.

use std::fmt::Debug;
use std::hash::Hash;

use burn::backend::wgpu::{KernelSource, SourceTemplate};
use burn::cubecl::prelude::KernelId;

/// A compile-time variant of a WGSL template.
pub(crate) trait Template: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// The template with this variant's placeholders registered.
    fn template(&self) -> SourceTemplate;
}

/// A WGSL kernel: its source and cache key come from the variant.
pub(crate) struct Wgsl<V>(pub V);

impl<V: Template> KernelSource for Wgsl<V> {
    fn source(&self) -> SourceTemplate {
        self.0.template()
    }

    fn id(&self) -> KernelId {
        // `info` replaces rather than appends: key the cache on the whole variant.
        KernelId::new::<Self>().info(self.0)
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Parameter words as the little-endian bytes of a storage buffer.
pub(crate) fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
