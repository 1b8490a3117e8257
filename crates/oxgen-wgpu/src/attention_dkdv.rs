//! The code the launcher writes into the dK/dV kernel (`shaders/attention_bwd_dkdv.wgsl`): its
//! key-slot set-up, k and v load, query step and store, written out over the key rows an
//! invocation owns (register tiling, as the forward's: `attention_fwd.rs`), the query rows of
//! one step and the head-dim chunks.

use burn::backend::wgpu::SourceTemplate;

/// Fills the dK/dV kernel's generated placeholders; with `broadcast`, the `inv` lanes of the
/// workgroup's one subgroup load each step's q and dO chunks, lse and Δ, and broadcast them (as
/// the forward's K and V, `attention_fwd.rs`).
pub(crate) fn fill(
    template: SourceTemplate,
    d4: u32,
    rpi: u32,
    qs: u32,
    broadcast: Option<u32>,
) -> SourceTemplate {
    template
        .register("dkdv_keys", keys(rpi))
        .register("dkdv_load", load(d4, rpi))
        .register("dkdv_step", step(d4, rpi, qs, broadcast))
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
fn step(d4: u32, rpi: u32, qs: u32, broadcast: Option<u32>) -> String {
    let mut out = Vec::new();
    if let Some(inv) = broadcast {
        out.extend(row_loads(d4, qs, inv));
    }
    for qq in 0..qs {
        match broadcast {
            Some(_) => out.push(format!(
                "let l{qq} = subgroupBroadcast(lse_l, {qq}u);\n            \
                 let dl{qq} = subgroupBroadcast(delta_l, {qq}u);"
            )),
            None => out.push(format!(
                "let l{qq} = lses[j + {qq}u];\n            let dl{qq} = deltas[j + {qq}u];"
            )),
        }
        for c in 0..d4 {
            let (q, g) = match broadcast {
                Some(inv) => {
                    let idx = qq * d4 + c;
                    let (reg, lane) = (idx / inv, idx % inv);
                    (
                        format!("subgroupBroadcast(ql{reg}, {lane}u)"),
                        format!("subgroupBroadcast(gl{reg}, {lane}u)"),
                    )
                }
                None => (
                    format!("qs[(j + {qq}u) * D4 + {c}u]"),
                    format!("dos[(j + {qq}u) * D4 + {c}u]"),
                ),
            };
            out.push(format!(
                "let q{qq}_{c} = {q};\n            let g{qq}_{c} = {g};"
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

/// The broadcast form's loads: lane `lane` takes chunks lane + inv·i of the `qs` query rows of
/// the step at i0 + j, contiguous in q and dO, into `ql{i}` (scaled) and `gl{i}`, and lanes
/// below `qs` the lse and Δ of row i0 + j + lane. Rows past Lq read the last row; `prob` gives
/// them p = 0, so they add nothing to dK or dV.
fn row_loads(d4: u32, qs: u32, inv: u32) -> Vec<String> {
    let mut out = vec![
        "let qb = (bh * p.lq + i0 + j) * D4 + lane;".to_string(),
        "let qlast = (bh * p.lq + p.lq) * D4 - 1u;".to_string(),
        "let lrow = bh * p.lq + min(i0 + j + lane, p.lq - 1u);".to_string(),
        "let lse_l = lse[lrow];".to_string(),
        "let delta_l = delta[lrow];".to_string(),
    ];
    for i in 0..qs * d4 / inv {
        out.push(format!(
            "let ql{i} = vec4<f32>(q[min(qb + {o}u, qlast)]) * p.scale;\n            \
             let gl{i} = vec4<f32>(d_out[min(qb + {o}u, qlast)]);",
            o = i * inv
        ));
    }
    out
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
