//! The code the launcher writes into the dK/dV kernel (`shaders/attention_bwd_dkdv.wgsl`): its
//! key-slot set-up, k and v load, query step and store, written out over the key rows an
//! invocation owns (register tiling, as the forward's: `attention_fwd.rs`), the query rows of
//! one step and the head-dim chunks.

use burn::backend::wgpu::SourceTemplate;

/// Fills the dK/dV kernel's generated placeholders.
pub(crate) fn fill(template: SourceTemplate, d4: u32, rpi: u32, qs: u32) -> SourceTemplate {
    template
        .register("dkdv_keys", keys(rpi))
        .register("dkdv_load", load(d4, rpi))
        .register("dkdv_step", step(d4, rpi, qs))
        .register("dkdv_store", store(d4, rpi))
}

fn keys(rpi: u32) -> String {
    (0..rpi)
        .map(|r| {
            format!(
                "let key_{r} = wid.x * BC + {r}u * INV + lid;\n    \
                 let ksrc_{r} = min(key_{r}, p.lk - 1u);"
            )
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

fn load(d4: u32, rpi: u32) -> String {
    let mut out = Vec::new();
    for r in 0..rpi {
        for c in 0..d4 {
            let i = r * d4 + c;
            out.push(format!(
                "kr[{i}] = vec4<f32>(k[(bh * p.lk + ksrc_{r}) * D4 + {c}u]);\n    \
                 vr[{i}] = vec4<f32>(v[(bh * p.lk + ksrc_{r}) * D4 + {c}u]);\n    \
                 dk_acc[{i}] = vec4<f32>(0.0);\n    \
                 dv_acc[{i}] = vec4<f32>(0.0);"
            ));
        }
    }
    out.join("\n    ")
}

/// One step of `qs` query rows (rows i0 + j … of the staged tile): each q and dO chunk is read
/// from workgroup memory once, then key row by key row: scores, dO·v, p and ds, and the
/// updates dV += p·dO and dK += ds·q.
fn step(d4: u32, rpi: u32, qs: u32) -> String {
    let mut out = Vec::new();
    for qq in 0..qs {
        out.push(format!(
            "let l{qq} = lses[j + {qq}u];\n            let dl{qq} = deltas[j + {qq}u];"
        ));
        for c in 0..d4 {
            out.push(format!(
                "let q{qq}_{c} = qs[(j + {qq}u) * D4 + {c}u];\n            \
                 let g{qq}_{c} = dos[(j + {qq}u) * D4 + {c}u];"
            ));
        }
    }
    for r in 0..rpi {
        out.push("{".into());
        for qq in 0..qs {
            let s: Vec<String> = (0..d4)
                .map(|c| format!("dot(q{qq}_{c}, kr[{}])", r * d4 + c))
                .collect();
            let dp: Vec<String> = (0..d4)
                .map(|c| format!("dot(g{qq}_{c}, vr[{}])", r * d4 + c))
                .collect();
            out.push(format!(
                "let p{qq} = prob(p, key_len, bh, i0 + j + {qq}u, ksrc_{r}, {}, l{qq});",
                s.join(" + ")
            ));
            out.push(format!(
                "let ds{qq} = p{qq} * (({}) - dl{qq});",
                dp.join(" + ")
            ));
        }
        for c in 0..d4 {
            let i = r * d4 + c;
            let (mut dv, mut dk) = (format!("dv_acc[{i}]"), format!("dk_acc[{i}]"));
            for qq in 0..qs {
                dv = format!("fma(vec4<f32>(p{qq}), g{qq}_{c}, {dv})");
                dk = format!("fma(vec4<f32>(ds{qq}), q{qq}_{c}, {dk})");
            }
            out.push(format!(
                "dv_acc[{i}] = {dv};\n            dk_acc[{i}] = {dk};"
            ));
        }
        out.push("}".into());
    }
    out.join("\n            ")
}

fn store(d4: u32, rpi: u32) -> String {
    let mut out = Vec::new();
    for r in 0..rpi {
        out.push(format!("if (key_{r} < p.lk) {{"));
        for c in 0..d4 {
            let i = r * d4 + c;
            out.push(format!(
                "    dk[(bh * p.lk + key_{r}) * D4 + {c}u] = S(dk_acc[{i}]);\n    \
                 dv[(bh * p.lk + key_{r}) * D4 + {c}u] = S(dv_acc[{i}]);"
            ));
        }
        out.push("}".into());
    }
    out.join("\n    ")
}
