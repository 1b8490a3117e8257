//! The code the convolution kernels get written out over their taps, pixels and channel blocks
//! (`shaders/conv2d.wgsl`, `shaders/conv2d_wgrad.wgsl`): one named variable per accumulator and
//! per loaded value, so that every accumulator is a register and no index into an array is
//! dynamic. Naga keeps a WGSL loop over a private array as a loop, and lavapipe then keeps the
//! array in memory and reaches it lane by lane.

use std::fmt::Write;

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// The weight gradient's `{{ declare }}`: one vec4 per (tap, output channel of the block).
pub(crate) fn wgrad_declare(taps: u32) -> String {
    let mut s = String::new();
    for t in 0..taps {
        for j in 0..4 {
            writeln!(s, "    var a{t}_{j} = vec4<f32>(0.0);").unwrap();
        }
    }
    s
}

/// The weight gradient's `{{ rows }}`: the source row of each window row.
pub(crate) fn wgrad_rows(kh: u32) -> String {
    let mut s = String::new();
    for ky in 0..kh {
        writeln!(
            s,
            "        let sy{ky} = i32(oy * SH + {ky}u) - i32(p.pad_h);\n        \
             let in_y{ky} = sy{ky} >= 0 && sy{ky} < i32(p.in_h);\n        \
             let x_row{ky} = x_image + u32(max(sy{ky}, 0)) * p.in_w * in4;"
        )
        .unwrap();
    }
    s
}

/// The weight gradient's `{{ pixel }}`: one output pixel's products, dy in `g`.
pub(crate) fn wgrad_pixel(kh: u32, kw: u32) -> String {
    let mut s = String::new();
    for kx in 0..kw {
        writeln!(
            s,
            "            let sx{kx} = i32(ox * SW + {kx}u) - i32(p.pad_w);\n            \
             let in_x{kx} = sx{kx} >= 0 && sx{kx} < i32(p.in_w);\n            \
             let col{kx} = u32(max(sx{kx}, 0)) * in4;"
        )
        .unwrap();
        for ky in 0..kh {
            let t = ky * kw + kx;
            writeln!(
                s,
                "            let v{t} = select(vec4<f32>(0.0), x[x_row{ky} + col{kx}], in_x{kx} && in_y{ky});"
            )
            .unwrap();
            for (j, lane) in LANES.iter().enumerate() {
                writeln!(
                    s,
                    "            a{t}_{j} = fma(v{t}, vec4<f32>(g.{lane}), a{t}_{j});"
                )
                .unwrap();
            }
        }
    }
    s
}

/// The weight gradient's `{{ store }}`.
pub(crate) fn wgrad_store(taps: u32) -> String {
    let mut s = String::new();
    for t in 0..taps {
        for j in 0..4 {
            writeln!(s, "    store(p, slice, i4, o4, {t}u, {j}u, a{t}_{j});").unwrap();
        }
    }
    s
}

/// The convolution's `{{ declare }}`: one vec4 per (pixel of the run, vec4 of the channel block).
pub(crate) fn conv_declare(pixels: u32, vecs: u32) -> String {
    let mut s = String::new();
    for px in 0..pixels {
        for j in 0..vecs {
            writeln!(s, "    var a{px}_{j} = vec4<f32>(0.0);").unwrap();
        }
    }
    s
}

/// The convolution's `{{ columns }}`: each segment slot's source column and whether it reads
/// padding (`source_column` in the shader).
pub(crate) fn conv_columns(row: u32) -> String {
    let mut s = String::new();
    for q in 0..row {
        writeln!(
            s,
            "    let c{q} = source_column(ox, {q}u, p.pad_w, p.src_w);\n    \
             let in_x{q} = c{q} >= 0;\n    \
             let col{q} = u32(max(c{q}, 0));"
        )
        .unwrap();
    }
    s
}

/// The convolution's `{{ channel }}`: one source channel's products for window row `ky`: load
/// the row segment, then per tap column its weights and the products of every pixel.
pub(crate) fn conv_channel(
    row: u32,
    kw: u32,
    pixels: u32,
    vecs: u32,
    slot: impl Fn(u32, u32) -> u32,
) -> String {
    let mut s = String::new();
    for q in 0..row {
        writeln!(
            s,
            "            let r{q} = vec4<f32>(select(0.0, src[s + col{q}], in_y && in_x{q}));"
        )
        .unwrap();
    }
    for kx in 0..kw {
        for j in 0..vecs {
            writeln!(
                s,
                "            let w{kx}_{j} = weight[w + {kx}u * p.weight_row + {j}u];"
            )
            .unwrap();
            for px in 0..pixels {
                let q = slot(px, kx);
                writeln!(
                    s,
                    "            a{px}_{j} = fma(r{q}, w{kx}_{j}, a{px}_{j});"
                )
                .unwrap();
            }
        }
    }
    s
}

/// The convolution's `{{ store }}`.
pub(crate) fn conv_store(pixels: u32, vecs: u32) -> String {
    let mut s = String::new();
    for px in 0..pixels {
        for j in 0..vecs {
            writeln!(
                s,
                "    store(p, b, oy, ox + {px}u, block + {j}u, a{px}_{j});"
            )
            .unwrap();
        }
    }
    s
}
