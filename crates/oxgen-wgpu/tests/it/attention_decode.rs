//! The decode path of the attention forward (`shaders/attention_decode*.wgsl`): a few query rows
//! against many keys, split over the keys, against burn's `attention_fallback` on the CPU.
//! Through [`crate::attention`]'s harness: output and the three gradients (the backward kernels
//! follow the decode forward's output and logsumexp).

use burn::tensor::{Device, Distribution, Tensor};
use oxgen_models::ops::attention::{self, AttentionOptions, attention_reference, attention_with};
use oxgen_models::ops::{OpPath, with_path};
use oxgen_wgpu::attention_decode::{
    GPU_GROUPS, MAX_SPLITS, splits, target_groups, with_target_groups, workgroup,
};
use oxgen_wgpu::subgroups;

use crate::attention::{Case, check, close, host, with_window};
use crate::gpu;

/// One split and several (each case with this device's split counts, one split on lavapipe, and
/// with a GPU's, [`GPU_GROUPS`]), every workgroup size (head dims 16, 64, 128 → 64, 64, 32
/// invocations; 256 → 16), a head dim that pads (6), causal, bias with masked keys, windows, f16
/// storage, and keys fewer than the invocations of a workgroup. Each also with the merge's
/// subgroup reductions off, the workgroup-memory fallback; with them on where the adapter has
/// subgroups (lavapipe has, 8 wide: with 64 invocations, 8 subgroups to merge), and then the
/// subgroup variant must be the one that ran.
#[test]
fn decode_matches_the_reference() {
    let gpu = gpu();
    let has_subgroups = oxgen_wgpu::adapters().iter().all(|a| a.subgroups);
    for (lq, lk, d, causal, bias, window, half) in [
        (1, 1, 64, false, false, 0, false),
        (1, 17, 16, true, false, 0, false),
        (1, 300, 64, false, true, 0, false),
        (2, 1000, 64, true, false, 0, false),
        (3, 700, 256, true, true, 0, false),
        (4, 130, 6, false, false, 20, false),
        (1, 2000, 128, true, false, 300, false),
        (4, 4, 32, true, true, 0, false),
        (1, 900, 64, false, true, 0, true),
    ] {
        let case = Case {
            lq,
            lk,
            d,
            causal,
            bias,
            logit_scale: 1.0,
            half,
        };
        for groups in [None, Some(GPU_GROUPS)] {
            for on in [false, true] {
                let before = subgroups::launches();
                // f16 launches are counted exactly by `half_storage_matches_the_reference`.
                let _f16 = half.then(|| crate::F16_LOCK.lock().unwrap_or_else(|e| e.into_inner()));
                subgroups::with_enabled(Some(on), || {
                    with_target_groups(groups, || with_window(window, || check(&gpu, &case)))
                });
                if on && has_subgroups {
                    assert!(
                        subgroups::launches() > before,
                        "lq {lq}, lk {lk}, d {d}: the subgroup variant did not run"
                    );
                }
            }
        }
    }
}

/// The split counts the cases above rely on: one split for a short cache, several for a long one,
/// never more than `MAX_SPLITS`, fewer when the rows alone fill the device.
#[test]
fn split_counts() {
    assert_eq!(workgroup(16), 64);
    assert_eq!(workgroup(64), 64);
    assert_eq!(workgroup(128), 32);
    assert_eq!(workgroup(256), 16);
    let gpu = GPU_GROUPS;
    assert_eq!(splits(4, 17, 16, gpu), 1);
    assert_eq!(splits(4, 300, 64, gpu), 2);
    assert_eq!(splits(8, 1000, 64, gpu), 4);
    assert_eq!(splits(12, 700, 256, gpu), 11);
    assert_eq!(splits(1, 1 << 20, 64, gpu), MAX_SPLITS);
    assert_eq!(splits(4096, 4096, 64, gpu), 1);
    // A software adapter: one workgroup per core.
    assert_eq!(splits(8, 4096, 64, 2), 1);
    assert_eq!(splits(1, 4096, 64, 2), 2);
    assert!(target_groups() >= 1);
}

/// A cache longer than the forward kernel takes on lavapipe (23,520 keys at d = 64, where an
/// invocation would pass 65,535 loop iterations): inference takes the decode path, not the
/// reference, and gets the reference's output.
#[test]
fn decode_past_the_forward_kernels_key_limit() {
    let gpu = gpu();
    let cpu = Device::flex();
    let (lk, d) = (30_000, 64);
    let r = |shape: [usize; 4], seed: u64| {
        cpu.seed(seed);
        Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &cpu)
    };
    let (q, k, v) = (r([1, 2, 1, d], 1), r([1, 2, lk, d], 2), r([1, 2, lk, d], 3));
    let options = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let want = host(attention_reference(
        q.clone(),
        k.clone(),
        v.clone(),
        None,
        options.clone(),
    ));
    let got = with_path(OpPath::Fused, || {
        attention_with(
            q.to_device(&gpu),
            k.to_device(&gpu),
            v.to_device(&gpu),
            None,
            options,
        )
    });
    assert_eq!(
        attention::last_path(),
        Some(oxgen_wgpu::attention::DECODE_NAME)
    );
    close(&host(got), &want, 2e-4, "30,000 keys, d = 64");
}
