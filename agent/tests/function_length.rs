//! No function of `agent/src` (tests excepted) is longer than 100 lines: past that, a function
//! holds several concerns, and the next change to one of them has to read them all. Read from
//! the source, with comments, strings and character literals blanked so their braces do not
//! count.

#![allow(clippy::unwrap_used)] // A test: a failure is its message.
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 100;

/// The source with the contents of comments, strings and character literals replaced by
/// spaces (newlines kept, so line numbers stay).
fn blank_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && !ident_before(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let end: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = i + 2 + hashes;
            let rest: String = chars[body_start..].iter().collect();
            let body_len = rest
                .find(&end)
                .map_or(rest.len(), |at| rest[..at].chars().count());
            for ch in &chars[i..(body_start + body_len + end.len()).min(chars.len())] {
                out.push(blank(*ch));
            }
            i = body_start + body_len + end.len();
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\'', '\u{7f}'
            let len = chars[i + 2..]
                .iter()
                .position(|c| *c == '\'')
                .map_or(2, |p| p + 3);
            out.extend(std::iter::repeat_n(' ', len));
            i += len;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_')
}

/// (name, first line, length in lines) of every function with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = code[at..].find("fn ") {
        let start = at + offset;
        at = start + 3;
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let name: String = code[at..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(` types
        }
        let Some(open) = code[at..].find(['{', ';']).map(|o| at + o) else {
            break;
        };
        if bytes[open] == b';' {
            continue; // a declaration in a trait
        }
        let mut depth = 0;
        let mut close = open;
        for (i, b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                close = i;
                break;
            }
        }
        let line = code[..start].matches('\n').count() + 1;
        let lines = code[start..=close].matches('\n').count() + 1;
        found.push((name, line, lines));
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_function_is_longer_than_100_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let code = blank_literals(source.split("#[cfg(test)]").next().unwrap_or_default());
        for (name, line, lines) in functions(&code) {
            if lines > MAX_LINES {
                let path = file.strip_prefix(&src).unwrap().display().to_string();
                long.push(format!("{path}:{line}: {name} has {lines} lines"));
            }
        }
    }
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}

#[test]
fn measures_bodies_and_ignores_braces_in_literals() {
    let source = "fn a() {\n    let b = '{';\n    let s = \"}}\";\n    // }\n}\nfn c();\n\
                  fn d<T>(x: T) -> impl Fn() {\n    move || {}\n}\n\
                  let r = r#\"{\"#;\nfn e() {}\n";
    let found = functions(&blank_literals(source));
    let summary: Vec<(&str, usize, usize)> = found
        .iter()
        .map(|(n, line, lines)| (n.as_str(), *line, *lines))
        .collect();
    assert_eq!(summary, [("a", 1, 5), ("d", 7, 3), ("e", 11, 1)]);
}
