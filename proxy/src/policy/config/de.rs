//! A serde `Deserializer` over a parsed YAML tree that finds *every* error
//! of a routes file, each at its key path, with the schema types' own
//! `#[derive(Deserialize)]` as the only description of the format.
//!
//! serde stops at the first error. To go on, a failed pass records its
//! error and marks the node at fault, and the next pass runs with the mark
//! applied:
//!
//! - a node with an error is hidden (a map key becomes absent, a list
//!   element is left out), so the rest of the file is still checked;
//! - a required key that is missing, or hidden, gets a *placeholder* (an
//!   empty string, `false`, an empty list …) so that its mapping still
//!   deserialises and its siblings are still checked;
//! - an error caused only by an earlier mark (a placeholder a type refuses,
//!   a key required after it was hidden, a list left empty by hidden
//!   elements) is not reported: only the most specific error of a place is.
//!
//! Unknown keys and non-string keys are reported without failing the pass.
//! Each pass adds a mark, so the loop ends; [`MAX_ERRORS`] bounds the work
//! on a hostile file.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_norway::Value;

use super::ConfigErrorKind;

/// At most this many errors are collected from one file; the rest is not
/// checked (each one costs a pass over the file).
pub(crate) const MAX_ERRORS: usize = 100;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A key path from the document root.
pub(crate) type Path = Vec<Seg>;

/// Where an issue sorts among the others of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// At its path (a missing key: at the end of the mapping that lacks it).
    At,
    /// With the mapping that holds its path, before that mapping's contents
    /// (unknown keys, as a reader meets them first).
    Parent,
    /// After everything else in the node at its path's first two steps (a
    /// duplicate host, known only once the route is read).
    EndOfRoute,
}

/// An error with its place, before it is turned into a [`super::ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub(crate) path: Path,
    pub(crate) anchor: Anchor,
    pub(crate) kind: ConfigErrorKind,
}

impl Issue {
    pub(crate) fn at(path: Path, kind: ConfigErrorKind) -> Self {
        Self {
            path,
            anchor: Anchor::At,
            kind,
        }
    }
}

/// Whether `outer` is `inner` or one of its ancestors.
pub(crate) fn covers(outer: &[Seg], inner: &[Seg]) -> bool {
    inner.starts_with(outer)
}

/// The enums whose unknown variants are reported as unknown detectors.
const DETECTOR_ENUMS: &[&str] = &["OutboundDetector", "InboundDetector"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Left out.
    Skip,
    /// Replaced by (or, when missing, given) a placeholder value.
    Placeholder,
}

#[derive(Debug, Default)]
struct State {
    marks: HashMap<Path, Mark>,
    /// Placeholder keys absent from their mapping, by the mapping's path.
    synthetic: HashMap<Path, Vec<&'static str>>,
    /// Errors found without failing a pass, deduplicated across passes.
    soft: Vec<Issue>,
    soft_seen: HashSet<(Path, String)>,
}

/// What a deserialisation error means for the collecting loop.
#[derive(Debug)]
pub(crate) enum Error {
    /// Made by a `Deserialize` impl; the deserializer that called it gives
    /// it a place.
    Fresh(Fresh),
    /// A new finding at `path`.
    Found { path: Path, kind: ConfigErrorKind },
    /// Required key `field` (last step of `path`) is missing; `reported`
    /// unless an earlier error hid it.
    Missing {
        path: Path,
        field: &'static str,
        reported: bool,
    },
    /// A placeholder at or above `path` was refused by its type.
    Refused { path: Path },
}

/// The error kinds serde's `Error` constructors carry.
#[derive(Debug)]
pub(crate) enum Fresh {
    Expected(String),
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    Missing(&'static str),
    Custom(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Fresh(Fresh::Custom(msg.to_string()))
    }
    fn invalid_type(_unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::Fresh(Fresh::Expected(exp.to_string()))
    }
    fn invalid_value(_unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::Fresh(Fresh::Expected(exp.to_string()))
    }
    fn invalid_length(_len: usize, exp: &dyn de::Expected) -> Self {
        Self::Fresh(Fresh::Expected(exp.to_string()))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::Fresh(Fresh::UnknownVariant {
            variant: variant.to_owned(),
            expected,
        })
    }
    fn missing_field(field: &'static str) -> Self {
        Self::Fresh(Fresh::Missing(field))
    }
}

/// A short description of a YAML value for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(60).collect();
            if short.len() < s.len() {
                format!("string {short:?}…")
            } else {
                format!("string {short:?}")
            }
        }
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("tagged value {}", t.tag),
    }
}

