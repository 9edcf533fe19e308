//! The layering README "Layout" promises: each top-level module of `src/`
//! imports only from modules below it, so there is no import cycle.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom first: a module may import from the ones before it in this list.
const LAYERS: &[&str] = &[
    "clock",
    "random",
    "config",
    "dev_secrets",
    "store",
    "auth",
    "routes",
    "tls",
    "server",
    "run",
    "cli",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_imports_only_from_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs").to_owned())
            .expect("a name");
        if top == "lib" || top == "main" {
            continue;
        }
        let level = LAYERS
            .iter()
            .position(|l| *l == top)
            .unwrap_or_else(|| panic!("src/{top} is in no layer of LAYERS"));
        let text = std::fs::read_to_string(&file).expect("read");
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            match LAYERS.iter().position(|l| *l == name) {
                Some(other) if other > level => {
                    upward.insert(format!("{} imports crate::{name}", relative.display()));
                }
                // Its own layer, a lower one, or an item of the crate root.
                _ => {}
            }
        }
    }
    assert!(upward.is_empty(), "imports from a layer above: {upward:#?}");
}
