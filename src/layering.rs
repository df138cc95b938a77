//! The crate's layers, lowest first: a module may import (`crate::…`) only modules of a lower
//! layer, never one of its own layer or above. This keeps the module graph acyclic, and the
//! test below reads every `use crate::` of `src/` so that the next cycle fails CI, not review.
//! [`crate`]'s documentation shows the same table; a test keeps the two equal.

/// `(layer, modules)`, lowest first. A new top-level module must be placed here.
pub const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &["audit", "clock", "diagnostic", "live", "logging", "tls"],
    ),
    ("domain words", &["model"]),
    ("domain records", &["auth", "resource"]),
    ("settings", &["config"]),
    ("rules", &["policy"]),
    ("infrastructure", &["metrics", "oidc", "store"]),
    ("events", &["webhook"]),
    ("services", &["inventory", "leader", "lease"]),
    ("spend and deletion", &["cost", "reaper"]),
    ("consumers of a pass", &["canary", "iam", "mail"]),
    ("task runner", &["tasks"]),
    ("schedulers", &["jobs", "scheduler"]),
    ("API", &["http"]),
    ("wiring", &["daemon"]),
    ("command line", &["cli"]),
];

/// The layer of a top-level module, if it has one.
pub fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::*;

    fn src_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The module path of a file below `src/`: `tasks.rs` → `[tasks]`, `reaper/aws/mod.rs` →
    /// `[reaper, aws]`.
    fn module_path(rel: &Path) -> Vec<String> {
        let mut parts: Vec<String> = rel
            .iter()
            .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        parts
    }

    /// Source without line comments (doc links such as [`crate::iam`] are not imports).
    fn code_of(text: &str) -> String {
        text.lines()
            .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn ident_at(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// The first segments of the paths in `{a::b, c, d::{e, f}}` (given without the braces).
    fn group_heads(group: &str) -> Vec<&str> {
        let (mut depth, mut start, mut heads) = (0usize, 0usize, Vec::new());
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    heads.push(ident_at(group[start..i].trim()));
                    start = i + 1;
                }
                _ => {}
            }
        }
        heads.push(ident_at(group[start..].trim()));
        heads.into_iter().filter(|h| !h.is_empty()).collect()
    }

    /// The top-level modules `code` names through `crate::` (and `super::` chains that climb
    /// to the crate root from a file `depth` modules deep).
    fn imports(
        code: &str,
        depth: usize,
        top: &str,
        own_children: &BTreeSet<String>,
    ) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        for (i, _) in code.match_indices("crate::") {
            if code[..i].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let end = group
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(group.len(), |(j, _)| j);
                found.extend(group_heads(&group[..end]).into_iter().map(str::to_owned));
            } else {
                found.insert(ident_at(rest).to_owned());
            }
        }
        for (i, _) in code.match_indices("super::") {
            if code[..i].ends_with("super::") || code[..i].chars().next_back().is_some_and(is_ident)
            {
                continue;
            }
            let mut rest = &code[i..];
            let mut climbs = 0;
            while let Some(r) = rest.strip_prefix("super::") {
                climbs += 1;
                rest = r;
            }
            let name = ident_at(rest);
            if climbs >= depth
                && layer_of(name).is_some()
                && name != top
                && !own_children.contains(name)
            {
                found.insert(name.to_owned());
            }
        }
        found.remove(top);
        found.remove("self");
        found
    }

    /// Every import of every file, as `(importer, imported) → files`.
    fn graph(declared: &BTreeSet<&str>) -> BTreeMap<(String, String), BTreeSet<String>> {
        let src = src_dir();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for f in files {
            let rel = f.strip_prefix(&src).expect("below src").to_path_buf();
            let path = module_path(&rel);
            let top = path[0].clone();
            // This file's own fixtures are strings, not imports.
            if ["main", "lib", "layering"].contains(&top.as_str()) {
                continue;
            }
            let children: BTreeSet<String> = std::fs::read_dir(src.join(&top))
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| {
                            e.path()
                                .file_stem()
                                .map(|s| s.to_string_lossy().into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = std::fs::read_to_string(&f).expect("readable source");
            for imported in imports(&code_of(&text), path.len(), &top, &children) {
                // Items of the crate root that are no module (`error_chain`) belong to no layer.
                if !declared.contains(imported.as_str()) {
                    continue;
                }
                edges
                    .entry((top.clone(), imported))
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
        edges
    }

    #[test]
    fn every_module_has_a_layer_and_every_import_goes_down() {
        let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
        let declared: BTreeSet<&str> = lib
            .lines()
            .filter_map(|l| {
                l.strip_prefix("pub mod ")
                    .or_else(|| l.strip_prefix("mod "))
            })
            .map(|l| l.trim_end_matches(';'))
            .filter(|m| *m != "layering")
            .collect();
        let placed: BTreeSet<&str> = LAYERS
            .iter()
            .flat_map(|(_, ms)| ms.iter().copied())
            .collect();
        assert_eq!(
            declared, placed,
            "every module of lib.rs in exactly one layer"
        );
        assert_eq!(
            placed.len(),
            LAYERS.iter().map(|(_, ms)| ms.len()).sum::<usize>(),
            "a module in two layers"
        );

        let mut wrong = Vec::new();
        for ((from, to), files) in graph(&declared) {
            let (Some(lf), Some(lt)) = (layer_of(&from), layer_of(&to)) else {
                wrong.push(format!("{from} → {to}: not a layered module ({files:?})"));
                continue;
            };
            if lt >= lf {
                wrong.push(format!(
                    "{from} ({}) imports {to} ({}) in {files:?}",
                    LAYERS[lf].0, LAYERS[lt].0
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layering:\n{}",
            wrong.join("\n")
        );
    }

    /// The layering test would miss what it cannot parse: check it on the shapes it must see.
    #[test]
    fn the_parser_sees_every_shape_of_import() {
        let none = BTreeSet::new();
        let code = code_of(
            "use crate::store::Store;\n\
             use crate::{config::Config, model::{LeaseId, Tags}, error_chain};\n\
             let x = crate::mail::Mailer::new();\n\
             // use crate::http::Thing;\n\
             /// [`crate::daemon`]\n\
             use super::tasks::Tasks;\n\
             my_crate::cli::x();\n",
        );
        let got = imports(&code, 1, "reaper", &none);
        let want: BTreeSet<String> = ["store", "config", "model", "error_chain", "mail", "tasks"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want);
        // `super::` that stays inside the module, and a child named like a top-level module.
        let code = "use super::super::plan::Plan;\nuse super::iam::x;";
        let children: BTreeSet<String> = ["iam".to_owned()].into();
        assert!(imports(code, 2, "reaper", &children).is_empty());
    }

    #[test]
    fn the_crate_docs_show_these_layers() {
        let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs");
        for (i, (name, modules)) in LAYERS.iter().enumerate() {
            let row = format!(
                "//! | {i} | {name} | {} |",
                modules
                    .iter()
                    .map(|m| format!("[`{m}`]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert!(lib.contains(&row), "lib.rs lacks the layer row `{row}`");
        }
    }
}
