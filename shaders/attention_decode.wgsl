// attention_decode.wgsl: attention for a few query rows against a long key sequence (decoding
// one token against a KV cache), split over the keys (flash-decoding style).
// Reference: oxgen_models::ops::attention::attention_reference (burn's attention_fallback).
//
//   s_ij = scale · q_i·k_j (+ bias_ij);  masks as attention_fwd.wgsl (causal bottom-right
//          aligned, sliding window);  o_i = Σ_j softmax_j(s_ij) · v_j;  lse_i = log Σ_j exp(s_ij)
//
// The forward kernel gives each invocation a query row, so one row leaves all but one
// invocation of its workgroup idle and walks the whole cache in one invocation. Here the keys
// are spread instead: workgroup (split, row) takes keys [split·P, split·P + P) of its (batch·head,
// query) row, P = params.keys_per_split, and invocation t of it the keys split·P + t, + WG, …,
// each with its own online-softmax state (m, l, acc) in registers. The workgroup then merges
// its WG states: M = max_t m_t first, then each state rescaled to it,
//   L = Σ_t e^{m_t − M} l_t,  A = Σ_t e^{m_t − M} acc_t.
// Each reduction runs first within each subgroup (sg_max, sg_add, sg_add4: subgroupMax and
// subgroupAdd where the adapter has subgroups, subgroup_ops.wgsl), then lane 0 of each subgroup
// leaves its subgroup's result in workgroup memory, and the NSG entries are merged after a
// barrier. Without subgroups (subgroup_ops_fallback.wgsl) every invocation is a subgroup of its
// own: WG entries. On lavapipe (subgroups of 8) that is 8 entries per reduction instead of 64.
// SPLIT: the merged state of each split goes to `part` and `part_ml`, and
// attention_decode_combine.wgsl merges the splits. Otherwise (one split) this kernel writes
// out = A / L and lse = M + log L itself.
//
// Bindings (group 0), all read_write (CubeCL sub-allocates shared wgpu buffers):
//   0 q        in   [BH, Lq, D] as S (D/4 per row)
//   1 k        in   [BH, Lk, D] as S
//   2 v        in   [BH, Lk, D] as S
//   3 bias     in   [BH, Lq, Lk] f32; any buffer when !BIAS
//   4 out      out  [BH, Lq, D] as S (!SPLIT; any buffer when SPLIT)
//   5 lse      out  [BH, Lq] f32 (!SPLIT; any buffer when SPLIT)
//   6 part     out  [BH·Lq, splits, D] as vec4<f32>, unnormalised A (SPLIT; any buffer else)
//   7 part_ml  out  [BH·Lq, splits] vec2<f32> (M, L) (SPLIT; any buffer else)
//   8 params   in   `Args` (attention_params.wgsl: `Params`, then the key lengths)
//
// Template placeholders: `enable_f16`, `storage` (S), {{ d4 }} (head dim / 4), {{ wg }}
// (invocations), {{ wg_d4 }} (= wg·d4), {{ causal }}, {{ bias }}, {{ split }},
// `subgroup_builtins` and `subgroup_ids` (the entry point's subgroup builtins, or lid, 0 and WG
// in their place), and the unrolled `dot_q_k`, `acc_add_pv` and `merge_acc` (the launcher writes
// them over the d4 chunks; lavapipe ends an invocation after 65,535 loop iterations, and
// unrolled an invocation loops about P / WG times).
//
// Grid: (split, y + z·Y) = (split, bh·Lq + row), folded into z past 65,535.

{{ enable_f16 }}
alias S = {{ storage }};

// struct Params, struct Args and fn key_length: attention_params.wgsl, appended; sg_max, sg_add
// and sg_add4: subgroup_ops.wgsl or subgroup_ops_fallback.wgsl, appended.

@group(0) @binding(0) var<storage, read_write> q: array<S>;
@group(0) @binding(1) var<storage, read_write> k: array<S>;
@group(0) @binding(2) var<storage, read_write> v: array<S>;
@group(0) @binding(3) var<storage, read_write> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<S>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(8) var<storage, read_write> params: Args;

const D4: u32 = {{ d4 }}u;
const WG: u32 = {{ wg }}u;
const CAUSAL: bool = {{ causal }};
const BIAS: bool = {{ bias }};
const SPLIT: bool = {{ split }};
const NEG_INF: f32 = -3.4028235e38;

