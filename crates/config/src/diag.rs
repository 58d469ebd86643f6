//! Diagnostics: what is wrong with a routes file, where, and how to fix it.
//!
//! Every problem found while loading is a [`Diagnostic`] carrying a byte span into the
//! source. A [`Source`] turns spans into `file:line:column` and renders the offending
//! line with a caret, the way compilers do, so a platform engineer can fix the file
//! without guessing.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A byte range into the routes file.
pub type Span = Range<usize>;

/// Where a value of the validated model was written: a [`Span`] (or, for a key that may
/// be left out, an `Option<Span>`) kept for diagnostics.
///
/// Every `Written` equals every other and hashes to nothing, so a model value that
/// derives `Eq` and `Hash` compares what it says, never where or whether it was said: a
/// route moved down the file, below a new comment, or with a default written out
/// (`protocol = "auto"`), is the same route, and a position field added later cannot
/// change that.
#[derive(Debug, Clone, Default)]
pub struct Written<S = Span>(pub S);

impl Written {
    /// The span.
    pub fn span(&self) -> Span {
        self.0.clone()
    }
}

impl<S> std::ops::Deref for Written<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S> PartialEq for Written<S> {
    fn eq(&self, _: &Written<S>) -> bool {
        true
    }
}

impl<S> Eq for Written<S> {}

impl<S> std::hash::Hash for Written<S> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl From<Span> for Written {
    fn from(span: Span) -> Written {
        Written(span)
    }
}

impl From<Written> for Option<Span> {
    fn from(written: Written) -> Option<Span> {
        Some(written.0)
    }
}

impl From<&Written> for Option<Span> {
    fn from(written: &Written) -> Option<Span> {
        Some(written.span())
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The configuration is usable, but probably not what was meant.
    Warning,
    /// The configuration is refused.
    Error,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem in a routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the file, when known.
    pub span: Option<Span>,
    /// What is wrong, as a sentence.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
    /// The text under the span is a credential: the snippet shows `<redacted>` there.
    pub conceal: bool,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span: span.into(),
            message: message.into(),
            help: None,
            conceal: false,
        }
    }

    /// A warning at `span`.
    pub fn warning(span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    /// Adds advice on how to fix the problem.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Marks the text under the span as a credential, never to be shown.
    #[must_use]
    pub fn concealed(mut self) -> Self {
        self.conceal = true;
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A diagnostic placed in its file: what `check` prints and `--format json` emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line, when the diagnostic has a span.
    pub line: Option<usize>,
    /// 1-based column in characters, when the diagnostic has a span.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The source line and a caret under the span, ready to print.
    pub snippet: Option<String>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}: {}", self.severity.as_str(), self.message)?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// The text of a routes file and the name to report it under.
#[derive(Debug, Clone)]
pub struct Source {
    name: String,
    path: PathBuf,
    text: String,
}

impl Source {
    /// A source read from `path`; `name` is how diagnostics refer to it.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let path = path.into();
        Source {
            name: path.display().to_string(),
            path,
            text: text.into(),
        }
    }

    /// The name used in diagnostics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path the file was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's contents.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    /// Places a diagnostic in this file.
    pub fn locate(&self, diagnostic: &Diagnostic) -> Located {
        let (line, column, snippet) = match &diagnostic.span {
            Some(span) => {
                let (line, column) = self.line_col(span.start);
                let snippet = self.snippet(span, line, diagnostic.conceal);
                (Some(line), Some(column), Some(snippet))
            }
            None => (None, None, None),
        };
        Located {
            severity: diagnostic.severity,
            file: self.name.clone(),
            line,
            column,
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            snippet,
        }
    }

    fn snippet(&self, span: &Span, line: usize, conceal: bool) -> String {
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let text = self.text[line_start..line_end].trim_end_matches('\r');
        let end = floor_char_boundary(&self.text, span.end.clamp(start, line_end));
        let pad = self.text[line_start..start].chars().count();
        let mut width = self.text[start..end].chars().count().max(1);
        let concealed;
        let text = if conceal {
            const MASK: &str = "<redacted>";
            width = MASK.len();
            concealed = format!(
                "{}{MASK}{}",
                &self.text[line_start..start],
                self.text[end..line_end].trim_end_matches('\r')
            );
            concealed.as_str()
        } else {
            text
        };
        let gutter = line.to_string().len();
        format!(
            "{:gutter$} |\n{line} | {text}\n{:gutter$} | {}{}",
            "",
            "",
            " ".repeat(pad),
            "^".repeat(width),
        )
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let source = Source::new("r.toml", "a = 1\n# é\nb = \"x\"\n");
        assert_eq!(source.line_col(0), (1, 1));
        assert_eq!(source.line_col(6), (2, 1));
        let b = source.text().find('b').unwrap_or_default();
        assert_eq!(source.line_col(b + 4), (3, 5));
    }

    #[test]
    fn renders_file_line_column_and_caret() {
        let text = "[gateway]\nlisten = \"nope\"\n";
        let source = Source::new("routes.toml", text);
        let start = text.find("\"nope\"").unwrap_or_default();
        let diagnostic = Diagnostic::error(start..start + 6, "bad address").help("write host:port");
        let rendered = source.locate(&diagnostic).to_string();
        assert_eq!(
            rendered,
            "routes.toml:2:10: error: bad address\n  |\n2 | listen = \"nope\"\n  |          ^^^^^^\n  = help: write host:port"
        );
    }
}
