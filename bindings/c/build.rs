//! Link settings for the shared library: export only the `tether_*` symbols.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=tether.map");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os == "freebsd" {
        // The linker wants the version script by path. A copy in OUT_DIR (inside the
        // target directory) stays valid when a target directory is shared by clones at
        // other paths, where a path into the source tree would point at a stale clone.
        let out = std::env::var("OUT_DIR").unwrap_or_default();
        let map = format!("{out}/tether.map");
        if let Err(e) = std::fs::write(&map, include_str!("tether.map")) {
            panic!("cannot write {map}: {e}");
        }
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtether.so.0");
    }
}
