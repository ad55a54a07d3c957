//! The uniffi bindings generator, built against this workspace's uniffi version.

fn main() {
    uniffi::uniffi_bindgen_main()
}
