//! The docs hold together: every relative link in README.md and docs/*.md names a file that
//! exists, and every `#anchor` in one names a heading (GitHub's slug) or an `<a name>` of the
//! page it points at. A section moved between pages cannot leave a dead link behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// GitHub's heading anchor: lowercase, punctuation other than `-` and `_` dropped, spaces to
/// `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a markdown page offers.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        if let Some(h) = line.trim_start_matches('#').strip_prefix(' ')
            && line.starts_with('#')
        {
            out.insert(slug(h));
        }
        for part in line.split("<a name=\"").skip(1) {
            if let Some((name, _)) = part.split_once('"') {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// `(target, line)` of every markdown link outside code fences.
fn links(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        for part in line.split("](").skip(1) {
            if let Some((target, _)) = part.split_once(')') {
                out.push((target.to_owned(), n + 1));
            }
        }
    }
    out
}

/// The dead links of `page` (relative to the repository root).
fn dead_links(page: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(page)).expect("page readable");
    let dir = page.parent().unwrap_or(Path::new(""));
    let mut dead = Vec::new();
    for (target, line) in links(&text) {
        if target.starts_with("http://")
            || target.starts_with("https://")
            || target.starts_with("mailto:")
        {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
        let file_path = if file.is_empty() {
            page.to_path_buf()
        } else {
            dir.join(file)
        };
        let full = root().join(&file_path);
        if !full.exists() {
            dead.push(format!(
                "{}:{line}: `{target}`: no file {}",
                page.display(),
                file_path.display()
            ));
            continue;
        }
        if !anchor.is_empty() {
            let target_text = std::fs::read_to_string(&full).unwrap_or_default();
            if !anchors(&target_text).contains(anchor) {
                dead.push(format!(
                    "{}:{line}: `{target}`: no anchor `{anchor}`",
                    page.display()
                ));
            }
        }
    }
    dead
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("name")))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let pages = pages();
    assert!(pages.len() >= 9, "README and the docs pages: {pages:?}");
    let dead: Vec<String> = pages.iter().flat_map(|p| dead_links(p)).collect();
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn the_readme_links_every_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    for page in pages().iter().skip(1) {
        let name = page.display().to_string();
        assert!(
            readme.contains(&format!("]({name})")),
            "README does not link {name}"
        );
    }
}

/// The places outside the docs that name a page, `README.md` or a `.md` page under `docs/`,
/// each with an optional `#anchor`, as `(target, line)`.
fn page_references(text: &str) -> Vec<(String, usize)> {
    let is_slug = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices(".md") {
            let head = &line[..at];
            let name_start = head.rfind(|c: char| !is_slug(c)).map_or(0, |i| i + 1);
            let page = if head[..name_start].ends_with("docs/") && name_start < at {
                format!("docs/{}.md", &head[name_start..])
            } else if &head[name_start..] == "README" && !head[..name_start].ends_with('/') {
                "README.md".to_owned()
            } else {
                continue;
            };
            let rest = &line[at + 3..];
            let anchor: String = match rest.strip_prefix('#') {
                Some(a) => a.chars().take_while(|&c| is_slug(c)).collect(),
                None => String::new(),
            };
            if rest.starts_with(is_slug) {
                continue; // `.mdx` and the like
            }
            out.push((
                if anchor.is_empty() {
                    page
                } else {
                    format!("{page}#{anchor}")
                },
                n + 1,
            ));
        }
    }
    out
}

/// Every file outside README.md and docs/ (code, comments, rules, scripts, deploy recipes).
fn files_outside_the_docs(dir: &Path, out: &mut Vec<PathBuf>) {
    const SKIP: &[&str] = &[
        ".git",
        "target",
        ".venv",
        "state",
        "mutants.out",
        "__pycache__",
        "node_modules",
    ];
    for entry in std::fs::read_dir(dir).expect("directory readable") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let rel = path
            .strip_prefix(root())
            .expect("under the root")
            .to_path_buf();
        if SKIP.contains(&name.as_str())
            || rel == Path::new("docs")
            || rel == Path::new("README.md")
        {
            continue;
        }
        if path.is_dir() {
            files_outside_the_docs(&path, out);
        } else {
            out.push(rel);
        }
    }
}

/// A comment, test or rules file that says where the docs say something names a page that
/// exists, and an anchor that page has: a section moved to another page cannot leave its old
/// address behind in the code (the alerts' runbook rows are `promtool::`'s to check).
#[test]
fn pages_named_outside_the_docs_exist() {
    let mut files = Vec::new();
    files_outside_the_docs(&root(), &mut files);
    files.sort();
    let mut dead = Vec::new();
    let mut seen = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            continue; // not text
        };
        for (target, line) in page_references(&text) {
            seen += 1;
            let (page, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
            let Ok(page_text) = std::fs::read_to_string(root().join(page)) else {
                dead.push(format!(
                    "{}:{line}: `{target}`: no page {page}",
                    file.display()
                ));
                continue;
            };
            if !anchor.is_empty() && !anchors(&page_text).contains(anchor) {
                dead.push(format!(
                    "{}:{line}: `{target}`: no anchor `{anchor}`",
                    file.display()
                ));
            }
        }
    }
    assert!(
        seen >= 10,
        "only {seen} references to the docs found in {files:?}"
    );
    assert!(
        dead.is_empty(),
        "dead references to the docs:\n{}",
        dead.join("\n")
    );
}

