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
//   4 params  in   `Params` below (layout: crates/oxgen-wgpu/src/conv.rs, `Params`)
//
// Template placeholders: {{ workgroup_size }}, {{ vecs }} (output channels per invocation ÷ 4),
// {{ transposed }}, {{ bias }}.
//
// Layout: one invocation per output pixel (b, y, x) and block of 4·VECS output channels, whose
// sums stay in registers. The workgroup's invocations are consecutive pixels of one channel
// block, so every weight load is the same for all of them (uniform: one scalar load and a
// broadcast on lavapipe, one cache line on a GPU), and each src value loaded is used 4·VECS
// times. Pixel blocks run along a 2D grid (x, y); channel blocks along z.

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
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
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
const TRANSPOSED: bool = {{ transposed }};
const BIAS: bool = {{ bias }};

// The source coordinate that tap `k` of output coordinate `o` reads along one axis, or -1 where
// it falls outside [0, len) (padding) or, transposed, between strides.
fn source_coordinate(o: u32, k: u32, stride: u32, pad: u32, len: u32) -> i32 {
    if (TRANSPOSED) {
        let num = i32(o + pad) - i32(k);
        if (num < 0 || num % i32(stride) != 0) {
            return -1;
        }
        let c = num / i32(stride);
        return select(-1, c, c < i32(len));
    }
    let c = i32(o * stride + k) - i32(pad);
    return select(-1, c, c >= 0 && c < i32(len));
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) grid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let p = params;
    let pixels = p.dst_h * p.dst_w;
    let index = (wid.x + wid.y * grid.x) * WG + lid;
    if (index >= p.batch * pixels) {
        return;
    }
    let b = index / pixels;
    let pixel = index % pixels;
    let oy = pixel / p.dst_w;
    let ox = pixel % p.dst_w;
    let block = wid.z * VECS;

    var acc: array<vec4<f32>, VECS>;
    for (var j = 0u; j < VECS; j++) {
        acc[j] = vec4<f32>(0.0);
    }
    let taps = p.kernel_h * p.kernel_w;
    for (var ky = 0u; ky < p.kernel_h; ky++) {
        let sy = source_coordinate(oy, ky, p.stride_h, p.pad_h, p.src_h);
        if (sy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p.kernel_w; kx++) {
            let sx = source_coordinate(ox, kx, p.stride_w, p.pad_w, p.src_w);
            if (sx < 0) {
                continue;
            }
            var s = (b * p.src_channels * p.src_h + u32(sy)) * p.src_w + u32(sx);
            var w = (ky * p.kernel_w + kx) * p.weight_row + block;
            for (var i = 0u; i < p.src_channels; i++) {
                let v = src[s];
                for (var j = 0u; j < VECS; j++) {
                    acc[j] = fma(vec4<f32>(v), weight[w + j], acc[j]);
                }
                s += p.src_h * p.src_w;
                w += taps * p.weight_row;
            }
        }
    }

    let first = block * 4u;
    for (var j = 0u; j < VECS; j++) {
        for (var l = 0u; l < 4u; l++) {
            let o = first + 4u * j + l;
            if (o < p.dst_channels) {
                var v = acc[j][l];
                if (BIAS) {
                    v += bias[o];
                }
                dst[((b * p.dst_channels + o) * p.dst_h + oy) * p.dst_w + ox] = v;
            }
        }
    }
}
