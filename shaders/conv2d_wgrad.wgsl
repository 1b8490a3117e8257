// conv2d_wgrad.wgsl: the weight gradient of a direct 2D convolution (conv2d.wgsl's forward), as
// partial sums over slices of the output rows.
// Reference: burn's autodiff of its `Conv2d` module (`oxgen_models::ops::conv::conv2d_reference`).
//
//   part[s, i, ky, kx, o] = Σ_{(b, y) in slice s, x} dy[b, o, y, x] · x[b, i, y·SH + ky − p, x·SW + kx − p]
//   dw[o, i, ky, kx]      = Σ_s part[s, i, ky, kx, o]   (the caller sums over s and rearranges)
//
// Bindings (group 0), all read_write for the reason given in conv2d.wgsl:
//   0 x       in   [B, H, W, Ci4] contiguous, vec4<f32>: the forward's input, channels last and
//                  padded with zeros to Ci4 = a multiple of 4 (the launcher rearranges it)
//   1 dy      in   [B, Ho, Wo, Co4] contiguous, vec4<f32>: the output's gradient, likewise
//   2 part    out  [S, Ci, KH·KW, Co] (every element written)
//   3 params  in   `Params` below (layout: crates/oxgen-wgpu/src/conv.rs, `Geometry`)
//
// Template placeholders: {{ workgroup_size }}, {{ kernel_h }}, {{ kernel_w }}, {{ stride_h }},
// {{ stride_w }}, and the code written out over the taps: `declare`, `rows`, `pixel`, `store` (in
// double braces below).
//
// Layout: one invocation per (block of 4 input channels, block of 4 output channels) and slice
// of output rows (grid y and z); its KH·KW·16 sums stay in registers (KH·KW·4 vec4s, one per tap and
// output channel, over the 4 input channels). Per output pixel it makes one vec4 load of dy and
// KH·KW vec4 loads of x, and does 16·KH·KW multiply-adds: on lavapipe, whose storage loads are
// a loop over the SIMD lanes whatever their width, the vec4 loads are what makes this fast. The
// window and stride are compile-time and the pixels are walked row by row, so no index needs a
// run-time division in the inner loop.

struct Params {
    batch: u32,
    in_channels: u32,
    in_h: u32,
    in_w: u32,
    out_channels: u32,
    out_h: u32,
    out_w: u32,
    // Output rows per slice.
    slice: u32,
    pad_h: u32,
    pad_w: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dy: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;
const KH: u32 = {{ kernel_h }}u;
const KW: u32 = {{ kernel_w }}u;
const SH: u32 = {{ stride_h }}u;
const SW: u32 = {{ stride_w }}u;
const TAPS: u32 = KH * KW;

// Writes a{t}_{j}: the partial sums of tap t, output channel 4·o4 + j, input channels 4·i4 + l.
fn store(p: Params, slice: u32, i4: u32, o4: u32, t: u32, j: u32, v: vec4<f32>) {
    let o = 4u * o4 + j;
    if (o >= p.out_channels) {
        return;
    }
    for (var l = 0u; l < 4u; l++) {
        let i = 4u * i4 + l;
        if (i < p.in_channels) {
            part[((slice * p.in_channels + i) * TAPS + t) * p.out_channels + o] = v[l];
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
    let in4 = (p.in_channels + 3u) / 4u;
    let out4 = (p.out_channels + 3u) / 4u;
    let index = wid.x * WG + lid;
    if (index >= in4 * out4) {
        return;
    }
    let i4 = index % in4;
    let o4 = index / in4;
    // Slices run along a 2D grid (y, z), past 65,535 of them.
    let slice = wid.y + wid.z * grid.y;
    let row_start = slice * p.slice;
    if (row_start >= p.batch * p.out_h) {
        return;
    }
    let row_end = min(row_start + p.slice, p.batch * p.out_h);

    // a{t}_{j}[l]: tap t, output channel 4·o4 + j, input channel 4·i4 + l (declared by the
    // launcher's code generator, crates/oxgen-wgpu/src/conv.rs, one variable each, so that
    // every accumulator is a register and no index into them is dynamic).
{{ declare }}
    var b = row_start / p.out_h;
    var oy = row_start % p.out_h;
    for (var r = row_start; r < row_end; r++) {
        let dy_row = ((b * p.out_h + oy) * p.out_w) * out4 + o4;
        let x_image = b * p.in_h * p.in_w * in4 + i4;
        // The window's rows for this output row (sy{ky}, x_row{ky}), and whether each reads
        // padding (in_y{ky}).
{{ rows }}
        for (var ox = 0u; ox < p.out_w; ox++) {
            let g = dy[dy_row + ox * out4];
{{ pixel }}
        }
        oy += 1u;
        if (oy == p.out_h) {
            oy = 0u;
            b += 1u;
        }
    }

{{ store }}
}
