//! Device choice: wgpu adapters (Vulkan, Metal, DX12) or the CPU.
//!
//! `auto` takes the best hardware wgpu adapter (discrete, then integrated, then virtual GPU).
//! Software rasterisers such as lavapipe are used only when asked for by name (`wgpu`,
//! `vulkan`), because the CPU backend is faster than them for oxgen's models.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::wgpu::{WgpuBackend, wgpu};
use burn::tensor::{Device, DeviceKind};
use serde::Serialize;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// Best hardware wgpu adapter, else the CPU.
    #[default]
    Auto,
    /// Any wgpu adapter, software ones included.
    Wgpu,
    /// A Vulkan adapter.
    Vulkan,
    /// A Metal adapter.
    Metal,
    /// A DirectX 12 adapter.
    Dx12,
    /// The CPU (burn's Flex backend).
    Cpu,
    /// The CPU through burn's ndarray backend (OpenBLAS matmuls): for comparison only, in a build
    /// with the `ndarray` feature (`oxgen bench train --device ndarray`).
    NdArray,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "wgpu" | "gpu" => Self::Wgpu,
            "vulkan" => Self::Vulkan,
            "metal" => Self::Metal,
            "dx12" => Self::Dx12,
            "cpu" | "flex" => Self::Cpu,
            "ndarray" => Self::NdArray,
            other => {
                return Err(format!(
                    "unknown device `{other}`; expected auto, wgpu, vulkan, metal, dx12 or cpu"
                ));
            }
        })
    }
}

/// One wgpu adapter, as `oxgen info` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    /// Adapter name.
    pub name: String,
    /// Graphics API (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Bytes of workgroup (shared) memory a compute shader may use.
    pub workgroup_storage: u32,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// Subgroup sizes (min, max); (0, 0) when the adapter does not say.
    pub subgroup_sizes: (u32, u32),
    /// Whether compute shaders may use subgroup operations (wgpu's `SUBGROUP` feature).
    pub subgroups: bool,
    /// Whether `f16` is supported in shaders.
    pub shader_f16: bool,
    /// Whether 64-bit integers are supported in shaders (Philox's product uses them).
    pub shader_int64: bool,
    /// Largest storage buffer binding, bytes.
    pub max_storage_binding: u64,
    #[serde(skip)]
    kind: Option<(WgpuBackend, DeviceKind)>,
}

/// The device a run will use, with a line that says what it is.
#[derive(Clone, Debug)]
pub struct SelectedDevice {
    /// The burn device (without autodiff).
    pub device: Device,
    /// For logs: "wgpu: NVIDIA H200 (Vulkan)" or "cpu".
    pub description: String,
    /// Whether it is a wgpu device.
    pub is_wgpu: bool,
    /// The adapter's largest storage-buffer binding in bytes (0 for the CPU).
    pub max_storage_binding: u64,
}

fn api_of(b: wgpu::Backend) -> Option<WgpuBackend> {
    match b {
        wgpu::Backend::Vulkan => Some(WgpuBackend::Vulkan),
        wgpu::Backend::Metal => Some(WgpuBackend::Metal),
        wgpu::Backend::Dx12 => Some(WgpuBackend::Dx12),
        wgpu::Backend::Gl => Some(WgpuBackend::Gl),
        _ => None,
    }
}

