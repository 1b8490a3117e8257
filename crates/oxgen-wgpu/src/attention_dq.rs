//! The code the launcher writes into the dQ kernel (`shaders/attention_bwd_dq.wgsl`): its q, dO
//! and Δ set-up, key step and store, written out over the rows an invocation owns (register
//! tiling, as the forward's: `attention_fwd.rs`), the keys of one step and the head-dim chunks.

use burn::backend::wgpu::SourceTemplate;

use crate::attention_tiling::{chunk, key_loads};

/// Fills the dQ kernel's generated placeholders; with `broadcast`, the `inv` lanes of the
/// workgroup's one subgroup load each step's K and V chunks and broadcast them (as the
/// forward's, `attention_fwd.rs`).
pub(crate) fn fill(
    template: SourceTemplate,
    d4: u32,
    rpi: u32,
    ks: u32,
    broadcast: Option<u32>,
) -> SourceTemplate {
    template
        .register("dq_load", load(d4, rpi))
        .register("dq_step", step(d4, rpi, ks, broadcast))
        .register("dq_store", store(d4, rpi))
}

/// q (scaled), dO, lse and Δ = dO·O of each row; Δ is written for the dK/dV kernel.
fn load(d4: u32, rpi: u32) -> String {
    let mut out = Vec::new();
    for r in 0..rpi {
        let mut delta = Vec::new();
        for c in 0..d4 {
            let i = r * d4 + c;
            out.push(format!(
                "qr[{i}] = vec4<f32>(q[(bh * p.lq + src_{r}) * D4 + {c}u]) * p.scale;\n    \
                 dor[{i}] = vec4<f32>(d_out[(bh * p.lq + src_{r}) * D4 + {c}u]);\n    \
                 acc[{i}] = vec4<f32>(0.0);"
            ));
            delta.push(format!(
                "dot(dor[{i}], vec4<f32>(o[(bh * p.lq + src_{r}) * D4 + {c}u]))"
            ));
        }
        out.push(format!("lse_r[{r}] = lse[bh * p.lq + src_{r}];"));
        out.push(format!("delta_r[{r}] = {};", delta.join(" + ")));
        out.push(format!(
            "if (row_{r} < p.lq) {{ delta[bh * p.lq + row_{r}] = delta_r[{r}]; }}"
        ));
    }
    out.join("\n    ")
}

/// One step of `ks` keys: scores and dO·v for every row, then ds, then dQ += ds·k. Each K and V
/// chunk is read from workgroup memory (or broadcast from its lane) once.
fn step(d4: u32, rpi: u32, ks: u32, broadcast: Option<u32>) -> String {
    let mut out = Vec::new();
    if let Some(inv) = broadcast {
        out.extend(key_loads(d4, ks, inv));
    }
    for kk in 0..ks {
        for c in 0..d4 {
            out.push(format!(
                "let k{kk}_{c} = {};",
                chunk("k", kk, c, d4, broadcast)
            ));
        }
    }
    for kk in 0..ks {
        for r in 0..rpi {
            let i = r * ks + kk;
            out.push(format!("sc[{i}] = 0.0;\n            dp[{i}] = 0.0;"));
        }
        for c in 0..d4 {
            for r in 0..rpi {
                out.push(format!(
                    "sc[{0}] += dot(qr[{1}], k{kk}_{c});",
                    r * ks + kk,
                    r * d4 + c
                ));
            }
        }
        for c in 0..d4 {
            out.push(format!("{{ let vc = {};", chunk("v", kk, c, d4, broadcast)));
            for r in 0..rpi {
                out.push(format!(
                    "dp[{0}] += dot(dor[{1}], vc);",
                    r * ks + kk,
                    r * d4 + c
                ));
            }
            out.push("}".into());
        }
    }
    // ds_ij = p_ij (dp_ij − Δ_i), kept in sc.
    for r in 0..rpi {
        for kk in 0..ks {
            let i = r * ks + kk;
            out.push(format!(
                "sc[{i}] = prob(p, key_len, bh, src_{r}, t0 + j + {kk}u, sc[{i}], lse_r[{r}]) \
                 * (dp[{i}] - delta_r[{r}]);"
            ));
        }
    }
    for kk in 0..ks {
        for c in 0..d4 {
            for r in 0..rpi {
                out.push(format!(
                    "acc[{0}] = fma(vec4<f32>(sc[{1}]), k{kk}_{c}, acc[{0}]);",
                    r * d4 + c,
                    r * ks + kk
                ));
            }
        }
    }
    out.join("\n            ")
}

fn store(d4: u32, rpi: u32) -> String {
    let mut out = Vec::new();
    for r in 0..rpi {
        out.push(format!("if (row_{r} < p.lq) {{"));
        for c in 0..d4 {
            out.push(format!(
                "    dq[(bh * p.lq + row_{r}) * D4 + {c}u] = S(acc[{}] * p.scale);",
                r * d4 + c
            ));
        }
        out.push("}".into());
    }
    out.join("\n    ")
}
