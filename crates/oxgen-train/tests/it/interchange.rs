//! Weights interchange: export → import gives a run that samples what the original sampled, bit
//! for bit, for every family; a GPT loads a GPT-2-layout file (written here) tensor for tensor.

use std::collections::HashMap;
use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use oxgen_train::Error;
use oxgen_train::interchange::{export, import, load_gpt2, tensor_shapes};
use rand::{Rng, SeedableRng};

use crate::fixtures::{FIXTURES, copy_dir, samples_of};

#[test]
fn export_then_import_samples_the_same_for_every_family() {
    for name in FIXTURES {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/v1")
            .join(name)
            .join("run");
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        copy_dir(&src, &run);
        let file = tmp.path().join("w.safetensors");
        let e = export(&run, &file).unwrap();
        assert!(!e.tensors.is_empty(), "{name}");
        let copy = tmp.path().join("imported");
        import(&file, &copy).unwrap();
        let (a, b) = (
            samples_of(name, &run, &Device::flex()),
            samples_of(name, &copy, &Device::flex()),
        );
        assert_eq!(a, b, "{name}: the imported run samples differently");
        if name.starts_with("ar") {
            // The documented names of the GPT.
            for t in [
                "wte.weight",
                "wpe.weight",
                "blocks.0.qkv.weight",
                "blocks.0.ln1.gamma",
                "blocks.0.fc.bias",
                "ln_f.gamma",
            ] {
                assert!(
                    e.tensors.contains_key(t),
                    "{name}: no {t} in {:?}",
                    e.tensors.keys()
                );
            }
            let w = e.tensors["blocks.0.qkv.weight"].clone();
            assert_eq!(w, vec![16, 48], "Linear weights are [in, out]");
        }
        // Importing into a folder that holds a run is refused; the run is untouched.
        let again = import(&file, &copy).unwrap_err();
        assert!(again.to_string().contains("already holds a run"), "{again}");
    }
}

#[test]
fn foreign_and_broken_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    assert!(matches!(
        import(&junk, &tmp.path().join("a")),
        Err(Error::Parse { .. })
    ));
    // A valid safetensors file without oxgen's manifest.
    let plain = tmp.path().join("plain.safetensors");
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let bytes = safetensors::serialize([("x", view)], None).unwrap();
    std::fs::write(&plain, bytes).unwrap();
    let e = import(&plain, &tmp.path().join("b")).unwrap_err();
    assert!(e.to_string().contains("oxgen export"), "{e}");
    assert!(
        !tmp.path().join("b").exists(),
        "nothing is written for a refused file"
    );
    let e = load_gpt2(&plain, 2, &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("GPT-2"), "{e}");
}

/// A GPT-2-layout file written here: every tensor lands where the mapping says, values equal.
#[test]
fn a_gpt_loads_gpt2_layout_weights_tensor_for_tensor() {
    let (v, c, w, layers) = (11usize, 8usize, 16usize, 2usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("transformer.wte.weight".into(), vec![v, w]),
        ("transformer.wpe.weight".into(), vec![c, w]),
        ("transformer.ln_f.weight".into(), vec![w]),
        ("transformer.ln_f.bias".into(), vec![w]),
        ("lm_head.weight".into(), vec![v, w]),
    ];
    for l in 0..layers {
        for (n, s) in [
            ("ln_1.weight", vec![w]),
            ("ln_1.bias", vec![w]),
            ("attn.c_attn.weight", vec![w, 3 * w]),
            ("attn.c_attn.bias", vec![3 * w]),
            ("attn.c_proj.weight", vec![w, w]),
            ("attn.c_proj.bias", vec![w]),
            ("attn.bias", vec![1, 1, c, c]),
            ("ln_2.weight", vec![w]),
            ("ln_2.bias", vec![w]),
            ("mlp.c_fc.weight", vec![w, 4 * w]),
            ("mlp.c_fc.bias", vec![4 * w]),
            ("mlp.c_proj.weight", vec![4 * w, w]),
            ("mlp.c_proj.bias", vec![w]),
        ] {
            shapes.push((format!("transformer.h.{l}.{n}"), s));
        }
    }
    let values: HashMap<String, Vec<f32>> = shapes
        .iter()
        .map(|(n, s)| {
            let k: usize = s.iter().product();
            (
                n.clone(),
                (0..k).map(|_| rng.random_range(-1.0..1.0)).collect(),
            )
        })
        .collect();
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = shapes
        .iter()
        .map(|(n, s)| {
            let b = values[n].iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), b, s.clone())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, b, s)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            (n.clone(), view)
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("gpt2.safetensors");
    std::fs::write(&file, safetensors::serialize(views, None).unwrap()).unwrap();

    let (config, model) = load_gpt2(&file, 2, &Device::flex()).unwrap();
    assert_eq!(
        (config.vocab, config.context, config.width, config.layers),
        (v, c, w, layers)
    );
    // Read the model's tensors back under their own names.
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).unwrap();
    let bytes = store.get_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ours = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let pairs = [
        ("wte.weight", "transformer.wte.weight".to_string()),
        ("wpe.weight", "transformer.wpe.weight".into()),
        ("ln_f.gamma", "transformer.ln_f.weight".into()),
        ("ln_f.beta", "transformer.ln_f.bias".into()),
        ("blocks.1.ln1.gamma", "transformer.h.1.ln_1.weight".into()),
        ("blocks.1.ln2.beta", "transformer.h.1.ln_2.bias".into()),
        (
            "blocks.0.qkv.weight",
            "transformer.h.0.attn.c_attn.weight".into(),
        ),
        (
            "blocks.1.qkv.bias",
            "transformer.h.1.attn.c_attn.bias".into(),
        ),
        (
            "blocks.0.proj.weight",
            "transformer.h.0.attn.c_proj.weight".into(),
        ),
        (
            "blocks.1.fc.weight",
            "transformer.h.1.mlp.c_fc.weight".into(),
        ),
        (
            "blocks.0.out.weight",
            "transformer.h.0.mlp.c_proj.weight".into(),
        ),
        (
            "blocks.1.out.bias",
            "transformer.h.1.mlp.c_proj.bias".into(),
        ),
    ];
    for (mine, theirs) in pairs {
        assert_eq!(ours(mine), values[&theirs], "{mine} ≠ {theirs}");
    }
    assert_eq!(
        tensor_shapes(&bytes, &file).unwrap().len(),
        4 + 12 * layers,
        "every weight, no masks"
    );
    // A width the heads do not divide is a typed error, not a panic.
    let e = load_gpt2(&file, 3, &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("heads"), "{e}");
}