var<workgroup> wm: array<f32, {{ wg }}>;
var<workgroup> wl: array<f32, {{ wg }}>;
var<workgroup> wacc: array<vec4<f32>, {{ wg_d4 }}>;
var<workgroup> shared_params: Params;
var<workgroup> shared_key_len: u32;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    {{ subgroup_builtins }}
) {
    // sg: this invocation's subgroup, lane: its index in it, nsg: subgroups in the workgroup.
    {{ subgroup_ids }}
    if (lid == 0u) {
        shared_params = params.p;
        shared_key_len = key_length(params.p, (wid.y + wid.z * grid.y) / max(params.p.lq, 1u));
    }
    // Uniform copy of the parameters: the merge below holds a barrier.
    let p = workgroupUniformLoad(&shared_params);
    // Keys at or past it are padding (lk without per-sequence lengths).
    let key_len = workgroupUniformLoad(&shared_key_len);
    // Row of the flattened [BH·Lq]; the workgroups of the last z row past it have nothing to
    // do (uniform: the whole workgroup returns, before any barrier).
    let flat = wid.y + wid.z * grid.y;
    if (flat >= p.bh * p.lq) {
        return;
    }
    let bh = flat / p.lq;
    let row = flat % p.lq;
    let split = wid.x;
    let start = split * p.keys_per_split;
    let end = min(start + p.keys_per_split, key_len);

    var qr: array<vec4<f32>, D4>;
    var acc: array<vec4<f32>, D4>;
    for (var c = 0u; c < D4; c++) {
        qr[c] = vec4<f32>(q[flat * D4 + c]) * p.scale;
        acc[c] = vec4<f32>(0.0);
    }
    var m = NEG_INF;
    var l = 0.0;
    for (var key = start + lid; key < end; key += WG) {
        var visible = true;
        if (CAUSAL) {
            visible = key + p.lq <= row + p.lk;
        }
        if (p.window > 0u) {
            visible = visible && key + p.window + p.lq > row + p.lk;
        }
        if (visible) {
            let kb = (bh * p.lk + key) * D4;
            var sj = {{ dot_q_k }};
            if (BIAS) {
                sj += bias[flat * p.lk + key];
            }
            sj = max(sj, NEG_INF);
            if (sj > NEG_INF) {
                if (sj > m) {
                    let correction = exp(m - sj);
                    l *= correction;
                    for (var c = 0u; c < D4; c++) {
                        acc[c] *= correction;
                    }
                    m = sj;
                }
                let pj = exp(sj - m);
                l += pj;
                let vb = kb;
                {{ acc_add_pv }}
            }
        }
    }

    // Merge: the maximum, then the rescaled sums, each over the subgroup first.
    let m_sg = sg_max(m);
    if (lane == 0u) {
        wm[sg] = m_sg;
    }
    workgroupBarrier();
    var big_m = NEG_INF;
    for (var t = 0u; t < nsg; t++) {
        big_m = max(big_m, wm[t]);
    }
    // Each state rescaled to the common maximum: e^{m_t − M}, 0 for one that saw no visible key.
    let scale_t = select(0.0, exp(m - big_m), m > NEG_INF);
    let l_sg = sg_add(l * scale_t);
    {{ merge_acc }}
    if (lane == 0u) {
        wl[sg] = l_sg;
    }
    workgroupBarrier();

    var big_l = 0.0;
    for (var t = 0u; t < nsg; t++) {
        big_l += wl[t];
    }
    for (var c = lid; c < D4; c += WG) {
        var a = vec4<f32>(0.0);
        for (var t = 0u; t < nsg; t++) {
            a += wacc[t * D4 + c];
        }
        if (SPLIT) {
            part[(flat * grid.x + split) * D4 + c] = a;
        } else {
            let inv = select(0.0, 1.0 / big_l, big_l > 0.0);
            out[flat * D4 + c] = S(a * inv);
        }
    }
    if (lid == 0u) {
        if (SPLIT) {
            part_ml[flat * grid.x + split] = vec2<f32>(big_m, big_l);
        } else {
            lse[flat] = select(NEG_INF, big_m + log(big_l), big_l > 0.0);
        }
    }
}
