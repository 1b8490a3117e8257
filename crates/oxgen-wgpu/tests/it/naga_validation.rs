//! Every template variant of every shader parses and validates with naga (no GPU needed).

use std::fmt::Debug;

use burn::backend::wgpu::SourceTemplate;
use naga::valid::Capabilities;

fn validate(name: &str, source: &str) {
    validate_with(name, source, Capabilities::empty());
}

/// As `validate`, for a shader that needs `capabilities` (f16 variants: `SHADER_FLOAT16`).
fn validate_with(name: &str, source: &str, capabilities: Capabilities) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert!(
        module.entry_points.iter().any(|e| e.name == "main"),
        "{name}: no `main` entry point"
    );
}

/// Fills every variant's template (no placeholder may be left) and validates it with the
/// capabilities that variant needs.
fn validate_all<V: Debug>(
    name: &str,
    variants: Vec<V>,
    source: impl Fn(&V) -> SourceTemplate,
    capabilities: impl Fn(&V) -> Capabilities,
) {
    for v in variants {
        let text = source(&v).complete();
        assert!(
            !text.contains("{{"),
            "{name} {v:?}: a placeholder was left unfilled"
        );
        validate_with(&format!("{name} {v:?}"), &text, capabilities(&v));
    }
}

/// The capability when `needed`, else none.
fn needs(needed: bool, capability: Capabilities) -> Capabilities {
    if needed {
        capability
    } else {
        Capabilities::empty()
    }
}

#[test]
fn every_denoise_variant_validates() {
    use oxgen_wgpu::denoise::Variant;
    let variants = Variant::all();
    assert_eq!(variants.len(), 256);
    // Only the 64-bit-multiply Philox needs the capability.
    validate_all("denoise_step", variants, Variant::source, |v| {
        needs(v.mul64, Capabilities::SHADER_INT64)
    });
}

#[test]
fn the_copy_kernel_validates() {
    validate("copy", &oxgen_wgpu::copy::source().complete());
}

#[test]
fn every_group_norm_variant_validates() {
    use oxgen_wgpu::group_norm::Variant;
    let variants = Variant::all();
    // 5 workgroup sizes × affine × backward × subgroups.
    assert_eq!(variants.len(), 40);
    validate_all("group_norm_silu", variants, Variant::source, |v| {
        needs(v.subgroups, Capabilities::SUBGROUP)
    });
}

#[test]
fn every_attention_variant_validates() {
    use oxgen_wgpu::attention::Variant;
    let variants = Variant::all();
    // 8 (causal, bias, f16) per head dim and rows-per-invocation setting; 2 settings (software,
    // GPU) at each of the 7 head dims, but one at d = 256 for dQ and dK/dV (2 rows on both):
    // (14 + 13 + 13) · 8; and the broadcast forms wherever a step's 4·d/4 chunks split evenly
    // over the workgroup's lanes: 10 of the forward's 14 settings and 9 each of dQ's and dK/dV's
    // 13 (not d = 4; not d = 8 or 16 at the GPU's 32 lanes), 28 · 8.
    assert_eq!(variants.len(), 544);
    assert_eq!(variants.iter().filter(|v| v.broadcast).count(), 224);
    // The f16-storage variants need shader-f16, the broadcast ones subgroups.
    validate_all("attention", variants, Variant::source, |v| {
        needs(v.half, Capabilities::SHADER_FLOAT16) | needs(v.broadcast, Capabilities::SUBGROUP)
    });
}

#[test]
fn every_attention_decode_variant_validates() {
    use oxgen_wgpu::attention_decode::Variant;
    let variants = Variant::all();
    // 7 head dims × 2 storages × (1 combine + 16 split variants: with and without subgroups).
    assert_eq!(variants.len(), 238);
    validate_all("attention_decode", variants, Variant::source, |v| {
        needs(v.half, Capabilities::SHADER_FLOAT16) | needs(v.subgroups, Capabilities::SUBGROUP)
    });
    // The fallback really is free of subgroup operations: it validates without the capability,
    // and the subgroup variant does not.
    let base = Variant::all()
        .into_iter()
        .find(|v| v.subgroups && !v.half)
        .expect("a subgroup variant");
    let fallback = Variant {
        subgroups: false,
        ..base
    };
    validate("attention_decode fallback", &fallback.source().complete());
    let module = naga::front::wgsl::parse_str(&base.source().complete()).expect("parses");
    assert!(
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .is_err(),
        "the subgroup variant validated without the SUBGROUP capability"
    );
}

#[test]
fn every_per_sample_norm_variant_validates() {
    use oxgen_wgpu::per_sample_norm::Variant;
    validate_all("per_sample_norm", Variant::all(), Variant::source, |_| {
        Capabilities::empty()
    });
}

#[test]
fn every_noising_variant_validates() {
    use oxgen_wgpu::noising::Variant;
    validate_all("noising", Variant::all(), Variant::source, |v| {
        needs(v.mul64, Capabilities::SHADER_INT64)
    });
}

#[test]
fn every_conv_variant_validates() {
    use oxgen_wgpu::conv::Variant;
    let variants = Variant::all();
    assert_eq!(variants.len(), 52);
    validate_all("conv2d", variants, Variant::source, |_| {
        Capabilities::empty()
    });
}
