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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ar::{ArTrainConfig, CPU_TEXT_PRESET};
    use crate::trainer::duration_text;

    /// A text file gets nanoGPT's model on a GPU and the small preset on the CPU; the embedded
    /// languages keep their defaults everywhere; the log line names the preset.
    #[test]
    fn text_defaults_follow_the_device() {
        assert_eq!(Hardware::of(&Device::flex()), Hardware::Cpu);
        let (gpu, why) = ArTrainConfig::defaults_on("input.txt", Hardware::Gpu);
        assert_eq!(
            (gpu.model.layers, gpu.model.width, gpu.steps),
            (6, 384, 5000)
        );
        assert!(why.contains("gpu"));
        let (cpu, why) = ArTrainConfig::defaults_on("input.txt", Hardware::Cpu);
        let m = &cpu.model;
        assert_eq!((m.layers, m.heads, m.width, m.context), (4, 4, 128, 128));
        assert_eq!((cpu.steps, cpu.batch_size), (2000, 32));
        assert!(why.contains(CPU_TEXT_PRESET));
        for data in ["arithmetic", "digits8"] {
            let (c, _) = ArTrainConfig::defaults_on(data, Hardware::Cpu);
            assert_eq!(c, ArTrainConfig::defaults(data));
        }
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(duration_text(42.4), "42s");
        assert_eq!(duration_text(870.0), "14m30s");
        assert_eq!(duration_text(7500.0), "2h05m");
    }
}
