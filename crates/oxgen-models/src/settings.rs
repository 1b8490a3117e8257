//! Model configs: serde structs in which every field has a default.
//!
//! burn's `Config` derive gives builders but no serde defaults, so a field added later made
//! every saved config unreadable. `settings!` declares a config as a plain
//! struct with `#[serde(default)]`, a `Default` holding each field's default, and burn-style
//! `with_<field>` builders, so a config written before a field existed loads with that field's
//! default.

/// Declares a config struct: each field is `name: Type = default, builder_name;`.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty = $default:expr, $with:ident;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl $name {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                #[must_use]
                pub fn $with(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

pub(crate) use settings;

#[cfg(test)]
mod tests {
    use crate::ar::GptConfig;
    use crate::diffusion::mlp::MlpDenoiserConfig;
    use crate::flow::FlowConfig;

    #[test]
    fn missing_fields_take_their_defaults_and_unknown_ones_are_refused() {
        // A config saved before `rotary` and `dropout` existed.
        let old: GptConfig =
            serde_json::from_str(r#"{"vocab": 11, "context": 16, "layers": 2, "heads": 2, "width": 8, "tie_weights": true}"#)
                .unwrap();
        assert_eq!(
            old,
            GptConfig::new(11)
                .with_context(16)
                .with_layers(2)
                .with_heads(2)
                .with_width(8)
        );
        assert!(!old.rotary && old.dropout == 0.0);
        let flow: FlowConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(flow, FlowConfig::new());
        let e = serde_json::from_str::<MlpDenoiserConfig>(r#"{"hiden": 3}"#).unwrap_err();
        assert!(e.to_string().contains("hiden"), "{e}");
    }
}
