//! Keeps the graphics stack's probing quiet on a machine without a desktop session.
//!
//! Mesa installs an implicit Vulkan layer, device-select, that asks the Wayland compositor for
//! the display's GPU whenever a Vulkan instance lists its devices. Without `XDG_RUNTIME_DIR` (a
//! headless server, a container, CI) libwayland then prints `error: XDG_RUNTIME_DIR is invalid
//! or not set in the environment.` once per instance: two or three lines before oxgen's first,
//! which read like a failure of oxgen. There is no display to pick a GPU for there, so the layer
//! is switched off with its own switch, `NODEVICE_SELECT=1`, unless the user set that variable
//! either way. With a desktop session nothing changes.

use std::path::Path;

/// The variable Mesa's device-select layer reads to stand aside.
pub(crate) const NODEVICE_SELECT: &str = "NODEVICE_SELECT";

/// Whether the layer should be switched off: no usable `XDG_RUNTIME_DIR` and no
/// `NODEVICE_SELECT` of the user's.
pub(crate) fn wants_quiet(runtime_dir: Option<&Path>, user_set: bool) -> bool {
    !user_set && !runtime_dir.is_some_and(Path::is_dir)
}

/// Switches the device-select layer off where it would print its error (see the module docs).
/// Call it first in `main`, before any thread exists. Returns whether it did.
pub(crate) fn quiet_device_select() -> bool {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR");
    let user_set = std::env::var_os(NODEVICE_SELECT).is_some();
    if !wants_quiet(runtime_dir.as_deref().map(Path::new), user_set) {
        return false;
    }
    // SAFETY: `main` calls this before it starts any thread (the allocator option before it
    // starts none either), so nothing reads the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(NODEVICE_SELECT, "1");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_without_a_runtime_dir_and_without_the_users_choice() {
        let tmp = std::env::temp_dir();
        assert!(wants_quiet(None, false));
        assert!(wants_quiet(Some(Path::new("/no/such/dir/oxgen")), false));
        assert!(!wants_quiet(Some(&tmp), false));
        assert!(!wants_quiet(None, true));
    }
}
