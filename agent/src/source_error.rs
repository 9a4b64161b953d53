//! Errors in files people write (the config file, API specs), with the file, line and column,
//! and the parser's own words with any credential they quote replaced: the config and the
//! inventory's spec loading report through the same type.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: the config file must end in .toml, .yaml or .yml")]
    Format { path: String },
    #[error("{path}: {message}")]
    Setting { path: String, message: String },
}

/// A parser's message, which may quote the offending value (`invalid type: string "Bearer
/// …", expected a map`): credentials in it are replaced before it reaches a log line.
pub fn parser_message(message: &str) -> String {
    crate::credentials::redact::text(message).into_owned()
}

/// A YAML error as (line, column, message), 1-based.
pub fn yaml_error(error: &serde_yaml_ng::Error) -> (usize, usize, String) {
    let (line, column) = error.location().map_or((1, 1), |l| (l.line(), l.column()));
    // The library appends " at line L column C"; the caller's prefix says it already.
    let message = error.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    (line, column, parser_message(message))
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
