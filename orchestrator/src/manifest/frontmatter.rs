//! Splitting a manifest into its YAML frontmatter and Markdown body, and
//! refusing YAML that does not read as it means.
//!
//! Anchors, aliases and tags let one line silently stand for another (`*x`
//! pulls a block defined elsewhere; `!!binary` changes what a value is), and
//! a key written twice in one mapping silently keeps only the last value
//! (`repos: {app: …, app: <elsewhere>}`). A manifest decides where
//! credentials go, so the event stream is checked before serde sees the
//! document: every mapping at every depth, with the line of each key.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

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

/// A key as an error may show it: a name-like key is quoted; anything
/// else (very long, odd characters, or a credential's shape) is not shown.
#[must_use]
pub fn shown_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_graphic() && b != b'`')
        && !crate::env::looks_like_credential(key);
    if plain {
        format!("`{key}`")
    } else {
        "(a key not shown)".to_owned()
    }
}

/// What the checker expects next inside an open collection.
enum Frame {
    /// A mapping: the keys seen with their lines; `true` while the next
    /// node is a key.
    Mapping(HashMap<String, usize>, bool),
    Sequence,
}

/// An open collection and whether it is written in flow style (`[…]`, `{…}`).
struct Open {
    frame: Frame,
    flow: bool,
}

/// Refuses, anywhere in `yaml`: anchors, aliases and tags; a key repeated
/// within one mapping; a key that is not plain text. Lines in the error are
/// relative to `first_line`.
pub fn check_events(yaml: &str, first_line: usize) -> Result<(), FrontmatterError> {
    let mut stack: Vec<Open> = Vec::new();
    let chars: Vec<char> = yaml.chars().collect();
    let at = |line: usize| Some(line + first_line - 1);
    for item in Parser::new_from_str(yaml) {
        let (event, span) = item.map_err(|e| FrontmatterError {
            line: at(e.marker().line()),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let line = span.start.line();
        let what = match &event {
            Event::Alias(_) => Some("an alias (`*name`)"),
            Event::Scalar(_, _, anchor, tag)
            | Event::SequenceStart(anchor, tag)
            | Event::MappingStart(anchor, tag) => {
                if *anchor != 0 {
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
                line: at(line),
                message: format!(
                    "{what} is not allowed in a manifest: anchors, aliases and tags hide what a file says; write the value out"
                ),
            });
        }
        let in_flow = stack.last().is_some_and(|o| o.flow);
        match event {
            Event::Scalar(text, style, ..) => {
                // serde_norway (libyaml's rules) reads `[?x]` as a mapping
                // with key `x`, this parser (YAML 1.2) as the text `?x`: the
                // two must never see different documents.
                if in_flow && style == ScalarStyle::Plain && text.starts_with('?') {
                    return Err(FrontmatterError {
                        line: at(line),
                        message: "a value starting with `?` inside `[…]` or `{…}` is read as a key by some YAML parsers and as text by others; quote it".into(),
                    });
                }
                if let Some(Open {
                    frame: Frame::Mapping(keys, expect_key),
                    ..
                }) = stack.last_mut()
                {
                    if *expect_key {
                        if let Some(first) = keys.get(text.as_ref()) {
                            return Err(FrontmatterError {
                                line: at(line),
                                message: format!(
                                    "duplicate key {} (first on line {}): a key may appear once in a mapping, or the last one would silently win",
                                    shown_key(&text),
                                    first + first_line - 1
                                ),
                            });
                        }
                        keys.insert(text.into_owned(), line);
                    }
                    *expect_key = !*expect_key;
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if let Some(Open {
                    frame: Frame::Mapping(_, true),
                    ..
                }) = stack.last()
                {
                    return Err(FrontmatterError {
                        line: at(line),
                        message: "a key must be plain text, not a list or a mapping".into(),
                    });
                }
                let flow = in_flow || matches!(chars.get(span.start.index()), Some('[' | '{'));
                stack.push(Open {
                    frame: if matches!(event, Event::MappingStart(..)) {
                        Frame::Mapping(HashMap::new(), true)
                    } else {
                        Frame::Sequence
                    },
                    flow,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                // The collection that ended was a value in its parent.
                if let Some(Open {
                    frame: Frame::Mapping(_, expect_key),
                    ..
                }) = stack.last_mut()
                {
                    *expect_key = true;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_events, split};

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
        let e = check_events("a: 1\nb: &x 2\nc: *x\n", 2).expect_err("anchor");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("anchor"), "{e:?}");
        let e = check_events("a: !!binary aGVsbG8=\n", 2).expect_err("tag");
        assert!(e.message.contains("tag"), "{e:?}");
        let e = check_events("a: !custom {x: 1}\n", 2).expect_err("tag");
        assert!(e.message.contains("tag"), "{e:?}");
        check_events("a: 'not & an anchor'\nb: \"!not a tag\"\n", 2).expect("plain");
    }

    #[test]
    fn a_key_twice_in_one_mapping_is_refused_at_any_depth() {
        let e = check_events("env:\n  TZ: UTC\n  TZ: CET\n", 2).expect_err("dup");
        assert_eq!(e.line, Some(4));
        assert!(
            e.message.contains("duplicate key `TZ` (first on line 3)"),
            "{e:?}"
        );
        // Quoting does not make it another key.
        let e = check_events("a: 1\n\"a\": 2\n", 1).expect_err("dup");
        assert_eq!(e.line, Some(2));
        // In a list item, and in flow style.
        assert!(check_events("r:\n  - h: x\n    h: y\n", 1).is_err());
        assert!(check_events("m: {a: 1, a: 2}\n", 1).is_err());
        // The same key in sibling mappings, or as a value, is fine.
        check_events("r:\n  - h: x\n  - h: y\nq: {h: h}\nh: [h, h]\n", 1).expect("siblings");
        check_events("a:\n  b: {c: 1}\n  c: 2\nb: 3\n", 1).expect("nested then sibling");
        // A complex key is refused.
        assert!(check_events("? [a, b]\n: 1\n", 1).is_err());
    }

    #[test]
    fn a_question_mark_the_parsers_read_differently_is_refused() {
        // libyaml (serde_norway) reads `[?GET]` as [{GET: null}] and
        // `{?a: 1, a: 2}` as a duplicate; YAML 1.2 reads `?GET`, `?a` as text.
        for y in ["m: [?GET]\n", "m: {?a: 1, a: 2}\n", "m: [{x: [?y]}]\n"] {
            let e = check_events(y, 1).expect_err(y);
            assert!(e.message.contains("quote it"), "{e:?}");
        }
        // Quoted, or in block style (a `?prompt` env value), it is text to both.
        check_events("m: ['?GET', \"?a\"]\nenv:\n  A: ?Deploy password\n", 1).expect("fine");
    }

    #[test]
    fn a_key_that_may_be_a_secret_is_not_shown() {
        let e = check_events(
            "ghp_0123456789abcdefghij0123456789ABCDEF: 1\nghp_0123456789abcdefghij0123456789ABCDEF: 2\n",
            1,
        )
        .expect_err("dup");
        assert!(!e.message.contains("ghp_"), "{e:?}");
        assert!(e.message.contains("not shown"), "{e:?}");
    }
}