/// Lists the wgpu adapters of every native API, in the order and numbering burn uses.
pub fn adapters() -> Vec<AdapterReport> {
    let mut out = Vec::new();
    for backends in [
        wgpu::Backends::VULKAN,
        wgpu::Backends::METAL,
        wgpu::Backends::DX12,
    ] {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let list = burn::tensor::read_sync(instance.enumerate_adapters(backends));
        let mut seen: Vec<wgpu::DeviceType> = Vec::new();
        for a in list {
            let info = a.get_info();
            let limits = a.limits();
            let index = seen.iter().filter(|t| **t == info.device_type).count();
            seen.push(info.device_type);
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => Some(DeviceKind::DiscreteGpu(index)),
                wgpu::DeviceType::IntegratedGpu => Some(DeviceKind::IntegratedGpu(index)),
                wgpu::DeviceType::VirtualGpu => Some(DeviceKind::VirtualGpu(index)),
                wgpu::DeviceType::Cpu => Some(DeviceKind::Cpu),
                wgpu::DeviceType::Other => None,
            };
            out.push(AdapterReport {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend),
                device_type: match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => "discrete GPU",
                    wgpu::DeviceType::IntegratedGpu => "integrated GPU",
                    wgpu::DeviceType::VirtualGpu => "virtual GPU",
                    wgpu::DeviceType::Cpu => "CPU (software)",
                    wgpu::DeviceType::Other => "other",
                }
                .into(),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                workgroup_storage: limits.max_compute_workgroup_storage_size,
                max_invocations: limits.max_compute_invocations_per_workgroup,
                subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
                subgroups: a.features().contains(wgpu::Features::SUBGROUP),
                shader_f16: a.features().contains(wgpu::Features::SHADER_F16),
                shader_int64: a.features().contains(wgpu::Features::SHADER_INT64),
                max_storage_binding: limits.max_storage_buffer_binding_size as u64,
                kind: api_of(info.backend).zip(kind),
            });
        }
    }
    out
}

pub(crate) fn rank(a: &AdapterReport) -> u8 {
    match a.kind.clone().map(|k| k.1) {
        Some(DeviceKind::DiscreteGpu(_)) => 0,
        Some(DeviceKind::IntegratedGpu(_)) => 1,
        Some(DeviceKind::VirtualGpu(_)) => 2,
        Some(DeviceKind::Cpu) => 3,
        _ => 4,
    }
}

fn wgpu_device(a: &AdapterReport) -> Result<Device, String> {
    let (api, kind) = a
        .kind
        .clone()
        .ok_or_else(|| format!("adapter {} cannot be opened by burn", a.name))?;
    Ok(Device::from(
        burn::backend::WgpuDevice::new(to_backend_kind(kind)).on(api),
    ))
}

fn to_backend_kind(k: DeviceKind) -> burn::backend::WgpuDeviceKind {
    use burn::backend::WgpuDeviceKind as K;
    match k {
        DeviceKind::DiscreteGpu(i) => K::DiscreteGpu(i),
        DeviceKind::IntegratedGpu(i) => K::IntegratedGpu(i),
        DeviceKind::VirtualGpu(i) => K::VirtualGpu(i),
        DeviceKind::Cpu => K::Cpu,
        _ => K::DefaultDevice,
    }
}

/// burn's ndarray CPU device, where this build has it.
fn ndarray() -> Result<SelectedDevice, String> {
    #[cfg(feature = "ndarray")]
    {
        Ok(SelectedDevice {
            device: Device::ndarray(),
            description: "cpu (burn ndarray backend, OpenBLAS)".into(),
            is_wgpu: false,
            max_storage_binding: 0,
        })
    }
    #[cfg(not(feature = "ndarray"))]
    {
        Err(
            "this oxgen was built without burn's ndarray backend; rebuild with \
             `--features oxgen-cli/ndarray` (needs OpenBLAS, e.g. Debian's libopenblas-dev)"
                .into(),
        )
    }
}

/// Resolves a choice to a device. `auto` without a hardware adapter falls back to the CPU and
/// says so in one log line; a named API without an adapter is an error.
pub fn select(choice: DeviceChoice) -> Result<SelectedDevice, String> {
    crate::register_kernels();
    let cpu = || SelectedDevice {
        device: Device::flex(),
        description: "cpu (burn Flex backend)".into(),
        is_wgpu: false,
        max_storage_binding: 0,
    };
    if choice == DeviceChoice::Cpu {
        return Ok(cpu());
    }
    if choice == DeviceChoice::NdArray {
        return ndarray();
    }
    let mut list = adapters();
    list.sort_by_key(rank);
    match list.iter().find(|a| wanted(choice, a)) {
        Some(a) => select_adapter(a),
        None if choice == DeviceChoice::Auto => {
            let why = if list.is_empty() {
                "no wgpu adapter found"
            } else {
                "only software wgpu adapters found"
            };
            tracing::warn!(
                "{why}; falling back to the CPU (use --device wgpu to force a software adapter)"
            );
            Ok(cpu())
        }
        None => Err(format!(
            "no {choice:?} adapter found (adapters: {}); try --device cpu",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.iter()
                    .map(|a| format!("{} [{}]", a.name, a.backend))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )),
    }
}