/// `"a", "b" or "c"`.
fn quoted_choice(variants: &[&str]) -> String {
    let quoted: Vec<String> = variants.iter().map(|v| format!("{v:?}")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// Deserialises `root` into `T`, collecting every error. Returns the value
/// (with the fixes applied; `None` when the document as a whole is unusable)
/// and the issues found.
pub(crate) fn collect<T: DeserializeOwned>(root: &Value) -> (Option<T>, Vec<Issue>) {
    let state = RefCell::new(State::default());
    let mut hard: Vec<Issue> = Vec::new();
    let mut value = None;
    // Each failed pass adds or upgrades a mark; the bound is a safety net.
    for _ in 0..MAX_ERRORS * 4 {
        let de = De {
            node: Node::Real(root),
            path: Vec::new(),
            state: &state,
        };
        let err = match T::deserialize(de) {
            Ok(v) => {
                value = Some(v);
                break;
            }
            Err(e) => e,
        };
        let mut st = state.borrow_mut();
        let fixed = match err {
            Error::Found { path, kind } => {
                st.record(&mut hard, &path, kind);
                if path.is_empty() {
                    false
                } else {
                    st.marks.insert(path, Mark::Skip);
                    true
                }
            }
            Error::Missing {
                path,
                field,
                reported,
            } => {
                if reported {
                    st.record(&mut hard, &path, ConfigErrorKind::Missing);
                }
                st.placeholder(path, field);
                true
            }
            Error::Refused { path } => {
                // Leave out the nearest enclosing list element.
                match path.iter().rposition(|s| matches!(s, Seg::Index(_))) {
                    Some(i) => {
                        st.marks.insert(path[..=i].to_vec(), Mark::Skip);
                        true
                    }
                    None => false,
                }
            }
            Error::Fresh(f) => {
                // Every deserializer call places its errors; a stray one
                // belongs to the document.
                hard.push(Issue::at(Vec::new(), kind_of(f, None)));
                false
            }
        };
        if !fixed || hard.len() + st.soft.len() >= MAX_ERRORS {
            if hard.is_empty() && st.soft.is_empty() {
                hard.push(Issue::at(
                    Vec::new(),
                    ConfigErrorKind::Invalid("unreadable".into()),
                ));
            }
            break;
        }
    }
    let mut issues = state.into_inner().soft;
    issues.extend(hard);
    (value, issues)
}

impl State {
    /// Records a finding unless a more specific error at or below its place
    /// was already reported (then it is only a consequence of that one).
    fn record(&self, hard: &mut Vec<Issue>, path: &Path, kind: ConfigErrorKind) {
        let consequence = hard.iter().chain(&self.soft).any(|i| covers(path, &i.path));
        if !consequence {
            hard.push(Issue::at(path.clone(), kind));
        }
    }

    /// Gives required key `field` at `path` a placeholder value.
    fn placeholder(&mut self, path: Path, field: &'static str) {
        if let Some(parent) = path.split_last().map(|(_, p)| p.to_vec()) {
            let keys = self.synthetic.entry(parent).or_default();
            if !keys.contains(&field) {
                keys.push(field);
            }
        }
        self.marks.insert(path, Mark::Placeholder);
    }

    fn soft(&mut self, issue: Issue) {
        if self
            .soft_seen
            .insert((issue.path.clone(), issue.kind.to_string()))
        {
            self.soft.push(issue);
        }
    }
}

#[derive(Clone, Copy)]
enum Node<'v> {
    Real(&'v Value),
    Placeholder,
}

struct De<'s, 'v> {
    node: Node<'v>,
    path: Path,
    state: &'s RefCell<State>,
}

fn kind_of(f: Fresh, node: Option<&Value>) -> ConfigErrorKind {
    let found = node.map_or_else(|| "nothing".to_owned(), describe);
    match f {
        Fresh::Expected(expected) => ConfigErrorKind::WrongType { expected, found },
        Fresh::UnknownVariant { expected, .. } => ConfigErrorKind::WrongType {
            expected: quoted_choice(expected),
            found,
        },
        Fresh::Missing(_) => ConfigErrorKind::Missing,
        Fresh::Custom(m) => ConfigErrorKind::Invalid(m),
    }
}

impl<'v> De<'_, 'v> {
    fn child(&self, seg: Seg, node: Node<'v>) -> Self {
        let mut path = self.path.clone();
        path.push(seg);
        Self {
            node,
            path,
            state: self.state,
        }
    }

    /// Gives an error made below this node its place.
    fn locate(&self, e: Error) -> Error {
        let Error::Fresh(f) = e else { return e };
        match (self.node, f) {
            (Node::Placeholder, _) => Error::Refused {
                path: self.path.clone(),
            },
            (Node::Real(_), Fresh::Missing(field)) => {
                let mut path = self.path.clone();
                path.push(Seg::Key(field.to_owned()));
                let reported = self.state.borrow().marks.get(&path) != Some(&Mark::Skip);
                Error::Missing {
                    path,
                    field,
                    reported,
                }
            }
            (Node::Real(v), f) => Error::Found {
                path: self.path.clone(),
                kind: kind_of(f, Some(v)),
            },
        }
    }

    fn wrong(&self, expected: impl Into<String>) -> Error {
        let found = match self.node {
            Node::Real(v) => describe(v),
            Node::Placeholder => "a placeholder".into(),
        };
        Error::Found {
            path: self.path.clone(),
            kind: ConfigErrorKind::WrongType {
                expected: expected.into(),
                found,
            },
        }
    }

    fn mark(&self, path: &Path) -> Option<Mark> {
        self.state.borrow().marks.get(path).copied()
    }

    fn number<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_u64(0),
            Node::Real(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Node::Real(_) => return Err(self.wrong(Expecting(&visitor).to_string())),
        };
        r.map_err(|e| self.locate(e))
    }

    fn seq_elements(&self, items: &'v [Value]) -> Vec<(usize, Node<'v>)> {
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let mut path = self.path.clone();
            path.push(Seg::Index(i));
            match self.mark(&path) {
                Some(Mark::Skip) => {}
                Some(Mark::Placeholder) => out.push((i, Node::Placeholder)),
                None => out.push((i, Node::Real(v))),
            }
        }
        out
    }
}

