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
    "mail",
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

/// `src/auth/`'s modules, one per file (`login`, `keys::tokens`; a folder's
/// `mod.rs` is the folder), and for each the others it names by path:
/// `crate::auth::a::b` (also inside a brace group), `super::b` from a file
/// in a folder, or `b::` from a folder's `mod.rs` to its own files. Items
/// re-exported at `crate::auth` itself (`Auth`, `ApiError`, …) name no
/// module: `auth/mod.rs`, the service every flow is a method of, is above
/// them all. A file's own tests are not read.
fn auth_imports() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let auth = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/auth");
    let mut files = Vec::new();
    rust_files(&auth, &mut files);
    let module_of = |file: &Path| -> String {
        let relative = file.strip_prefix(&auth).expect("under src/auth");
        let parts: Vec<&str> = relative
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .map(|part| part.trim_end_matches(".rs"))
            .filter(|part| *part != "mod")
            .collect();
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut imports = std::collections::BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        if module.is_empty() {
            continue; // auth/mod.rs: the service itself, above every module
        }
        let text = std::fs::read_to_string(file).expect("read");
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let folder = match module.rsplit_once("::") {
            Some((folder, _)) => format!("{folder}::"),
            None => String::new(),
        };
        let mut named = BTreeSet::new();
        // Paths from where each is read: `crate::auth::`, `super::` in a
        // folder, and, in a folder's `mod.rs`, a bare `child::`.
        let mut paths: Vec<(String, String)> = Vec::new();
        let mut starts: Vec<(&str, String)> = vec![("crate::auth::", String::new())];
        if !folder.is_empty() {
            starts.push(("super::", folder.clone()));
        }
        let is_folder = file.ends_with("mod.rs");
        for (prefix, base) in &starts {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                // `crate::auth::{a::b, c}`: each path of the group.
                let group: Vec<&str> = match rest.strip_prefix('{') {
                    Some(inner) => inner
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .collect(),
                    None => vec![rest],
                };
                for path in group {
                    paths.push((base.clone(), path.trim().to_owned()));
                }
            }
        }
        if is_folder {
            let own = format!("{module}::");
            for child in modules.iter().filter_map(|m| m.strip_prefix(&own)) {
                let bare = format!("{child}::");
                for (at, _) in text.match_indices(&bare) {
                    let before = text[..at].chars().next_back();
                    if before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                        paths.push((own.clone(), text[at..].to_owned()));
                    }
                }
            }
        }
        for (base, rest) in paths {
            {
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                // The longest module the path names: `keys::tokens::KeySet`
                // names `keys::tokens`.
                let mut candidate = format!("{base}{}", path.trim_end_matches(':'));
                loop {
                    if modules.contains(&candidate) {
                        if candidate != module {
                            named.insert(candidate);
                        }
                        break;
                    }
                    match candidate.rsplit_once("::") {
                        Some((shorter, _)) => candidate = shorter.to_owned(),
                        None => break,
                    }
                }
            }
        }
        imports.insert(module, named);
    }
    imports
}

#[test]
fn the_auth_modules_import_one_another_without_a_cycle() {
    let imports = auth_imports();
    assert!(imports.len() > 25, "{imports:?}");
    assert!(
        imports["keys::ring"].contains("keys::key_set")
            && imports["credentials"].contains("credentials::throttle"),
        "paths are read: {imports:?}"
    );
    // Depth-first, remembering the path: a module met again on it closes a cycle.
    fn visit(
        module: &str,
        imports: &std::collections::BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            cycles.push(cycle.join(" → "));
            return;
        }
        if !done.insert(module.to_owned()) {
            return;
        }
        path.push(module.to_owned());
        for next in imports.get(module).into_iter().flatten() {
            visit(next, imports, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for module in imports.keys() {
        visit(module, &imports, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles in src/auth: {cycles:#?}");
}
