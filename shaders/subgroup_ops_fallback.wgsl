
// subgroup_ops_fallback.wgsl: subgroup_ops.wgsl's functions for adapters without subgroup
// operations. Every invocation is a subgroup of one, so each reduction is its argument; the
// caller then merges one entry per invocation through workgroup memory.

fn sg_max(x: f32) -> f32 {
    return x;
}

fn sg_add(x: f32) -> f32 {
    return x;
}

fn sg_add4(x: vec4<f32>) -> vec4<f32> {
    return x;
}
