// conv2d.wgsl: a direct 2D convolution (cross-correlation, as burn's conv2d), and with
// TRANSPOSED its input gradient, in one template.
// Reference: burn's `Conv2d` module (`oxgen_models::ops::conv::conv2d_reference`), and burn's
// autodiff of it for the gradient.
//
//   forward     dst[b, o, y, x] = bias[o] + Σ_{i, ky, kx} w[o, i, ky, kx] · src[b, i, y·s + ky − p, x·s + kx − p]
//   TRANSPOSED  dst[b, o, y, x] = Σ_{i, ky, kx} w[i, o, ky, kx] · src[b, i, (y + p − ky) / s, (x + p − kx) / s]
//               where (y + p − ky) and (x + p − kx) divide by s: the input gradient of the forward
//               (src = dy, dst = dx, o runs over the forward's input channels).
//   Taps that fall outside src are zero padding.
//
// Bindings (group 0). All are declared read_write although 0–2 and 4 are only read: CubeCL
// sub-allocates tensors from shared wgpu buffers, and wgpu forbids a buffer in one dispatch as
// both read-only and read-write storage.
//   0 src     in   [B, Cs, Hs, Ws] contiguous, f32
//   1 weight  in   [Cs, KH, KW, Cd4] contiguous, vec4<f32>: the kernel rearranged so that the
//                  output channels of one tap are adjacent, padded with zeros to Cd4 = a
//                  multiple of 4·VECS (crates/oxgen-wgpu/src/conv.rs, `packed_weight`)
//   2 bias    in   [Cd] (any buffer when !BIAS)
//   3 dst     out  [B, Cd, Hd, Wd]
//   4 params  in   `Params` below (layout: crates/oxgen-wgpu/src/conv.rs, `Geometry`)
//
// Template placeholders: {{ workgroup_size }}, {{ vecs }} (output channels per invocation ÷ 4),
// {{ pixels }} (output pixels of a row per invocation), {{ kernel_h }}, {{ kernel_w }},
// {{ stride_h }}, {{ stride_w }} (the forward's window and stride),
// {{ transposed }}, {{ bias }}, and the code written out over the run's pixels, the segment and
// the taps: `declare`, `columns`, `channel`, `store` (in double braces below).
//
// Layout: one invocation per run of PX output pixels along a row and block of 4·VECS output
// channels: PX·VECS vec4 sums in registers. Per source channel and window row it loads the
// source row segment its pixels' taps cover once (PX + KW − 1 values at stride 1) and each
// tap's 4·VECS weights once, then does PX·KW·4·VECS multiply-adds from registers: a load feeds
// several products. The window and stride are compile-time, so the tap loops unroll and no
// index needs a division at run time (lavapipe runs integer division lane by lane). A
// workgroup's invocations share the channel block, so the weight loads are the same for all of
// them. Pixel runs go along a 2D grid (x, y); channel blocks along z.

struct Params {
    batch: u32,
    src_channels: u32,
    src_h: u32,
    src_w: u32,
    dst_channels: u32,
    dst_h: u32,
    dst_w: u32,
    // Cd4 / 4: vec4s per (src channel, tap) row of the packed weight.
    weight_row: u32,
    // Runs of PX pixels per output row: ceil(dst_w / PX).
    runs: u32,
    pad_h: u32,
    pad_w: u32,
}

@group(0) @binding(0) var<storage, read_write> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> weight: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;
const VECS: u32 = {{ vecs }}u;
const PX: u32 = {{ pixels }}u;
const KH: u32 = {{ kernel_h }}u;
const KW: u32 = {{ kernel_w }}u;
const SH: u32 = {{ stride_h }}u;
const SW: u32 = {{ stride_w }}u;
const TRANSPOSED: bool = {{ transposed }};
const BIAS: bool = {{ bias }};
// Transposed with a column stride, the taps of neighbouring pixels do not form one segment:
// each (pixel, tap) gets its own slot (the launcher then uses PX = 1).
const STRIDED_T: bool = TRANSPOSED && SW > 1u;

// The source row that window row `k` of output row `o` reads, or -1 where it falls outside
// [0, len) (padding) or, transposed, between strides.
fn source_row(o: u32, k: u32, pad: u32, len: u32) -> i32 {
    if (TRANSPOSED) {
        let num = i32(o + pad) - i32(k);
        if (num < 0 || num % i32(SH) != 0) {
            return -1;
        }
        let c = num / i32(SH);
        return select(-1, c, c < i32(len));
    }
    let c = i32(o * SH + k) - i32(pad);
    return select(-1, c, c >= 0 && c < i32(len));
}

// The source column of segment slot `q` for a run starting at output column `ox`, or -1 where
// it reads padding. Forward: slot q is column ox·SW − pad + q. Transposed at stride 1: column
// ox + pad − (KW − 1) + q. Transposed and strided: slot q = px·KW + kx.
fn source_column(ox: u32, q: u32, pad: u32, len: u32) -> i32 {
    var c: i32;
    if (STRIDED_T) {
        let num = i32(ox + q / KW + pad) - i32(q % KW);
        if (num < 0 || num % i32(SW) != 0) {
            return -1;
        }
        c = num / i32(SW);
    } else if (TRANSPOSED) {
        c = i32(ox + pad + q) - i32(KW - 1u);
    } else {
        c = i32(ox * SW + q) - i32(pad);
    }
    return select(-1, c, c >= 0 && c < i32(len));
}

// Writes the sums of output channels 4·v … 4·v + 3 (those that exist) at (b, oy, ox), with the
// bias, if `ox` is inside the row.
fn store(p: Params, b: u32, oy: u32, ox: u32, v: u32, sums: vec4<f32>) {
    if (ox >= p.dst_w) {
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let o = 4u * v + l;
        if (o < p.dst_channels) {
            var y = sums[l];
            if (BIAS) {
                y += bias[o];
            }
            dst[((b * p.dst_channels + o) * p.dst_h + oy) * p.dst_w + ox] = y;
        }
    }
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = params;
    let per_image = p.dst_h * p.runs;
    let index = (wid.x + wid.y * grid.x) * WG + lid;
    if (index >= p.batch * per_image) {
        return;
    }
    let b = index / per_image;
    let oy = (index % per_image) / p.runs;
    let ox = (index % p.runs) * PX;
    let block = wid.z * VECS;

    // a{px}_{j}: the sums of pixel px of the run, output channels 4·(block + j) … + 3; c{q},
    // in_x{q}, col{q}: segment slot q's source column (the same for every row). Written out by
    // crates/oxgen-wgpu/src/conv_codegen.rs.
{{ declare }}
{{ columns }}
    let plane = p.src_h * p.src_w;
    let src_image = b * p.src_channels * plane;
    for (var ky = 0u; ky < KH; ky++) {
        let sy = source_row(oy, ky, p.pad_h, p.src_h);
        let in_y = sy >= 0;
        var s = src_image + u32(max(sy, 0)) * p.src_w;
        var w = ky * KW * p.weight_row + block;
        for (var i = 0u; i < p.src_channels; i++) {
            // Row segment r{q}, the taps' weights w{kx}_{j}, the products.
{{ channel }}
            s += plane;
            w += KH * KW * p.weight_row;
        }
    }

{{ store }}
}
