//! Run-format versions and the migrations between them.
//!
//! Every manifest carries `format`. Loading reads it first: an older format is moved forward
//! one version at a time, as JSON, before it is parsed; a newer one is refused with
//! [`Error::NewerRun`], naming both versions. The same key moves apply to config files, so a
//! TOML written for an older oxgen still loads.
//!
//! | format | oxgen | change |
//! |---|---|---|
//! | 1 | 0.1.0 | first format |
//! | 2 | 0.1.0 | one learning-rate schedule: `warmup_steps`, `min_lr_ratio` (diffusion) and `warmup` (ar) move into `schedule`; the cosine floor, implicit before (5% for VAE, flow and GAN, 10% for ar), is written down |

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The run format this oxgen writes and the newest it reads.
pub const FORMAT: u32 = 2;

/// Moves the manifest `v` (any format up to [`FORMAT`]) to [`FORMAT`].
pub fn manifest(mut v: Value, path: &Path) -> Result<Value> {
    let found = v
        .get("format")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Checkpoint {
            path: path.into(),
            reason: "manifest.json has no format version".into(),
        })?;
    if found > FORMAT as u64 {
        return Err(Error::NewerRun {
            path: path.into(),
            found: found as u32,
            written_by: v
                .get("oxgen_version")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .into(),
            supported: FORMAT,
        });
    }
    if found == 0 {
        return Err(Error::Checkpoint {
            path: path.into(),
            reason: "manifest format 0 does not exist".into(),
        });
    }
    let family = v
        .get("family")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for from in found as u32..FORMAT {
        match from {
            1 => {
                if let Some(config) = v.get_mut("config") {
                    config_v1_to_v2(&family, config);
                }
            }
            _ => unreachable!("no migration from format {from}"),
        }
        v["format"] = json!(from + 1);
    }
    Ok(v)
}

/// Moves the keys of a format-1 config of `family` (a whole config or a partial one from a
/// config file) to format 2. Keys already in format 2 are left alone.
pub fn config_v1_to_v2(family: &str, config: &mut Value) {
    let Some(obj) = config.as_object_mut() else {
        return;
    };
    let (warmup_key, floor) = match family {
        "diffusion" => ("warmup_steps", None),
        "ar" => ("warmup", Some(0.1)),
        _ => ("warmup_steps", Some(0.05)),
    };
    let warmup = obj.remove(warmup_key);
    let ratio = obj.remove("min_lr_ratio");
    if warmup.is_none() && ratio.is_none() {
        return;
    }
    let schedule = obj
        .entry("schedule")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(schedule) = schedule else {
        return;
    };
    schedule.entry("decay").or_insert(json!("cosine"));
    if let Some(w) = warmup {
        schedule.insert("warmup_steps".into(), w);
    }
    match (ratio, floor) {
        (Some(r), _) => {
            schedule.insert("min_lr_ratio".into(), r);
        }
        (None, Some(f)) => {
            schedule.entry("min_lr_ratio").or_insert(json!(f));
        }
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_configs_move_their_schedule_keys() {
        let mut d = json!({"lr": 1.0, "warmup_steps": 7, "min_lr_ratio": 0.2});
        config_v1_to_v2("diffusion", &mut d);
        assert_eq!(
            d,
            json!({"lr": 1.0, "schedule": {"decay": "cosine", "warmup_steps": 7, "min_lr_ratio": 0.2}})
        );
        let mut a = json!({"warmup": 3});
        config_v1_to_v2("ar", &mut a);
        assert_eq!(
            a,
            json!({"schedule": {"decay": "cosine", "warmup_steps": 3, "min_lr_ratio": 0.1}})
        );
        let mut f = json!({"warmup_steps": 0, "lr": 2.0});
        config_v1_to_v2("gan", &mut f);
        assert_eq!(f["schedule"]["min_lr_ratio"], json!(0.05));
        // Format-2 keys stay as they are.
        let mut two = json!({"schedule": {"warmup_steps": 5}});
        config_v1_to_v2("ar", &mut two);
        assert_eq!(two, json!({"schedule": {"warmup_steps": 5}}));
    }

    #[test]
    fn newer_and_missing_formats_are_refused() {
        let p = Path::new("run");
        let e = manifest(json!({"format": FORMAT + 1, "oxgen_version": "9.9.9"}), p).unwrap_err();
        assert!(
            matches!(e, Error::NewerRun { found, supported, .. } if found == FORMAT + 1 && supported == FORMAT)
        );
        let text = e.to_string();
        assert!(text.contains("9.9.9") && text.contains(&format!("format {}", FORMAT + 1)));
        assert!(manifest(json!({"family": "ar"}), p).is_err());
        let v1 = json!({"format": 1, "family": "ar", "config": {"warmup": 2}});
        let v = manifest(v1, p).unwrap();
        assert_eq!(v["format"], json!(FORMAT));
        assert_eq!(v["config"]["schedule"]["warmup_steps"], json!(2));
    }
}
