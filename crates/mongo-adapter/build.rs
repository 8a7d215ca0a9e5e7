//! Embeds every migration (`migrations/master/NNNN_*.json` and `migrations/tenant/NNNN_*.json`
//! at the workspace root) into the crate, in version order.

use std::fmt::Write as _;
use std::path::PathBuf;

fn embed(kind: &str) {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("../../migrations").join(kind);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read migrations/{kind}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut code = String::from("&[\n");
    for path in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_stem().expect("file name").to_string_lossy().into_owned();
        let path = path.canonicalize().expect("canonical path");
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string()).expect("write");
    }
    code.push(']');
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir")).join(format!("{kind}_migrations.rs"));
    std::fs::write(out, code).expect("write the embedded migrations");
}

fn main() {
    embed("master");
    embed("tenant");
}
