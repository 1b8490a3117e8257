// conv2d_wgrad.wgsl: the weight gradient of a direct 2D convolution (conv2d.wgsl's forward), as
// partial sums over slices of the output pixels.
// Reference: burn's autodiff of its `Conv2d` module (`oxgen_models::ops::conv::conv2d_reference`).
//
//   part[s, i, ky, kx, o] = Σ_{(b, y, x) in slice s} dy[b, o, y, x] · x[b, i, y·st + ky − p, x·st + kx − p]
//   dw[o, i, ky, kx]      = Σ_s part[s, i, ky, kx, o]   (the caller sums over s and rearranges)
//
// Bindings (group 0), all read_write for the reason given in conv2d.wgsl:
//   0 x       in   [B, Ci, H, W] contiguous, f32 (the forward's input)
//   1 dy      in   [B, Co, Ho, Wo] contiguous (the gradient of the forward's output)
//   2 part    out  [S, Ci, TAPS, Co] (every element written)
//   3 params  in   `Params` below (layout: crates/oxgen-wgpu/src/conv.rs, `WgradParams`)
//
// Template placeholders: {{ workgroup_size }}, {{ taps }} (KH·KW), {{ outs }} (output channels
// per invocation).
//
// Layout: one invocation per input channel i (consecutive in a workgroup), block of OUTS output
// channels (grid y) and slice of pixels (grid z); its TAPS·OUTS sums stay in registers. The
// dy values of a pixel are the same for the whole workgroup (uniform loads), and each x value
// loaded is used OUTS times.

struct Params {
    batch: u32,
    in_channels: u32,
    in_h: u32,
    in_w: u32,
    out_channels: u32,
    out_h: u32,
    out_w: u32,
    // Output pixels per slice.
    slice: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: Params;

const WG: u32 = {{ workgroup_size }}u;
const TAPS: u32 = {{ taps }}u;
const OUTS: u32 = {{ outs }}u;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = params;
    let i = wid.x * WG + lid;
    if (i >= p.in_channels) {
        return;
    }
    let first = wid.y * OUTS;
    let pixels = p.out_h * p.out_w;
    let start = wid.z * p.slice;
    let end = min(start + p.slice, p.batch * pixels);

    var acc: array<f32, TAPS * OUTS>;
    for (var t = 0u; t < TAPS * OUTS; t++) {
        acc[t] = 0.0;
    }
    for (var n = start; n < end; n++) {
        let b = n / pixels;
        let pixel = n % pixels;
        let oy = pixel / p.out_w;
        let ox = pixel % p.out_w;
        var g: array<f32, OUTS>;
        for (var j = 0u; j < OUTS; j++) {
            let o = min(first + j, p.out_channels - 1u);
            // Channels past the end read a real value and are never written.
            g[j] = dy[(b * p.out_channels + o) * pixels + pixel];
        }
        let base = (b * p.in_channels + i) * p.in_h * p.in_w;
        for (var t = 0u; t < TAPS; t++) {
            let ky = t / p.kernel_w;
            let kx = t % p.kernel_w;
            let sy = i32(oy * p.stride_h + ky) - i32(p.pad_h);
            let sx = i32(ox * p.stride_w + kx) - i32(p.pad_w);
            let inside = sy >= 0 && sy < i32(p.in_h) && sx >= 0 && sx < i32(p.in_w);
            var v = 0.0;
            if (inside) {
                v = x[base + u32(sy) * p.in_w + u32(sx)];
            }
            for (var j = 0u; j < OUTS; j++) {
                acc[t * OUTS + j] = fma(v, g[j], acc[t * OUTS + j]);
            }
        }
    }

    let row = (wid.z * p.in_channels + i) * TAPS;
    for (var t = 0u; t < TAPS; t++) {
        for (var j = 0u; j < OUTS; j++) {
            let o = first + j;
            if (o < p.out_channels) {
                part[(row + t) * p.out_channels + o] = acc[t * OUTS + j];
            }
        }
    }
}