/// Shows a visitor's `expecting` text.
struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

macro_rules! numbers {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.number(visitor)
        }
    )*};
}

impl<'de, 'v> de::Deserializer<'de> for De<'_, 'v> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_unit(),
            Node::Real(v) => match v {
                Value::Null => visitor.visit_unit(),
                Value::Bool(b) => visitor.visit_bool(*b),
                Value::Number(_) => return self.number(visitor),
                Value::String(s) => visitor.visit_str(s),
                Value::Sequence(_) => return self.deserialize_seq(visitor),
                Value::Mapping(_) => return self.deserialize_map(visitor),
                Value::Tagged(_) => return Err(self.wrong(Expecting(&visitor).to_string())),
            },
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_bool(false),
            Node::Real(Value::Bool(b)) => visitor.visit_bool(*b),
            Node::Real(_) => return Err(self.wrong("true or false")),
        };
        r.map_err(|e| self.locate(e))
    }

    numbers!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64
    );

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_str(""),
            Node::Real(Value::String(s)) => visitor.visit_str(s),
            Node::Real(_) => return Err(self.wrong("a string")),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Err(self.wrong(Expecting(&visitor).to_string()))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        Err(self.wrong(Expecting(&visitor).to_string()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A key that is present is `Some`, even when it holds `null`: routes
        // files say "absent" by leaving the key out, and `null` where a
        // value belongs is a mistake worth naming.
        match self.node {
            Node::Placeholder => visitor.visit_none().map_err(|e| self.locate(e)),
            Node::Real(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.node {
            Node::Placeholder | Node::Real(Value::Null) => visitor.visit_unit(),
            Node::Real(_) => return Err(self.wrong("null")),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items: &'v [Value] = match self.node {
            Node::Placeholder => &[],
            Node::Real(Value::Sequence(s)) => s,
            Node::Real(_) => return Err(self.wrong("a list")),
        };
        let elements = self.seq_elements(items);
        let access = Seq {
            parent: &self,
            elements: elements.into_iter(),
        };
        let r = visitor.visit_seq(access);
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.entries(None, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.entries(Some(fields), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let detector = DETECTOR_ENUMS.contains(&name);
        let word: &str = match self.node {
            Node::Placeholder => variants.first().copied().unwrap_or(""),
            Node::Real(Value::String(s)) => s,
            Node::Real(_) if detector => return Err(self.wrong("a string")),
            Node::Real(_) => return Err(self.wrong(quoted_choice(variants))),
        };
        match visitor.visit_enum(Word(word)) {
            Ok(v) => Ok(v),
            Err(Error::Fresh(Fresh::UnknownVariant { variant, expected }))
                if detector && matches!(self.node, Node::Real(_)) =>
            {
                Err(Error::Found {
                    path: self.path.clone(),
                    kind: ConfigErrorKind::UnknownDetector {
                        name: variant,
                        expected,
                    },
                })
            }
            Err(e) => Err(self.locate(e)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl<'v> De<'_, 'v> {
    /// A mapping: for a struct (`fields` given) unknown and non-string keys
    /// are reported without failing, hidden keys are left out and
    /// placeholders are yielded, also for required keys the mapping lacks.
    fn entries<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let map = match self.node {
            Node::Placeholder => None,
            Node::Real(Value::Mapping(m)) => Some(m),
            Node::Real(_) => return Err(self.wrong("a mapping")),
        };
        let mut entries: Vec<(String, Node<'v>)> = Vec::new();
        for (k, v) in map.into_iter().flatten() {
            let Value::String(key) = k else {
                let issue = Issue {
                    path: self.path.clone(),
                    anchor: Anchor::Parent,
                    kind: ConfigErrorKind::WrongType {
                        expected: "string keys".into(),
                        found: describe(k),
                    },
                };
                self.state.borrow_mut().soft(issue);
                continue;
            };
            let mut path = self.path.clone();
            path.push(Seg::Key(key.clone()));
            if let Some(fields) = fields
                && !fields.contains(&key.as_str())
            {
                let issue = Issue {
                    path,
                    anchor: Anchor::Parent,
                    kind: ConfigErrorKind::UnknownKey { expected: fields },
                };
                self.state.borrow_mut().soft(issue);
                continue;
            }
            match self.mark(&path) {
                Some(Mark::Skip) => {}
                Some(Mark::Placeholder) => entries.push((key.clone(), Node::Placeholder)),
                None => entries.push((key.clone(), Node::Real(v))),
            }
        }
        if let Some(extra) = self.state.borrow().synthetic.get(&self.path) {
            for k in extra {
                if !entries.iter().any(|(e, _)| e == k) {
                    entries.push(((*k).to_owned(), Node::Placeholder));
                }
            }
        }
        let access = Entries {
            parent: &self,
            items: entries.into_iter(),
            value: None,
        };
        let r = visitor.visit_map(access);
        r.map_err(|e| self.locate(e))
    }
}

struct Seq<'a, 's, 'v> {
    parent: &'a De<'s, 'v>,
    elements: std::vec::IntoIter<(usize, Node<'v>)>,
}

impl<'de> SeqAccess<'de> for Seq<'_, '_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.elements.next() else {
            return Ok(None);
        };
        let de = self.parent.child(Seg::Index(i), node);
        let placed = De {
            node,
            path: de.path.clone(),
            state: de.state,
        };
        seed.deserialize(de).map(Some).map_err(|e| placed.locate(e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.elements.len())
    }
}

struct Entries<'a, 's, 'v> {
    parent: &'a De<'s, 'v>,
    items: std::vec::IntoIter<(String, Node<'v>)>,
    value: Option<(String, Node<'v>)>,
}

impl<'de> MapAccess<'de> for Entries<'_, '_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, node)) = self.items.next() else {
            return Ok(None);
        };
        let k = seed
            .deserialize(key.as_str().into_deserializer())
            .map_err(|e: Error| self.parent.locate(e))?;
        self.value = Some((key, node));
        Ok(Some(k))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let Some((key, node)) = self.value.take() else {
            return Err(de::Error::custom("a value without a key"));
        };
        let de = self.parent.child(Seg::Key(key), node);
        let placed = De {
            node,
            path: de.path.clone(),
            state: de.state,
        };
        seed.deserialize(de).map_err(|e| placed.locate(e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An enum written as its variant's name.
struct Word<'a>(&'a str);

impl<'de> EnumAccess<'de> for Word<'_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let v = seed.deserialize(self.0.into_deserializer())?;
        Ok((v, self))
    }
}

impl<'de> VariantAccess<'de> for Word<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Error> {
        Err(Error::Fresh(Fresh::Expected("a plain name".into())))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        Err(Error::Fresh(Fresh::Expected("a plain name".into())))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(Error::Fresh(Fresh::Expected("a plain name".into())))
    }
}

/// The field names serde knows for struct `T`, in declaration order (the
/// keys a mapping of that type may have).
#[must_use]
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Capture<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Self
        }
    }
    impl<'de> de::Deserializer<'de> for Capture<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}
