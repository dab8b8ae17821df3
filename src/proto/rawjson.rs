//! Checking JSON text without building values: the arguments of an event can then travel
//! as the text that arrived (an echo or a broadcast re-sends it byte for byte) and are
//! parsed into `serde_json::Value`s only when someone looks at them.
//!
//! [`check_array`] validates one JSON array with `serde_json`'s own parser (so it accepts
//! exactly what `serde_json::from_str::<Value>` accepts), bounds its nesting, and reports
//! whether any object carries a `"_placeholder"` key (binary attachment references, which
//! need the parsed form to be checked). Nothing is allocated for the values themselves.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Why [`check_array`] or [`check_event`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// Not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Valid JSON, but not an array.
    #[error("not a JSON array")]
    NotArray,
    /// Arrays and objects nest deeper than allowed.
    #[error("JSON nesting too deep")]
    TooDeep,
    /// (Events) the first element is not a string.
    #[error("the event name is not a string")]
    NameNotString,
}

/// What [`check_array`] found out about a valid array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayInfo {
    /// Number of elements.
    pub len: usize,
    /// Whether some object (at any depth) has a `"_placeholder"` key.
    pub placeholders: bool,
}

/// Validates that `text` is one JSON array (surrounding whitespace allowed) whose arrays
/// and objects nest at most `max_depth` deep (`[]` is depth 1).
pub fn check_array(text: &str, max_depth: usize) -> Result<ArrayInfo, RawError> {
    let ((len, _), placeholders) = walk(text, max_depth, false)?;
    Ok(ArrayInfo { len, placeholders })
}

/// Runs the checking visitor over `text`: the element count, the event name (when
/// `event`), and whether a placeholder key was seen.
fn walk(
    text: &str,
    max_depth: usize,
    event: bool,
) -> Result<((usize, Option<String>), bool), RawError> {
    let ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let r = Top {
        ctx: &ctx,
        left: max_depth,
        event,
    }
    .deserialize(&mut de)
    .and_then(|out| de.end().map(|()| out));
    match r {
        Ok(out) => Ok((out, ctx.placeholder.get())),
        Err(e) => Err(ctx.error(e)),
    }
}

/// An event's JSON `["name", ...args]`, checked as [`check_array`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventText {
    /// The event name (unescaped).
    pub name: String,
    /// The arguments as a JSON array text `[...]` (the input after the name, re-opened).
    pub args: String,
    /// Whether some object has a `"_placeholder"` key.
    pub placeholders: bool,
}

/// Validates an event's JSON: an array whose first element is a string, within
/// `max_depth`; returns the name and the arguments' text.
pub fn check_event(text: &str, max_depth: usize) -> Result<EventText, RawError> {
    let ((_, name), placeholders) = walk(text, max_depth, true)?;
    let name = name.ok_or(RawError::NameNotString)?;
    let rest = after_first_string(text).ok_or(RawError::NameNotString)?;
    let rest = rest.trim_start_matches(is_ws);
    let mut args = String::with_capacity(rest.len() + 2);
    args.push('[');
    match rest.strip_prefix(',') {
        Some(tail) => args.push_str(tail.trim_end_matches(is_ws)),
        None => args.push(']'),
    }
    Ok(EventText {
        name,
        args,
        placeholders,
    })
}

/// The elements of a JSON array text, without the brackets and outer whitespace: `""`
/// for an empty array. `text` must be a valid JSON array.
pub fn array_inner(text: &str) -> &str {
    let t = text.trim_matches(is_ws);
    let inner = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or_default();
    inner.trim_matches(is_ws)
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The text after the closing quote of the first JSON string in `text` (valid JSON whose
/// first token inside the opening bracket is a string).
fn after_first_string(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let open = b.iter().position(|&c| c == b'"')?;
    let mut i = open + 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return text.get(i + 1..),
            _ => i += 1,
        }
    }
    None
}

#[derive(Default)]
struct Ctx {
    too_deep: Cell<bool>,
    not_array: Cell<bool>,
    not_string: Cell<bool>,
    placeholder: Cell<bool>,
}

impl Ctx {
    fn error(&self, e: serde_json::Error) -> RawError {
        if self.too_deep.get() {
            RawError::TooDeep
        } else if self.not_array.get() {
            RawError::NotArray
        } else if self.not_string.get() {
            RawError::NameNotString
        } else {
            RawError::Json(e.to_string())
        }
    }
}

/// The top-level array; for an event, its first element is the name.
struct Top<'c> {
    ctx: &'c Ctx,
    left: usize,
    event: bool,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = (usize, Option<String>);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = (usize, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.left == 0 {
            self.ctx.too_deep.set(true);
            return Err(de::Error::custom("too deep"));
        }
        let mut len = 0usize;
        let mut name = None;
        if self.event {
            match seq.next_element_seed(Name(self.ctx))? {
                Some(n) => {
                    name = Some(n);
                    len = 1;
                }
                None => return Ok((0, None)),
            }
        }
        while seq
            .next_element_seed(Skip {
                ctx: self.ctx,
                left: self.left - 1,
            })?
            .is_some()
        {
            len += 1;
        }
        Ok((len, name))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        self.not_array()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        self.not_array()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.not_array()
    }
}

