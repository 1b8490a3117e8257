//! Several devices for data-parallel training: `--devices wgpu:0,wgpu:1`, `cpu:0,cpu:1` or
//! `all`.
//!
//! - `wgpu:N` is the N-th wgpu adapter in the order [`crate::device::select`] ranks them
//!   (discrete, integrated, virtual, then software), as `oxgen info` lists them.
//! - `cpu:N` is a replica on the CPU: burn's CPU backend has one device, so `cpu:0,cpu:1` are
//!   two replicas on it, each on its own thread (N must be below the machine's core count).
//! - `all` is every hardware adapter, or the CPU alone where there is none.

use burn::tensor::Device;

use crate::device::{SelectedDevice, adapters, select_adapter};

/// What is wrong with a `--devices` list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DevicesError {
    /// Nothing listed.
    #[error("--devices lists no device; give e.g. wgpu:0,wgpu:1, cpu:0,cpu:1 or all")]
    Empty,
    /// An entry that is not `wgpu:N`, `cpu:N` or `all`.
    #[error("unknown device `{entry}` in --devices: {why}")]
    Unknown {
        /// The entry.
        entry: String,
        /// Why (what exists).
        why: String,
    },
    /// The same device twice.
    #[error("device `{0}` is listed twice in --devices")]
    Twice(String),
    /// CPU replicas and wgpu adapters together.
    #[error("--devices mixes the CPU and wgpu adapters ({0}); list devices of one kind")]
    Mixed(String),
}

/// One entry of a `--devices` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceId {
    /// A CPU replica.
    Cpu(usize),
    /// The N-th wgpu adapter.
    Wgpu(usize),
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceId::Cpu(i) => write!(f, "cpu:{i}"),
            DeviceId::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

/// Parses a `--devices` list (without looking at the machine; `all` is `None`).
pub fn parse(spec: &str) -> Result<Option<Vec<DeviceId>>, DevicesError> {
    let entries: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(DevicesError::Empty);
    }
    if entries.len() == 1 && entries[0].eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let mut ids: Vec<DeviceId> = Vec::new();
    for e in entries {
        let unknown = |why: &str| DevicesError::Unknown {
            entry: e.to_string(),
            why: why.to_string(),
        };
        let (kind, index) = e
            .split_once(':')
            .ok_or_else(|| unknown("expected wgpu:N or cpu:N (or `all` alone)"))?;
        let index: usize = index
            .parse()
            .map_err(|_| unknown("the index after `:` must be a number"))?;
        let id = match kind.to_ascii_lowercase().as_str() {
            "cpu" => DeviceId::Cpu(index),
            "wgpu" | "gpu" => DeviceId::Wgpu(index),
            _ => return Err(unknown("the kinds are wgpu and cpu")),
        };
        if ids.contains(&id) {
            return Err(DevicesError::Twice(id.to_string()));
        }
        ids.push(id);
    }
    let cpus = ids.iter().filter(|i| matches!(i, DeviceId::Cpu(_))).count();
    if cpus > 0 && cpus < ids.len() {
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        return Err(DevicesError::Mixed(list.join(",")));
    }
    Ok(Some(ids))
}

/// The devices a `--devices` list names on this machine, each with its name (`wgpu:1`).
pub fn select_many(spec: &str) -> Result<Vec<(String, SelectedDevice)>, DevicesError> {
    crate::register_kernels();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = |i: usize| {
        (
            format!("cpu:{i}"),
            SelectedDevice {
                device: Device::flex(),
                description: format!("cpu replica {i} (burn Flex backend)"),
                is_wgpu: false,
                max_storage_binding: 0,
            },
        )
    };
    let list = adapters_ranked();
    let ids = match parse(spec)? {
        Some(ids) => ids,
        None => {
            let hardware: Vec<DeviceId> = list
                .iter()
                .enumerate()
                .filter(|(_, (hw, _))| *hw)
                .map(|(i, _)| DeviceId::Wgpu(i))
                .collect();
            if hardware.is_empty() {
                tracing::info!("--devices all: no hardware GPU adapter; training on the CPU");
                vec![DeviceId::Cpu(0)]
            } else {
                hardware
            }
        }
    };
    ids.into_iter()
        .map(|id| match id {
            DeviceId::Cpu(i) if i < cores => Ok(cpu(i)),
            DeviceId::Cpu(_) => Err(DevicesError::Unknown {
                entry: id.to_string(),
                why: format!("this machine has {cores} cores, cpu:0 to cpu:{}", cores - 1),
            }),
            DeviceId::Wgpu(i) => match list.get(i) {
                Some((_, a)) => select_adapter(a)
                    .map(|d| (id.to_string(), d))
                    .map_err(|why| DevicesError::Unknown {
                        entry: id.to_string(),
                        why,
                    }),
                None => Err(DevicesError::Unknown {
                    entry: id.to_string(),
                    why: match list.len() {
                        0 => "this machine has no wgpu adapter".into(),
                        n => format!(
                            "this machine has {n} wgpu adapter{} (wgpu:0 to wgpu:{}; `oxgen info` lists them)",
                            if n == 1 { "" } else { "s" },
                            n - 1
                        ),
                    },
                }),
            },
        })
        .collect()
}

/// Adapters in rank order, each with whether it is hardware.
fn adapters_ranked() -> Vec<(bool, crate::device::AdapterReport)> {
    let mut list = adapters();
    list.sort_by_key(crate::device::rank);
    list.into_iter()
        .filter(|a| crate::device::rank(a) <= 3)
        .map(|a| (crate::device::rank(&a) <= 2, a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse("wgpu:0, wgpu:1").unwrap(),
            Some(vec![DeviceId::Wgpu(0), DeviceId::Wgpu(1)])
        );
        assert_eq!(parse("all").unwrap(), None);
        assert_eq!(parse("cpu:0,cpu:1").unwrap().unwrap().len(), 2);
        assert_eq!(parse(""), Err(DevicesError::Empty));
        assert_eq!(
            parse("cpu:1,cpu:1"),
            Err(DevicesError::Twice("cpu:1".into()))
        );
        assert!(matches!(parse("tpu:0"), Err(DevicesError::Unknown { .. })));
        assert!(matches!(parse("wgpu:x"), Err(DevicesError::Unknown { .. })));
        assert!(matches!(
            parse("cpu:0,all"),
            Err(DevicesError::Unknown { .. })
        ));
        assert!(matches!(parse("cpu:0,wgpu:0"), Err(DevicesError::Mixed(_))));
    }

    #[test]
    fn a_device_past_the_machine_is_unknown() {
        let err = select_many("cpu:0,cpu:100000").err().unwrap();
        assert!(matches!(err, DevicesError::Unknown { ref entry, .. } if entry == "cpu:100000"));
        let err = select_many("wgpu:0,wgpu:999").err().unwrap();
        assert!(matches!(err, DevicesError::Unknown { ref entry, .. } if entry == "wgpu:999"));
        assert_eq!(select_many("cpu:0,cpu:1").unwrap().len(), 2);
    }
}
