//! The code the launcher writes into the forward kernel (`shaders/attention_fwd.wgsl`): its
//! row-slot set-up, q load, key step and store, written out over the rows an invocation owns
//! (register tiling), the keys of one step and the head-dim chunks, so that every index into the
//! register arrays is a constant.

use burn::backend::wgpu::SourceTemplate;

use crate::attention_tiling::{chunk, key_loads};

/// Fills the forward's generated placeholders for `d4` head-dim chunks, `rpi` rows per
/// invocation and `ks` keys per step; with `broadcast`, the `inv` lanes of the workgroup's one
/// subgroup load each step's K and V chunks and broadcast them (no workgroup tiles).
pub(crate) fn fill(
    template: SourceTemplate,
    d4: u32,
    rpi: u32,
    ks: u32,
    broadcast: Option<u32>,
) -> SourceTemplate {
    template
        .register("fwd_load_q", load_q(d4, rpi))
        .register("fwd_step", step(d4, rpi, ks, broadcast))
        .register("fwd_store", store(d4, rpi))
}

fn load_q(d4: u32, rpi: u32) -> String {
    let mut out = Vec::new();
    for r in 0..rpi {
        out.push(format!("m[{r}] = NEG_INF;\n    l[{r}] = 0.0;"));
        for c in 0..d4 {
            let i = r * d4 + c;
            out.push(format!(
                "qr[{i}] = vec4<f32>(q[(bh * p.lq + src_{r}) * D4 + {c}u]) * p.scale;\n    \
                 acc[{i}] = vec4<f32>(0.0);"
            ));
        }
    }
    out.join("\n    ")
}

/// One step of `ks` keys (keys t0 + j … t0 + j + ks − 1 of the staged tile). Each K or V
/// chunk is read from workgroup memory once and used by every row of the invocation.
fn step(d4: u32, rpi: u32, ks: u32, broadcast: Option<u32>) -> String {
    let mut out = Vec::new();
    if let Some(inv) = broadcast {
        out.extend(key_loads(d4, ks, inv));
    }
    // Scores.
    for kk in 0..ks {
        for r in 0..rpi {
            out.push(format!("sc[{}] = 0.0;", r * ks + kk));
        }
        for c in 0..d4 {
            out.push(format!("{{ let kc = {};", chunk("k", kk, c, d4, broadcast)));
            for r in 0..rpi {
                out.push(format!(
                    "sc[{0}] += dot(qr[{1}], kc);",
                    r * ks + kk,
                    r * d4 + c
                ));
            }
            out.push("}".into());
        }
    }
    // Masks, then the online softmax: one rescale per row per step.
    for r in 0..rpi {
        out.push("{".into());
        for kk in 0..ks {
            let i = r * ks + kk;
            out.push(format!(
                "sc[{i}] = masked(p, key_len, bh, src_{r}, t0 + j + {kk}u, sc[{i}]);"
            ));
        }
        let max = (0..ks).fold(format!("m[{r}]"), |a, kk| {
            format!("max({a}, sc[{}])", r * ks + kk)
        });
        out.push(format!("let mn = {max};"));
        out.push(format!("let corr = exp(m[{r}] - mn);"));
        out.push(format!("m[{r}] = mn;"));
        let mut sum = Vec::new();
        for kk in 0..ks {
            let i = r * ks + kk;
            out.push(format!(
                "sc[{i}] = select(0.0, exp(sc[{i}] - mn), sc[{i}] > NEG_INF);"
            ));
            sum.push(format!("sc[{i}]"));
        }
        out.push(format!("l[{r}] = l[{r}] * corr + {};", sum.join(" + ")));
        for c in 0..d4 {
            out.push(format!("acc[{0}] *= corr;", r * d4 + c));
        }
        out.push("}".into());
    }
    // Weighted values.
    for kk in 0..ks {
        for c in 0..d4 {
            out.push(format!("{{ let vc = {};", chunk("v", kk, c, d4, broadcast)));
            for r in 0..rpi {
                out.push(format!(
                    "acc[{0}] = fma(vec4<f32>(sc[{1}]), vc, acc[{0}]);",
                    r * d4 + c,
                    r * ks + kk
                ));
            }
            out.push("}".into());
        }
    }
    out.join("\n            ")
}

fn store(d4: u32, rpi: u32) -> String {
    let mut out = Vec::new();
    for r in 0..rpi {
        out.push(format!(
            "if (row_{r} < p.lq) {{\n        \
             let inv = select(0.0, 1.0 / l[{r}], l[{r}] > 0.0);"
        ));
        for c in 0..d4 {
            out.push(format!(
                "    out[(bh * p.lq + row_{r}) * D4 + {c}u] = S(acc[{}] * inv);",
                r * d4 + c
            ));
        }
        out.push(format!(
            "    lse[bh * p.lq + row_{r}] = select(NEG_INF, m[{r}] + log(l[{r}]), l[{r}] > 0.0);\n    }}"
        ));
    }
    out.join("\n    ")
}
