
// workgroup_sum_subgroup.wgsl: workgroup_sum.wgsl's function for adapters with wgpu's SUBGROUP
// feature. Each subgroup sums its invocations' values with subgroupAdd (no workgroup memory, no
// barrier), lane 0 of each leaves the result in partial[sg], and after one barrier every
// invocation adds the nsg entries: two barriers per call whatever WG is, where the tree takes
// log2(WG) + 2. sg, lane and nsg are the builtins subgroup_id, subgroup_invocation_id and
// num_subgroups; called from control flow uniform across the workgroup.

fn workgroup_sum(lid: u32, sg: u32, lane: u32, nsg: u32, v: vec2<f32>) -> vec2<f32> {
    let s = subgroupAdd(v);
    if (lane == 0u) {
        partial[sg] = s;
    }
    workgroupBarrier();
    var total = vec2<f32>(0.0);
    for (var t = 0u; t < nsg; t++) {
        total = total + partial[t];
    }
    workgroupBarrier();
    return total;
}
