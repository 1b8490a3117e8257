// mulhilo64.wgsl: the 32×32 → 64-bit product of Philox with one native 64-bit multiply, spliced
// into denoise_step.wgsl (placeholder `mulhilo64`) where the adapter has shader-int64. Same
// result as denoise_step.wgsl's `mulhilo16`; on llvmpipe this is one vpmuludq instead of four
// 16-bit products and their carries.
fn mulhilo64(a: u32, b: u32) -> vec2<u32> {
    let p = u64(a) * u64(b);
    return vec2<u32>(u32(p >> 32u), u32(p));
}
