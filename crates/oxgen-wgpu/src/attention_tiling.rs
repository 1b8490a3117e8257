//! Tiling of the attention kernels: how many rows each invocation owns, invocations per
//! workgroup, staged tile sizes, the software adapter's key limit that follows from them, and
//! the broadcast form's loads.
//!
//! The forward and dQ kernels give each invocation several query rows, the dK/dV kernel several
//! key rows, so that every K, V (or q, dO) chunk read from workgroup memory feeds several rows.
//! On lavapipe a workgroup-memory read inside a loop costs one scalar load per SIMD lane
//! (llvmpipe cannot prove the address uniform there), so one row per invocation spent most of
//! its time loading. The launchers (`attention_fwd.rs`, `attention_dq.rs`, `attention_dkdv.rs`)
//! write each kernel's code out over its rows, so that every register-array index is a
//! constant.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::attention::Pass;

/// Keys (forward, dQ) or query rows (dK/dV) per step of a kernel's inner loop.
pub const PER_STEP: u32 = 4;

static ROWS_OVERRIDE: AtomicU32 = AtomicU32::new(0);

/// Sets the rows per invocation of every attention kernel at every head dim (`None`: the
/// defaults of [`default_rows`]). For tests and benchmarks that compare settings; a power of
/// two up to 64.
pub fn set_rows_per_invocation(rows: Option<u32>) {
    ROWS_OVERRIDE.store(rows.unwrap_or(0), Ordering::Relaxed);
}

