//! Link settings for the shared library: export only the `tether_*` symbols.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tether.map");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os == "freebsd" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/tether.map");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtether.so.0");
    }
}
