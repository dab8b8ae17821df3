//! The committed `include/tether.h` must be exactly what cbindgen generates now, and
//! its version macros must match the crate's version.
//!
//! Regenerate after changing the API: `TETHER_BLESS=1 cargo test -p tether-ffi --test header`.

use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    crate_dir().join("../../include/tether.h")
}

fn generate() -> String {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn committed_header_is_up_to_date() {
    let fresh = generate();
    let path = header_path();
    if std::env::var_os("TETHER_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/tether.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        panic!(
            "{} differs from a fresh cbindgen generation (first difference at line {}).\n\
             Regenerate it: TETHER_BLESS=1 cargo test -p tether-ffi --test header",
            Path::new("include/tether.h").display(),
            first + 1
        );
    }
}

fn macro_value(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("#define ")?;
            let (n, v) = rest.split_once(' ')?;
            (n == name).then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("{name} is not defined in the header"))
}

#[test]
fn version_macros_match_the_crate_version() {
    let header = std::fs::read_to_string(header_path()).expect("include/tether.h");
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split(['.', '-']);
    assert_eq!(
        macro_value(&header, "TETHER_VERSION_MAJOR"),
        parts.next().unwrap()
    );
    assert_eq!(
        macro_value(&header, "TETHER_VERSION_MINOR"),
        parts.next().unwrap()
    );
    assert_eq!(
        macro_value(&header, "TETHER_VERSION_PATCH"),
        parts.next().unwrap()
    );
    assert_eq!(macro_value(&header, "TETHER_VERSION_STRING"), v);
    // (`tether_version()` itself is checked by a unit test in src/lib.rs: the crate is
    // built as cdylib + staticlib only, so integration tests cannot link it.)
}