/// Whether `choice` takes adapter `a` (the first such in [`rank`] order is taken).
fn wanted(choice: DeviceChoice, a: &AdapterReport) -> bool {
    match choice {
        DeviceChoice::Auto => rank(a) <= 2,
        DeviceChoice::Wgpu => rank(a) <= 3,
        DeviceChoice::Vulkan => a.backend == "Vulkan" && rank(a) <= 3,
        DeviceChoice::Metal => a.backend == "Metal" && rank(a) <= 3,
        DeviceChoice::Dx12 => a.backend == "Dx12" && rank(a) <= 3,
        DeviceChoice::Cpu | DeviceChoice::NdArray => false,
    }
}

/// A second burn client beside [`select`]'s device for a wgpu `choice`: burn's default device on
/// the API of the adapter `select` picks. burn opens it under another id (on the same adapter
/// where it is that API's default, as lavapipe is on a machine without a GPU), so it has its own
/// memory and its own queue thread: two devices on one adapter, for tests.
pub fn second_client(choice: DeviceChoice) -> Result<Device, String> {
    let mut list = adapters();
    list.sort_by_key(rank);
    let (api, _) = list
        .iter()
        .find(|a| wanted(choice, a))
        .and_then(|a| a.kind.clone())
        .ok_or_else(|| format!("no {choice:?} adapter that burn can open"))?;
    crate::register_kernels();
    Ok(Device::from(
        burn::backend::WgpuDevice::new(burn::backend::WgpuDeviceKind::DefaultDevice).on(api),
    ))
}

/// Opens adapter `a` as a burn device.
pub(crate) fn select_adapter(a: &AdapterReport) -> Result<SelectedDevice, String> {
    // Noted for kernels whose loops could pass llvmpipe's per-invocation limit.
    let software = matches!(a.kind, Some((_, DeviceKind::Cpu))) || a.name.contains("llvmpipe");
    if software {
        SOFTWARE_SELECTED.store(true, Ordering::Relaxed);
    }
    Ok(SelectedDevice {
        device: wgpu_device(a)?,
        description: format!("wgpu: {} ({}, {})", a.name, a.backend, a.device_type),
        is_wgpu: true,
        max_storage_binding: a.max_storage_binding,
    })
}

static SOFTWARE_SELECTED: AtomicBool = AtomicBool::new(false);

/// Whether [`select`] last chose a software (CPU) wgpu adapter such as lavapipe (llvmpipe),
/// which silently ends a shader invocation after 65,535 loop iterations in total.
pub fn software_selected() -> bool {
    SOFTWARE_SELECTED.load(Ordering::Relaxed)
}

/// Whether the wgpu adapter behind kernels may be a software one (lavapipe/llvmpipe): the one
/// [`select`] chose, or, for a device the program made itself, any machine whose adapters are
/// all software. Kernels whose loops could pass llvmpipe's per-invocation limit check it.
pub fn maybe_software() -> bool {
    static ONLY_SOFTWARE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    software_selected()
        || *ONLY_SOFTWARE.get_or_init(|| {
            adapters()
                .iter()
                .all(|a| rank(a) >= 3 || a.name.contains("llvmpipe"))
        })
}

/// Whether `device` (autodiff or not) is a wgpu device.
pub fn is_wgpu(device: &Device) -> bool {
    use burn::backend::{CubeDevice, DispatchDevice};
    let d = device.clone().without_autodiff();
    matches!(d.as_dispatch(), DispatchDevice::Cube(CubeDevice::Wgpu(_)))
}