impl Top<'_> {
    fn not_array<T, E: de::Error>(&self) -> Result<T, E> {
        self.ctx.not_array.set(true);
        Err(E::custom("not an array"))
    }
}

/// An event name: a string.
struct Name<'c>(&'c Ctx);

impl<'de> DeserializeSeed<'de> for Name<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Name<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        // One spare byte: the C ABI NUL-terminates names in place.
        let mut s = String::with_capacity(v.len() + 1);
        s.push_str(v);
        Ok(s)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        self.not_string()
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        self.not_string()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        self.not_string()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        self.not_string()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        self.not_string()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        self.not_string()
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        self.not_string()
    }
}

impl Name<'_> {
    fn not_string<E: de::Error>(&self) -> Result<String, E> {
        self.0.not_string.set(true);
        Err(E::custom("the event name is not a string"))
    }
}

/// Any value, checked and dropped; containers may nest `left` more levels.
struct Skip<'c> {
    ctx: &'c Ctx,
    left: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.left == 0 {
            self.ctx.too_deep.set(true);
            return Err(de::Error::custom("too deep"));
        }
        let child = || Skip {
            ctx: self.ctx,
            left: self.left - 1,
        };
        while seq.next_element_seed(child())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.left == 0 {
            self.ctx.too_deep.set(true);
            return Err(de::Error::custom("too deep"));
        }
        while let Some(is_placeholder) = map.next_key_seed(Key)? {
            if is_placeholder {
                self.ctx.placeholder.set(true);
            }
            map.next_value_seed(Skip {
                ctx: self.ctx,
                left: self.left - 1,
            })?;
        }
        Ok(())
    }
}

/// An object key; `true` when it is `"_placeholder"`.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "_placeholder")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn arrays_are_checked_like_serde_json_parses_them() {
        for ok in [
            "[]",
            " [1, \"a\", {\"b\": [null, true]}] ",
            "[1.5e300,-0,\"\\u00e9\"]",
        ] {
            assert!(serde_json::from_str::<Value>(ok).is_ok());
            assert!(check_array(ok, 8).is_ok(), "{ok}");
        }
        assert_eq!(check_array("[1,2,[3]]", 8).map(|i| i.len), Ok(3));
        assert_eq!(check_array("{}", 8), Err(RawError::NotArray));
        assert_eq!(check_array("\"x\"", 8), Err(RawError::NotArray));
        assert!(matches!(check_array("[1,]", 8), Err(RawError::Json(_))));
        assert!(matches!(check_array("[1] x", 8), Err(RawError::Json(_))));
        assert!(matches!(
            check_array("[\"\\ud800\"]", 8),
            Err(RawError::Json(_))
        ));
        assert_eq!(check_array("[[[]]]", 3).map(|i| i.len), Ok(1));
        assert_eq!(check_array("[[[]]]", 2), Err(RawError::TooDeep));
        assert_eq!(check_array("[{\"a\":{}}]", 2), Err(RawError::TooDeep));
        assert_eq!(check_array("[]", 0), Err(RawError::TooDeep));
    }

    #[test]
    fn placeholders_are_reported() {
        let i = check_array(r#"[{"x":[{"_placeholder":true,"num":0}]}]"#, 8).unwrap();
        assert!(i.placeholders);
        let i = check_array(r#"[{"_placeholde":true}]"#, 8).unwrap();
        assert!(!i.placeholders);
        let i = check_array(r#"[{"\u005fplaceholder":1}]"#, 8).unwrap();
        assert!(i.placeholders);
    }

    #[test]
    fn events_split_name_and_args() {
        let e = check_event(r#" [ "chat" , 1, {"a":"]"} ] "#, 8).unwrap();
        assert_eq!(e.name, "chat");
        assert_eq!(e.args, r#"[ 1, {"a":"]"} ]"#);
        let back: Value = serde_json::from_str(&e.args).unwrap();
        assert_eq!(back, serde_json::json!([1, {"a": "]"}]));
        let e = check_event(r#"["a\"b\\"]"#, 8).unwrap();
        assert_eq!(e.name, "a\"b\\");
        assert_eq!(e.args, "[]");
        assert_eq!(array_inner(&e.args), "");
        assert_eq!(check_event("[1]", 8), Err(RawError::NameNotString));
        assert_eq!(check_event("[]", 8), Err(RawError::NameNotString));
        assert_eq!(check_event("{}", 8), Err(RawError::NotArray));
        assert_eq!(array_inner(" [ 1 , 2 ] "), "1 , 2");
    }
}
