
// subgroup_ops.wgsl: reductions across the invocations of a subgroup (a warp, a wavefront, a
// SIMD row), appended to kernels that merge per-invocation state where the adapter has wgpu's
// SUBGROUP feature. Each returns the reduction over the subgroup's active invocations to all of
// them (a reduction and its broadcast in one operation, no workgroup memory, no barrier).
// subgroup_ops_fallback.wgsl has the same functions for adapters without subgroups: there every
// invocation is a subgroup of its own, and each function returns its argument.
// The caller names the subgroup of an invocation, its lane in it and the number of subgroups
// from the builtins subgroup_id, subgroup_invocation_id and num_subgroups (the fallback: lid,
// 0 and the workgroup size), and calls these from control flow uniform across the subgroup.

fn sg_max(x: f32) -> f32 {
    return subgroupMax(x);
}

fn sg_add(x: f32) -> f32 {
    return subgroupAdd(x);
}

fn sg_add4(x: vec4<f32>) -> vec4<f32> {
    return subgroupAdd(x);
}
