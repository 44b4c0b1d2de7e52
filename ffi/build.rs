//! Generates the C header from `ffi/src` with cbindgen into `$OUT_DIR/mosn_extension.h`.
//! `make build-l7` copies it to `build/output/`; `include/mosn_extension.h` is the
//! checked-in copy, and a test fails when the two differ.

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The shared library is loaded by name (`mosn_extension.so`, e.g. DT_NEEDED of the
    // nginx module) and must never be unmapped while its threads run.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,mosn_extension.so");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("mosn_extension.h");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml")).expect("cbindgen.toml");
    match cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate() {
        Ok(b) => {
            b.write_to_file(&out);
        }
        Err(e) => panic!("cbindgen failed: {e}"),
    }
}
