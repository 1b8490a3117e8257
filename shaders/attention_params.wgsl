
// ---- attention_params.wgsl: the run-time parameters of every attention kernel, appended to
// attention_fwd, attention_bwd_dq, attention_bwd_dkdv and attention_decode by the launcher.
// Word layout: crates/oxgen-wgpu/src/attention.rs, `params`.

struct Params {
    bh: u32,
    lq: u32,
    lk: u32,
    scale: f32,
    // Sliding window in keys (0: none): key j is visible to query i only when
    // j + window + lq > i + lk.
    window: u32,
    // Heads: (batch, head) pair bh belongs to batch element bh / heads.
    heads: u32,
    // 1: `key_lengths` holds one length per batch element, and its keys at or past that length
    // are masked (padding); 0: every key is real.
    lengths: u32,
    // Keys per split (the decode path; unused elsewhere).
    keys_per_split: u32,
}

struct Args {
    p: Params,
    // One per batch element when p.lengths is 1; one unused word otherwise.
    key_lengths: array<u32>,
}

// The keys of (batch, head) pair `bh` that are not padding: [0, key_length). Any `bh` past the
// pairs gets lk (its workgroup has nothing to do).
fn key_length(p: Params, bh: u32) -> u32 {
    if (p.lengths == 0u || bh >= p.bh) {
        return p.lk;
    }
    return min(params.key_lengths[bh / p.heads], p.lk);
}
