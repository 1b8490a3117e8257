//! Every template variant of every shader parses and validates with naga (no GPU needed).

use oxgen_wgpu::denoise::Variant;

fn validate(name: &str, source: &str) {
    validate_with(name, source, naga::valid::Capabilities::empty());
}

/// As `validate`, for a shader that needs `capabilities` (f16 variants: `SHADER_FLOAT16`).
fn validate_with(name: &str, source: &str, capabilities: naga::valid::Capabilities) {
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

#[test]
fn every_denoise_variant_validates() {
    let variants = Variant::all();
    assert_eq!(variants.len(), 256);
    for v in variants {
        let text = v.source().complete();
        assert!(
            !text.contains("{{"),
            "{v:?}: a placeholder was left unfilled"
        );
        // Only the 64-bit-multiply Philox needs the capability.
        let capabilities = if v.mul64 {
            naga::valid::Capabilities::SHADER_INT64
        } else {
            naga::valid::Capabilities::empty()
        };
        validate_with(&format!("denoise_step {v:?}"), &text, capabilities);
    }
}

#[test]
fn the_copy_kernel_validates() {
    validate("copy", &oxgen_wgpu::copy::source().complete());
}

#[test]
fn every_group_norm_variant_validates() {
    for v in oxgen_wgpu::group_norm::Variant::all() {
        let text = v.source().complete();
        assert!(
            !text.contains("{{"),
            "{v:?}: a placeholder was left unfilled"
        );
        validate(&format!("group_norm_silu {v:?}"), &text);
    }
}

#[test]
fn every_attention_variant_validates() {
    let variants = oxgen_wgpu::attention::Variant::all();
    assert_eq!(variants.len(), 168);
    for v in variants {
        let text = v.source().complete();
        assert!(
            !text.contains("{{"),
            "{v:?}: a placeholder was left unfilled"
        );
        // Only the f16-storage variants need the capability.
        let capabilities = if v.half {
            naga::valid::Capabilities::SHADER_FLOAT16
        } else {
            naga::valid::Capabilities::empty()
        };
        validate_with(&format!("attention {v:?}"), &text, capabilities);
    }
}

#[test]
fn every_per_sample_norm_variant_validates() {
    for v in oxgen_wgpu::per_sample_norm::Variant::all() {
        let text = v.source().complete();
        assert!(
            !text.contains("{{"),
            "{v:?}: a placeholder was left unfilled"
        );
        validate(&format!("per_sample_norm {v:?}"), &text);
    }
}

#[test]
fn every_noising_variant_validates() {
    for v in oxgen_wgpu::noising::Variant::all() {
        let text = v.source().complete();
        assert!(
            !text.contains("{{"),
            "{v:?}: a placeholder was left unfilled"
        );
        let capabilities = if v.mul64 {
            naga::valid::Capabilities::SHADER_INT64
        } else {
            naga::valid::Capabilities::empty()
        };
        validate_with(&format!("noising {v:?}"), &text, capabilities);
    }
}

#[test]
fn every_attention_decode_variant_validates() {
    let variants = oxgen_wgpu::attention_decode::Variant::all();
    // 7 head dims × 2 storages × (1 combine + 8 split variants).
    assert_eq!(variants.len(), 126);
    for v in variants {
        let text = v.source().complete();
        assert!(
            !text.contains("{{"),
            "{v:?}: a placeholder was left unfilled"
        );
        let capabilities = if v.half {
            naga::valid::Capabilities::SHADER_FLOAT16
        } else {
            naga::valid::Capabilities::empty()
        };
        validate_with(&format!("attention_decode {v:?}"), &text, capabilities);
    }
}