thread_local! {
    static ROWS_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with `rows` rows per invocation (as [`set_rows_per_invocation`]) on this thread only,
/// over the process-wide setting: the attention calls made inside `f` on this thread (and their
/// gradients) take it, other threads' calls do not.
pub fn with_rows_per_invocation<R>(rows: u32, f: impl FnOnce() -> R) -> R {
    crate::kernel::with_local(&ROWS_HERE, rows, f)
}

/// The override in force on this thread (0: none): [`with_rows_per_invocation`]'s, else
/// [`set_rows_per_invocation`]'s.
pub(crate) fn rows_override() -> u32 {
    match ROWS_HERE.with(|r| r.get()) {
        0 => ROWS_OVERRIDE.load(Ordering::Relaxed),
        here => here,
    }
}

/// Rows per invocation of `pass` at head dim `d` (a multiple of 4), on a software adapter or
/// not. The forward holds 2·d floats per row in registers (q, output), dQ 3·d (q, dO, dQ) and
/// dK/dV 4·d (k, v, dK, dV). On a software adapter: the forward rows·d ≤ 1,024 (16 rows up to
/// d = 64, 8 at 128, 4 at 256), the backward kernels rows·d ≤ 512 (8, 4, 2). On a GPU at most 2
/// rows (not yet measured there).
///
/// Measured on lavapipe, forward at L = 1,024, d = 64, B·H = 8 (`oxgen bench attention --seq
/// 1024 --batch 1 --heads 8 --iters 3 --no-peers`; one row per invocation took 458 ms): 4 rows
/// 145 ms, 8 rows 95–102 ms, 16 rows 73 ms, 32 rows 69 ms (with a much longer compile); at 16
/// rows, 2, 4 and 8 keys per step: 82, 73 and 88 ms.
pub fn default_rows(pass: Pass, d: u32, software: bool) -> u32 {
    let (budget, cap) = match pass {
        Pass::Forward => (1024, 16),
        Pass::Dq | Pass::DkDv => (512, 8),
    };
    let cap = if software { cap } else { 2 };
    (budget / d.max(4)).clamp(1, cap)
}

/// Rows per invocation of `pass` at head dim `d` on this machine's adapter (see
/// [`default_rows`]; [`set_rows_per_invocation`] and [`with_rows_per_invocation`] override it).
pub fn rows_per_invocation(pass: Pass, d: u32) -> u32 {
    let set = rows_override();
    if set > 0 {
        return set;
    }
    default_rows(pass, d, crate::device::maybe_software())
}

/// Rows per invocation of `pass` at head dim `d` for a launch over `rows` rows (queries for the
/// forward and dQ, keys for dK/dV): [`rows_per_invocation`], cut to the power of two at or above
/// rows / 8, so that a workgroup (at least 8 invocations) holds not many more rows than there
/// are. The digits UNet attends over 16 tokens: at 16 rows per invocation a workgroup held 128
/// rows, 112 of them computed on a clamped copy and dropped; now 2 rows, 16 per workgroup. An
/// explicit [`set_rows_per_invocation`] or [`with_rows_per_invocation`] is kept as set.
///
/// `set` is the override captured where the call was made ([`rows_override`], 0 for none):
/// launches run later, on the device's thread, where the caller's thread-local setting is not
/// in force.
pub fn rows_for(pass: Pass, d: u32, rows: usize, set: u32) -> u32 {
    if set > 0 {
        return set;
    }
    cut(default_rows(pass, d, crate::device::maybe_software()), rows)
}

/// `r` rows per invocation, at most the power of two at or above rows / 8.
fn cut(r: u32, rows: usize) -> u32 {
    r.min((rows.div_ceil(8).max(1) as u32).next_power_of_two())
}

/// The row slots of a forward or dQ invocation: `row_r`, its query row, and `src_r`, the row it
/// computes (row_r, or the last row when row_r is past Lq).
pub(crate) fn row_slots(rpi: u32) -> String {
    (0..rpi)
        .map(|r| {
            format!(
                "let row_{r} = wid.x * BR + {r}u * INV + lid;\n    \
                 let src_{r} = min(row_{r}, p.lq - 1u);"
            )
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// Rows of a staged tile for head dim `d`: two tiles of `rows × d` floats in at most half the
/// adapter's workgroup storage (leaving room for two workgroups per core), a power of two in
/// 8..=64. 32 KiB (lavapipe): 64, 32, 16 rows for d = 32, 64, 128; 48 KiB (H200) the same.
pub fn tile_rows(d: u32, workgroup_storage: usize) -> u32 {
    let budget = (workgroup_storage / 2) as u32;
    let rows = budget / (2 * d * 4);
    let rows = if rows == 0 {
        8
    } else {
        1 << (31 - rows.leading_zeros())
    };
    rows.clamp(8, 64)
}

/// The longest key sequence the forward kernel handles on a software adapter (lavapipe), which
/// silently ends an invocation after 65,535 loop iterations in total. Per tile of BC keys the
/// forward loops BC·D/4 / invocations times to load, BC / KS times over key steps and once
/// around the tile loop (everything else is written out). With 32 KiB of workgroup storage and
/// the software adapter's rows per invocation: 51,776 keys at d = 32, 28,704 at d = 64, 15,184
/// at d = 128. Longer sequences take the reference there. (The backward kernels loop less per
/// key.)
pub fn software_max_keys(d: usize) -> usize {
    let d4 = d / 4;
    let bc = tile_rows(d as u32, 32 * 1024) as usize;
    let rows = rows_per_invocation(Pass::Forward, d as u32);
    let invocations = invocations(rows) as usize;
    let steps = bc / PER_STEP as usize;
    let per_tile = (bc * d4).div_ceil(invocations) + steps + 1;
    65_535 / per_tile * bc
}

/// Invocations per workgroup for `per_invocation` rows each: [`crate::attention::ROWS`] rows in all, but at least
/// 8 invocations (one SIMD group of lavapipe).
pub(crate) fn invocations(per_invocation: u32) -> u32 {
    (crate::attention::ROWS / per_invocation).max(8)
}

/// Whether the broadcast form applies to `inv` lanes: every lane loads as many of the step's
/// `ks · d4` chunks.
pub(crate) fn broadcast_fits(d4: u32, ks: u32, inv: u32) -> bool {
    inv > 0 && (ks * d4) % inv == 0
}

/// The broadcast form's loads (forward and dQ): lane `lane` takes chunks lane + inv·i of the
/// `ks` keys of the step at t0 + j, which are contiguous in k and v (keys past Lk read the last
/// one, whose scores are masked), into `kl{i}` and `vl{i}`.
pub(crate) fn key_loads(d4: u32, ks: u32, inv: u32) -> Vec<String> {
    let mut out = vec![
        "let kb = (bh * p.lk + t0 + j) * D4 + lane;".to_string(),
        "let klast = (bh * p.lk + p.lk) * D4 - 1u;".to_string(),
    ];
    for i in 0..ks * d4 / inv {
        out.push(format!(
            "let kl{i} = vec4<f32>(k[min(kb + {o}u, klast)]);\n            \
             let vl{i} = vec4<f32>(v[min(kb + {o}u, klast)]);",
            o = i * inv
        ));
    }
    out
}

/// Chunk `c` of key `kk` of the step, for `name` (K: "k", V: "v"): from workgroup memory, or
/// broadcast from the lane that loaded it.
pub(crate) fn chunk(name: &str, kk: u32, c: u32, d4: u32, broadcast: Option<u32>) -> String {
    match broadcast {
        Some(inv) => {
            let idx = kk * d4 + c;
            format!("subgroupBroadcast({name}l{}, {}u)", idx / inv, idx % inv)
        }
        None => format!("{name}s[(j + {kk}u) * D4 + {c}u]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short sequences get fewer rows per invocation: a workgroup of 8 invocations then holds
    /// 16 rows for the UNet's 16 tokens, 16 for the arithmetic GPT's 12, 64 for 64; long ones
    /// keep the setting.
    #[test]
    fn short_sequences_get_fewer_rows() {
        assert_eq!(cut(16, 16), 2);
        assert_eq!(cut(16, 12), 2);
        assert_eq!(cut(16, 20), 4);
        assert_eq!(cut(16, 64), 8);
        assert_eq!(cut(16, 65), 16);
        assert_eq!(cut(16, 4096), 16);
        assert_eq!(cut(2, 1), 1);
        assert_eq!(cut(8, 0), 1);
    }
}
