//! The checked-in C header must equal the one cbindgen generates from ffi/src.

#[test]
fn checked_in_header_is_current() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let generated = std::fs::read_dir(format!("{root}/target"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|profile| std::fs::read_dir(profile.path().join("build")).into_iter().flatten().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with("mosn-extension-ffi-"))
        .map(|e| e.path().join("out/mosn_extension.h"))
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let generated = generated.expect("cbindgen output not found (build first)");
    let want = std::fs::read_to_string(&generated).unwrap();
    let have = std::fs::read_to_string(format!("{root}/include/mosn_extension.h")).unwrap();
    assert!(
        want == have,
        "include/mosn_extension.h differs from {}: run `make build-l7 && cp build/output/mosn_extension.h include/`",
        generated.display()
    );
}