/// The checker itself sees a dead file, a dead anchor, and a good link.
#[test]
fn the_checker_finds_dead_links() {
    let text = "# Title\n\n## A section\n\n[ok](#a-section) [bad](#nowhere) [file](no-such.md)\n";
    let found = anchors(text);
    assert!(found.contains("a-section") && found.contains("title"));
    let targets: Vec<String> = links(text).into_iter().map(|(t, _)| t).collect();
    assert_eq!(targets, ["#a-section", "#nowhere", "no-such.md"]);
    let refs: Vec<String> = page_references(
        "see docs/operations.md#ephemeradaemondown, \"README.md\", docs/*.md, a/README.md, x.mdx",
    )
    .into_iter()
    .map(|(t, _)| t)
    .collect();
    assert_eq!(refs, ["docs/operations.md#ephemeradaemondown", "README.md"]);
    assert_eq!(
        slug("The audit chain: what verify shows, and what it cannot"),
        "the-audit-chain-what-verify-shows-and-what-it-cannot"
    );
}

/// The contents of the ```` ```lang ```` blocks of `text` (fences at the start of a line).
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            Some(block) if line.starts_with("```") => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.strip_prefix("```") == Some(lang) => current = Some(String::new()),
            None => {}
        }
    }
    out
}

/// The names `text` gives in `keyword "NAME"` blocks (HCL).
fn hcl_names(text: &str, keyword: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix(&format!("{keyword} \"")))
        .filter_map(|l| l.split_once('"').map(|(name, _)| name.to_owned()))
        .collect()
}

/// The README's Terraform example holds against the real command, run as the README writes it
/// (a shell, the lease acquired from a daemon): the variables its HCL declares are exactly those
/// `lease acquire --format terraform` wrote where Terraform loads them by itself (so it neither
/// prompts for one nor warns of an undeclared one), each is used, `default_tags` takes the
/// tags, and the output the shell reads back is declared. Terraform itself is not run.
#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_terraform_example_takes_what_lease_acquire_writes() {
    use crate::support::{TestDaemon, WEB, Workdir};

    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let start = readme
        .find("### With Terraform")
        .expect("the README's Terraform section");
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let [hcl] = fenced(section, "hcl").try_into().expect("one hcl block");
    let [sh] = fenced(section, "sh").try_into().expect("one sh block");

    let declared = hcl_names(&hcl, "variable");
    let referenced: BTreeSet<String> = hcl
        .split("var.")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    assert_eq!(
        referenced, declared,
        "a variable declared but unused, or used undeclared"
    );
    assert_eq!(hcl.matches('{').count(), hcl.matches('}').count(), "{hcl}");
    let compact: String = hcl.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        compact.contains("provider \"aws\" { default_tags { tags = var.ephemera_tags } }"),
        "{hcl}"
    );
    let outputs = hcl_names(&hcl, "output");
    for name in sh.split("terraform output -raw ").skip(1) {
        let name: String = name
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ')')
            .collect();
        assert!(
            outputs.contains(&name),
            "the shell reads output {name}, not declared"
        );
    }

    // The shell's acquire, as written (continuation lines joined), against a daemon.
    let acquire = sh
        .replace("\\\n", " ")
        .lines()
        .find(|l| l.contains("ephemera lease acquire"))
        .expect("an acquire line")
        .to_owned();
    let file = acquire
        .rsplit_once("> ")
        .map(|(_, f)| f.trim().to_owned())
        .expect("the output saved to a file");
    assert!(
        file.ends_with(".auto.tfvars"),
        "Terraform does not load {file} by itself"
    );
    let work = Workdir::new();
    let d = TestDaemon::start(&work).await;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_ephemera"))
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = tokio::process::Command::new("sh")
        .args(["-euc", &acquire])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", path)
        .env("EPHEMERA_ADDR", d.base())
        .env("EPHEMERA_TOKEN", WEB)
        .env("CI_MERGE_REQUEST_IID", "42")
        .env("GITLAB_USER_EMAIL", "alice@example.com")
        .output()
        .await
        .expect("sh runs");
    assert!(
        o.status.success(),
        "{acquire}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let written = std::fs::read_to_string(work.path().join(&file)).expect("the variables file");
    d.stop().await;

    let assigned: BTreeSet<String> = written
        .lines()
        .filter(|l| !l.starts_with([' ', '}', '#']))
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.to_owned()))
        .collect();
    assert_eq!(assigned, declared, "written:\n{written}");
    let tag_keys: BTreeSet<&str> = written
        .lines()
        .filter(|l| l.starts_with("  \""))
        .filter_map(|l| l.trim().strip_prefix('"')?.split_once('"').map(|(k, _)| k))
        .collect();
    let identity = ephemera::model::IdentityTags::default();
    assert_eq!(
        tag_keys,
        BTreeSet::from([
            identity.lease.as_str(),
            identity.project.as_str(),
            identity.task.as_str(),
            identity.owner.as_str()
        ]),
        "written:\n{written}"
    );
    assert!(
        written.contains("  \"ephemera:task\"     = \"preview 42\""),
        "{written}"
    );
}
