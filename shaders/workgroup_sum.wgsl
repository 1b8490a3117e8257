
// workgroup_sum.wgsl: sums of a vec2 over a workgroup of WG invocations (a power of two),
// appended to the GroupNorm+SiLU kernels on adapters without subgroup operations: a tree in
// workgroup memory, one barrier per halving. workgroup_sum_subgroup.wgsl has the same function
// for adapters with subgroups. The kernel declares `partial: array<vec2<f32>, WG>` in workgroup
// memory; sg, lane and nsg (the subgroup builtins there) are not used here. Every invocation gets
// the totals, and may call again at once: the last barrier keeps the next call's writes from
// overtaking this call's reads.

fn workgroup_sum(lid: u32, sg: u32, lane: u32, nsg: u32, v: vec2<f32>) -> vec2<f32> {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
