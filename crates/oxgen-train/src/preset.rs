//! Defaults sized to the device: a run started without a config finishes in minutes on a
//! laptop CPU and uses a GPU's width where there is one. Each family's `defaults_on` takes the
//! [`Hardware`] and says which preset it chose and why in one log line.

use burn::tensor::Device;

/// What a default run is sized for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hardware {
    /// The CPU backend (or a software GPU adapter such as lavapipe).
    Cpu,
    /// A hardware GPU.
    Gpu,
}

impl Hardware {
    /// The CPU for burn's Flex (or NdArray) devices; a GPU for every other.
    pub fn of(device: &Device) -> Self {
        use burn::backend::DispatchDevice;
        let d = device.clone().without_autodiff();
        match d.as_dispatch() {
            DispatchDevice::Flex(_) => Self::Cpu,
            _ => Self::Gpu,
        }
    }
}
