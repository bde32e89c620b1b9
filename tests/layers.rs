//! The layer rule, read from the source: imports between the crate's
//! modules point down only, so no two modules import each other, and the
//! sans-IO core names no runtime, socket or store library.
//!
//! The layers, top to bottom (`src/lib.rs` walks one message through them):
//! doors (`server`, `admin`, `session`) → features (`broadcast`, `sysmsg`,
//! `message`, `conversation`) → composition (`hub`) → runtime services
//! (`pipeline`, `notify`, `registry`) → the core (`core`) → adapters (`hooks`,
//! `push`, `guard`, `transport`, `auth`, `store`, `filter`, `http`, `metrics`) →
//! vocabulary (`config`, `wire`, `protocol`, `util`). Inside a layer the
//! list is an order too: a module may use the ones after it, never the
//! ones before. The client library and the CLI sit beside the server
//! stack and may use anything below the doors.
//!
//! It reads `crate::name` paths in code (comments are skipped), which is
//! how every module here names another. `cargo test --test layers` prints
//! each offending line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every top-level module, highest first. An import may only go to a
/// module later in this list.
const ORDER: &[&str] = &[
    // Beside the server: the CLI and the client library it uses.
    "cli",
    "client",
    // Doors.
    "server",
    "admin",
    "gateway",
    "session",
    // Features.
    "broadcast",
    "sysmsg",
    "message",
    "conversation",
    // Composition.
    "hub",
    // Runtime services below the hub.
    "pipeline",
    "notify",
    "registry",
    // The sans-IO core.
    "core",
    // Adapters: each owns one outside thing.
    "hooks",
    "push",
    "guard",
    "transport",
    "auth",
    "store",
    "filter",
    "http",
    "metrics",
    // Vocabulary.
    "config",
    "wire",
    "protocol",
    "util",
];

/// Names the core may not use: it takes `now` and facts as arguments.
const NOT_IN_CORE: &[&str] = &[
    "tokio::",
    "quinn::",
    "sled::",
    "reqwest::",
    "hyper::",
    "axum::",
    "std::net::",
    "std::fs::",
    "Instant::now",
    "SystemTime::now",
    "now_ms()",
    "now_secs()",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to; `None` for the crate root and binaries.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    match name.as_str() {
        "lib" | "main" | "bin" => None,
        _ => Some(name),
    }
}

/// The code of a line without its comment (string contents are kept; no
/// module path here is spelled inside a string).
fn code_of(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

/// Top-level modules named by `crate::…` in `code`, including every name
/// of a `crate::{a, b::c}` group (which may span lines: `joined` is the
/// file's code with newlines kept).
fn crate_refs(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(at) = code[i..].find("crate::") {
        let start = i + at;
        i = start + "crate::".len();
        // Skip `tidings_crate::` or the like.
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        if code[i..].starts_with('{') {
            let mut depth = 0;
            let mut word = String::new();
            let mut at_name = true;
            for c in code[i..].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        at_name = depth == 1;
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => at_name = true,
                    c if at_name && (c.is_ascii_alphanumeric() || c == '_') => word.push(c),
                    _ => {
                        if !word.is_empty() {
                            out.push((line, std::mem::take(&mut word)));
                        }
                        if !c.is_whitespace() {
                            at_name = false;
                        }
                    }
                }
            }
            if !word.is_empty() {
                out.push((line, word));
            }
        } else {
            let name: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((line, name));
        }
    }
    out
}

struct Use {
    file: PathBuf,
    line: usize,
    from: String,
    to: String,
}

fn all_uses() -> Vec<Use> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut uses = Vec::new();
    for file in files {
        let Some(from) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        let code: String = text.lines().map(|l| format!("{}\n", code_of(l))).collect();
        for (line, to) in crate_refs(&code) {
            if to != from && to != "self" && to != "super" {
                uses.push(Use {
                    file: file.clone(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    uses
}

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|m| *m == module)
}

#[test]
fn every_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let unknown: Vec<String> = files
        .iter()
        .filter_map(|f| module_of(f))
        .filter(|m| rank(m).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "modules missing from ORDER: {unknown:?}"
    );
}

#[test]
fn imports_point_down_only() {
    let mut upward: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for u in all_uses() {
        let (Some(from), Some(to)) = (rank(&u.from), rank(&u.to)) else {
            continue;
        };
        if to < from {
            upward
                .entry((u.from.clone(), u.to.clone()))
                .or_default()
                .push(format!("{}:{}", u.file.display(), u.line));
        }
    }
    let report: Vec<String> = upward
        .iter()
        .map(|((from, to), at)| format!("{from} -> {to} (upward) at {}", at.join(", ")))
        .collect();
    assert!(
        report.is_empty(),
        "imports that run up:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_core_does_no_io() {
    let mut files = Vec::new();
    rust_files(&src().join("core"), &mut files);
    assert!(!files.is_empty(), "src/core exists");
    let mut found = Vec::new();
    // Tests may read the clock once for a virtual clock's origin.
    files.retain(|f| !f.to_string_lossy().ends_with("tests.rs"));
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.trim() == "#[cfg(test)]" {
                break;
            }
            let code = code_of(line);
            for name in NOT_IN_CORE {
                if code.contains(name) {
                    found.push(format!("{}:{}: {name}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "I/O in the core:\n{}", found.join("\n"));
}

#[test]
fn the_reader_sees_grouped_and_inline_paths() {
    let code = "use crate::{a::B, c};\nfn f() { crate::d::e(); my_crate::x(); }\n";
    let got: Vec<(usize, String)> = crate_refs(code);
    assert_eq!(got, vec![(1, "a".into()), (1, "c".into()), (2, "d".into())]);
    assert_eq!(code_of("let a = 1; // crate::x"), "let a = 1; ");
    assert_eq!(code_of("//! [`crate::x`]"), "");
}
