//! The store layer (docs/storage.md): each aggregate's tables, owned by one
//! module here that the domain calls with typed arguments, so that SQL lives in
//! one place per table and a second database backend has one place to go.
//!
//! Moved here so far: blob metadata ([`blobs`]). The other aggregates still
//! keep their SQL beside their domain code, and move here one by one.

pub mod blobs;
pub mod copy;
mod postgres;
pub mod sql;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Tables the store owns so far, each with how SQL names it.
    const OWNED: &[(&str, &[&str])] = &[
        (
            "blobs",
            &["FROM blobs", "INTO blobs", "JOIN blobs", "UPDATE blobs"],
        ),
        ("blob_uploaders", &["blob_uploaders"]),
        ("record_blobs", &["record_blobs"]),
    ];

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn no_code_outside_the_store_names_a_table_it_owns() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let store = root.join("store");
        let mut found = Vec::new();
        for file in files.iter().filter(|f| !f.starts_with(&store)) {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (table, names) in OWNED {
                    if names.iter().any(|name| code.contains(name)) {
                        found.push(format!("{}:{}: {table}", file.display(), n + 1));
                    }
                }
            }
        }
        assert!(found.is_empty(), "SQL outside the store: {found:#?}");
        assert!(files.len() > 40, "the sources were found");
    }
}
