//! What the binding tests share: the built library, binding generation, and the tools a
//! binding test needs (a Kotlin compiler, JNA), found where the test command installs them.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The built cdylib. `cargo test` builds it into `deps/` beside the `uniffi-bindgen` binary's
/// directory (only `cargo build` copies it up beside the binary), so look in both and take
/// the newer.
pub fn library() -> PathBuf {
    let bindgen = Path::new(env!("CARGO_BIN_EXE_uniffi-bindgen"));
    let dir = bindgen.parent().expect("binary has a directory");
    let name = format!(
        "{}suiji_uniffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [dir.join("deps").join(&name), dir.join(&name)]
        .into_iter()
        .filter_map(|p| {
            let modified = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((modified, p))
        })
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("cdylib {name} not built under {}", dir.display()))
}

/// Generates the `language` bindings into `out` with this crate's `uniffi-bindgen`.
pub fn generate(language: &str, out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args(["generate", "--library"])
        .arg(library())
        .args(["--language", language, "--no-format", "--out-dir"])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run uniffi-bindgen");
    assert!(
        output.status.success(),
        "uniffi-bindgen {language} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A tool a binding test needs: the path in environment variable `var` (the test command,
/// `scripts/test`, installs the tools and sets it), else `fallback` if it exists. `None` when
/// neither: the caller then skips, saying so, unless `SUIJI_BINDING_TOOLS=required` (which the
/// test command sets, so that a missing tool fails there instead of passing unseen).
pub fn tool(var: &str, fallback: &str) -> Option<PathBuf> {
    let found = std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(fallback)))
        .filter(|p| p.exists());
    if found.is_none() && std::env::var("SUIJI_BINDING_TOOLS").as_deref() == Ok("required") {
        panic!("{var} is not set and {fallback} does not exist; scripts/test installs it");
    }
    found
}
