//! Splitting a manifest into its YAML frontmatter and Markdown body, and
//! refusing YAML features that hide what a file says.
//!
//! Anchors, aliases and tags let one line silently stand for another (`*x`
//! pulls a block defined elsewhere; `!!binary` changes what a value is). A
//! manifest decides where credentials go, so it must read as it means: the
//! event stream is checked before serde sees the document.

use saphyr_parser::{Event, Parser};

/// A manifest split at its `---` fences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split<'a> {
    /// The YAML between the fences.
    pub yaml: &'a str,
    /// 1-based line of the file where the YAML starts.
    pub yaml_first_line: usize,
    /// Everything after the closing fence (an agent's prompt).
    pub body: &'a str,
}

/// Why a file could not be split or checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontmatterError {
    /// 1-based line of the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn is_fence(line: &str) -> bool {
    line.trim_end_matches(['\n', '\r', ' ', '\t']) == "---"
}

/// Splits `text` into frontmatter and body. The file must open with a
/// `---` line and the frontmatter must be closed by another.
pub fn split(text: &str) -> Result<Split<'_>, FrontmatterError> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if !is_fence(first) {
        return Err(FrontmatterError {
            line: Some(1),
            message: "the file must start with a `---` line opening the YAML frontmatter".into(),
        });
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    let mut line_no = 1;
    for line in lines {
        line_no += 1;
        if is_fence(line) {
            return Ok(Split {
                yaml: &text[yaml_start..offset],
                yaml_first_line: 2,
                body: &text[offset + line.len()..],
            });
        }
        offset += line.len();
    }
    Err(FrontmatterError {
        line: Some(line_no),
        message: "the frontmatter opened on line 1 is never closed by a `---` line".into(),
    })
}

/// Refuses anchors, aliases and tags anywhere in `yaml`. Lines in the error
/// are relative to `first_line`.
pub fn refuse_indirection(yaml: &str, first_line: usize) -> Result<(), FrontmatterError> {
    for item in Parser::new_from_str(yaml) {
        let (event, span) = item.map_err(|e| FrontmatterError {
            line: Some(e.marker().line() + first_line - 1),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let what = match event {
            Event::Alias(_) => Some("an alias (`*name`)"),
            Event::Scalar(_, _, anchor, tag)
            | Event::SequenceStart(anchor, tag)
            | Event::MappingStart(anchor, tag) => {
                if anchor != 0 {
                    Some("an anchor (`&name`)")
                } else if tag.is_some() {
                    Some("a tag (`!name`)")
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(what) = what {
            return Err(FrontmatterError {
                line: Some(span.start.line() + first_line - 1),
                message: format!(
                    "{what} is not allowed in a manifest: anchors, aliases and tags hide what a file says; write the value out"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{refuse_indirection, split};

    #[test]
    fn splits_frontmatter_and_body() {
        let s = split("---\nbottle: dev\n---\nHello\n").expect("splits");
        assert_eq!(s.yaml, "bottle: dev\n");
        assert_eq!(s.body, "Hello\n");
        let s = split("---\r\na: 1\r\n---\r\n").expect("crlf");
        assert_eq!(s.yaml, "a: 1\r\n");
        assert_eq!(s.body, "");
    }

    #[test]
    fn missing_fences_are_errors() {
        assert!(split("bottle: dev\n").is_err());
        let e = split("---\nbottle: dev\n").expect_err("unclosed");
        assert!(e.message.contains("never closed"), "{e:?}");
    }

    #[test]
    fn anchors_aliases_and_tags_are_refused_with_the_line() {
        let e = refuse_indirection("a: 1\nb: &x 2\nc: *x\n", 2).expect_err("anchor");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("anchor"), "{e:?}");
        let e = refuse_indirection("a: !!binary aGVsbG8=\n", 2).expect_err("tag");
        assert!(e.message.contains("tag"), "{e:?}");
        let e = refuse_indirection("a: !custom {x: 1}\n", 2).expect_err("tag");
        assert!(e.message.contains("tag"), "{e:?}");
        refuse_indirection("a: 'not & an anchor'\nb: \"!not a tag\"\n", 2).expect("plain");
    }
}
