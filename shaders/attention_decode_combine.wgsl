// attention_decode_combine.wgsl: merges the per-split states of attention_decode.wgsl.
// Reference: oxgen_models::ops::attention::attention_reference.
//
// Split s of a row left (M_s, L_s) and the unnormalised A_s = Σ_{j in s} e^{s_j − M_s} v_j. Then
//   M = max_s M_s,  L = Σ_s e^{M_s − M} L_s,  out = Σ_s e^{M_s − M} A_s / L,  lse = M + log L;
// a row none of whose keys is visible (L = 0) gets out = 0 and lse = −3.4e38, as the forward.
//
// Bindings (group 0), all read_write:
//   0 part     in   [rows, splits, D] as vec4<f32>
//   1 part_ml  in   [rows, splits] vec2<f32>
//   2 out      out  [rows, D] as S
//   3 lse      out  [rows] f32
//   4 params   in   `Params` (rows, splits)
//
// Template placeholders: `enable_f16`, `storage` (S), {{ d4 }} (head dim / 4), {{ wg }}.
// Grid: (y + z·Y) = row, folded into z past 65,535; invocation c takes the chunks c, c + WG, ….

{{ enable_f16 }}
alias S = {{ storage }};

struct Params {
    rows: u32,
    splits: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> part_ml: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<S>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: Params;

const D4: u32 = {{ d4 }}u;
const WG: u32 = {{ wg }}u;
const NEG_INF: f32 = -3.4028235e38;

@compute @workgroup_size({{ wg }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = params;
    let row = wid.y + wid.z * grid.y;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.splits;
    var big_m = NEG_INF;
    for (var s = 0u; s < p.splits; s++) {
        big_m = max(big_m, part_ml[base + s].x);
    }
    var big_l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let ml = part_ml[base + s];
        big_l += select(0.0, exp(ml.x - big_m) * ml.y, ml.x > NEG_INF);
    }
    let inv = select(0.0, 1.0 / big_l, big_l > 0.0);
    for (var c = lid; c < D4; c += WG) {
        var a = vec4<f32>(0.0);
        for (var s = 0u; s < p.splits; s++) {
            let mx = part_ml[base + s].x;
            if (mx > NEG_INF) {
                a += exp(mx - big_m) * part[(base + s) * D4 + c];
            }
        }
        out[row * D4 + c] = S(a * inv);
    }
    if (lid == 0u) {
        lse[row] = select(NEG_INF, big_m + log(big_l), big_l > 0.0);
    }
}
