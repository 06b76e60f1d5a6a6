//! The layers of docs/architecture.md, kept true: every `crate::` path in
//! `src/` (imports, paths in code, intra-doc links) names a module of a
//! lower layer than the file's own, or the file's own module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of the library and its rank: a module may name
/// only modules of a lower rank. The layers of docs/architecture.md, with
/// an order inside each where one module builds on another.
const RANKS: &[(&str, u8)] = &[
    // 0. Foundations: no I/O of the agent's own, nothing above.
    ("util", 0),
    ("shutdown", 0),
    ("logs", 0),
    ("parse", 1),
    ("tls", 1),
    ("slots", 2),
    // 1. Settings and data.
    ("config", 3),
    ("model", 4),
    // 2. Collectors: Redis I/O.
    ("client", 5),
    ("collect", 6),
    ("canary", 6),
    ("supervise", 7),
    // 3. The monitor.
    ("monitor", 8),
    // 4. Outputs: read snapshots only.
    ("store", 9),
    ("notify", 9),
    ("metrics", 10),
    ("web", 10),
    ("ui", 10),
    ("http", 11),
    ("healthcheck", 11),
];

/// The top-level module a file of `src/` belongs to; `None` for the crate
/// root and the binary.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Every `crate::<module>` named in `text`, with its line.
fn named(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            // `redis_ha_exporter::` paths end in `crate::` too: only the
            // crate's own `crate::` counts.
            let own =
                i == 0 || !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if own && end > 0 {
                out.push((n + 1, after[..end].to_string()));
            }
            rest = &after[end..];
        }
    }
    out
}

/// Every import against the layers in the tree at `src`, as messages.
fn violations(src: &Path) -> Vec<String> {
    let ranks: BTreeMap<&str, u8> = RANKS.iter().copied().collect();
    let mut out = Vec::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("under src").to_path_buf();
        let Some(own) = module_of(&rel) else {
            continue;
        };
        let Some(&own_rank) = ranks.get(own.as_str()) else {
            out.push(format!("{}: module `{own}` has no layer in RANKS (tests/layers.rs) and docs/architecture.md", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        for (line, target) in named(&text) {
            if target == own {
                continue;
            }
            match ranks.get(target.as_str()) {
                Some(&rank) if rank < own_rank => {}
                Some(&rank) => out.push(format!(
                    "{}:{line}: `{own}` (layer rank {own_rank}) names `crate::{target}` (rank {rank}): imports go down only",
                    rel.display()
                )),
                None => out.push(format!(
                    "{}:{line}: `crate::{target}` is not a module with a layer",
                    rel.display()
                )),
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn imports_go_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_root_has_a_layer_and_the_doc_lists_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("doc");
    let layers = doc
        .split("## Layers")
        .nth(1)
        .expect("docs/architecture.md has a Layers section");
    for module in lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
    {
        assert!(
            RANKS.iter().any(|(m, _)| *m == module),
            "src/lib.rs declares `{module}`, which has no rank in RANKS"
        );
        assert!(
            layers.contains(&format!("`{module}`")),
            "docs/architecture.md, Layers, does not place `{module}`"
        );
    }
}

/// The check itself catches what it is for: a lower layer naming a higher
/// one, in an import and in a path, but not its own module or a lower one.
#[test]
fn a_back_import_is_caught() {
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(
        dir.join("model/mod.rs"),
        "use crate::config::Kind;\nuse crate::model::timeline;\nuse crate::monitor::Monitor;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("parse.rs"),
        "fn f() { let _ = crate::http::router; }\n// redis_ha_exporter::monitor is not crate::\n",
    )
    .unwrap();
    std::fs::write(dir.join("monitor.rs"), "use crate::model::Input;\n").unwrap();
    let found = violations(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("model/mod.rs:3:") && found[0].contains("crate::monitor"));
    assert!(found[1].starts_with("parse.rs:1:") && found[1].contains("crate::http"));
}
