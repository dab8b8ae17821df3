//! Event arguments as the wire carries them: a JSON array plus binary attachments
//! referenced by `{"_placeholder":true,"num":N}`.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::proto::rawjson::{self, RawError};
use crate::proto::socketio::placeholder;

/// The arguments of an emit or an ack: JSON values, and binary attachments that the
/// values reference by placeholder. Build it with [`Args::new`] and [`Args::arg`] /
/// [`Args::bin`], convert from a `Vec<Value>`, or take JSON text with [`Args::from_json`].
///
/// Arguments that arrived as text (a decoded event or ack, [`Args::from_json`]) stay text
/// until [`Args::values`] first parses them; passing them on unread (an echo, a forward,
/// a broadcast) writes the same text to the wire without parsing it at all.
#[derive(Default)]
pub struct Args {
    /// The arguments as checked JSON array text (no placeholders), when they came as
    /// text and were not changed since; `values` then caches its parse.
    raw: Option<String>,
    values: OnceLock<Vec<Value>>,
    /// The binary attachments, indexed by the placeholders' `num`.
    pub bins: Vec<Bytes>,
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Args");
        match &self.raw {
            Some(raw) => d.field("json", raw),
            None => d.field("values", &self.values()),
        };
        d.field("bins", &self.bins).finish()
    }
}

impl Clone for Args {
    fn clone(&self) -> Self {
        Args {
            raw: self.raw.clone(),
            values: self.values.clone(),
            bins: self.bins.clone(),
        }
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Self) -> bool {
        self.bins == other.bins
            && match (&self.raw, &other.raw) {
                (Some(a), Some(b)) if a == b => true,
                _ => self.values() == other.values(),
            }
    }
}

/// Serializing an argument failed.
#[derive(Debug, thiserror::Error)]
#[error("argument serialization failed: {0}")]
pub struct SerializeError(#[from] serde_json::Error);

/// Why [`Args::from_json`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// Not valid JSON.
    #[error("arguments are not valid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not an array (the arguments list).
    #[error("arguments must be a JSON array (the arguments list)")]
    NotArray,
    /// Nested deeper than [`MAX_ARGS_DEPTH`].
    #[error("arguments nest deeper than {MAX_ARGS_DEPTH} levels")]
    TooDeep,
    /// A placeholder object references no given attachment.
    #[error("a placeholder references attachment {num:?}, but {bins} were given")]
    BadPlaceholder {
        /// The placeholder's `num` (`None` when missing or not a number).
        num: Option<u64>,
        /// How many attachments were given.
        bins: usize,
    },
}

/// Deepest nesting [`Args::from_json`] accepts (the array itself is level 1): the
/// decoder's default limit, so whatever is sent can be received.
pub const MAX_ARGS_DEPTH: usize = 64;

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arguments from JSON values.
    pub fn from_values(values: Vec<Value>) -> Self {
        Args {
            raw: None,
            values: OnceLock::from(values),
            bins: Vec::new(),
        }
    }

    /// Arguments from JSON values and the attachments their placeholders reference (not
    /// checked: a placeholder without attachment is sent as it is).
    pub fn from_parts(values: Vec<Value>, bins: Vec<Bytes>) -> Self {
        Args {
            raw: None,
            values: OnceLock::from(values),
            bins,
        }
    }

    /// Arguments from the JSON text of an array, checked (not parsed: it is sent as it
    /// is), with the attachments its placeholders reference. Errors: not JSON, not an
    /// array, nested deeper than [`MAX_ARGS_DEPTH`], a placeholder without attachment.
    pub fn from_json(json: &str, bins: Vec<Bytes>) -> Result<Self, ArgsError> {
        let info = rawjson::check_array(json, MAX_ARGS_DEPTH).map_err(|e| match e {
            RawError::Json(m) => ArgsError::InvalidJson(m),
            RawError::NotArray | RawError::NameNotString => ArgsError::NotArray,
            RawError::TooDeep => ArgsError::TooDeep,
        })?;
        if !info.placeholders {
            // Attachments nobody references are still sent (as the parsed path does).
            return Ok(Args {
                raw: Some(json.trim_matches([' ', '\t', '\n', '\r']).to_owned()),
                values: OnceLock::new(),
                bins,
            });
        }
        let values: Vec<Value> =
            serde_json::from_str(json).map_err(|e| ArgsError::InvalidJson(e.to_string()))?;
        for v in &values {
            check_placeholders(v, bins.len())?;
        }
        Ok(Args {
            raw: None,
            values: OnceLock::from(values),
            bins,
        })
    }

    /// Arguments from checked JSON array text with no placeholders (a decoded packet's).
    pub(crate) fn from_checked_json(json: String, bins: Vec<Bytes>) -> Self {
        Args {
            raw: Some(json),
            values: OnceLock::new(),
            bins,
        }
    }

    /// One argument.
    pub fn one<T: Serialize + ?Sized>(value: &T) -> Result<Self, SerializeError> {
        Ok(Args::from_values(vec![serde_json::to_value(value)?]))
    }

    /// Append a JSON argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, SerializeError> {
        self.values_mut().push(serde_json::to_value(value)?);
        Ok(self)
    }

    /// Append a JSON value as an argument.
    pub fn value(mut self, value: Value) -> Self {
        self.values_mut().push(value);
        self
    }

    /// Append a binary argument (sent as an attachment).
    pub fn bin(mut self, data: impl Into<Bytes>) -> Self {
        let n = self.bins.len();
        self.values_mut().push(placeholder(n));
        self.bins.push(data.into());
        self
    }

    /// The arguments, in order; binary arguments appear as placeholder objects. Text
    /// arguments are parsed on the first call.
    pub fn values(&self) -> &[Value] {
        self.values.get_or_init(|| match &self.raw {
            // Checked when it was stored: the parse cannot fail.
            Some(raw) => serde_json::from_str(raw).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// The arguments, to change (text arguments are parsed, and written from the values
    /// from now on).
    pub fn values_mut(&mut self) -> &mut Vec<Value> {
        self.values();
        self.raw = None;
        self.values.get_or_init(Vec::new);
        match self.values.get_mut() {
            Some(v) => v,
            None => unreachable!("initialised above"),
        }
    }

    /// The arguments as values.
    pub fn into_values(mut self) -> Vec<Value> {
        self.values();
        self.values.take().unwrap_or_default()
    }

    /// The JSON text of the arguments as they arrived, when they came as text and are
    /// unchanged (nothing to serialize).
    pub fn raw_json(&self) -> Option<&str> {
        self.raw.as_deref()
    }

    /// The JSON text as it arrived followed by one NUL byte (the text itself is
    /// unchanged: the NUL sits in its spare capacity), for handing to C without a copy;
    /// `None` when the arguments are not text. The slice includes the NUL.
    pub fn raw_json_nul(&mut self) -> Option<&[u8]> {
        let raw = self.raw.as_mut()?;
        raw.reserve(1);
        // SAFETY: `reserve(1)` left at least one byte of spare capacity; writing it (a
        // `MaybeUninit`) does not change the string, whose bytes stay valid UTF-8.
        let v = unsafe { raw.as_mut_vec() };
        v.spare_capacity_mut().first_mut()?.write(0);
        let (ptr, len) = (v.as_ptr(), v.len());
        // SAFETY: `len` initialized bytes plus the NUL written just above, all inside the
        // allocation, borrowed from `self` (no mutation while the slice lives).
        Some(unsafe { std::slice::from_raw_parts(ptr, len + 1) })
    }

    /// Split into the raw text (if any), the values (if parsed and no text) and the
    /// attachments: what the encoder needs.
    pub(crate) fn into_parts(self) -> (Result<String, Vec<Value>>, Vec<Bytes>) {
        let Args { raw, values, bins } = self;
        match raw {
            Some(r) => (Ok(r), bins),
            None => (Err(values.into_inner().unwrap_or_default()), bins),
        }
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.values().len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        match &self.raw {
            Some(raw) => rawjson::array_inner(raw).is_empty(),
            None => self.values().is_empty(),
        }
    }

    /// Argument `i` deserialized as `T` (a placeholder stays a placeholder object).
    pub fn get<T: DeserializeOwned>(&self, i: usize) -> Option<T> {
        self.values().get(i).and_then(|v| T::deserialize(v).ok())
    }

    /// Argument `i` as a string slice.
    pub fn str(&self, i: usize) -> Option<&str> {
        self.values().get(i).and_then(Value::as_str)
    }

    /// If argument `i` is a binary placeholder, its attachment.
    pub fn binary(&self, i: usize) -> Option<&Bytes> {
        let v = self.values().get(i)?;
        let num = placeholder_num(v)?;
        self.bins.get(num)
    }

    /// The arguments as one JSON array text, `["a",{"b":1}]` (the form the C ABI uses):
    /// borrowed when they arrived as text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.raw {
            Some(raw) => Cow::Borrowed(raw),
            None => {
                Cow::Owned(serde_json::to_string(self.values()).unwrap_or_else(|_| "[]".to_owned()))
            }
        }
    }

    /// The arguments as one JSON array text (see [`Args::json`]).
    pub fn to_json(&self) -> String {
        self.json().into_owned()
    }
}

fn check_placeholders(v: &Value, n: usize) -> Result<(), ArgsError> {
    match v {
        Value::Object(o) => {
            if o.get("_placeholder").and_then(Value::as_bool) == Some(true) {
                let num = o.get("num").and_then(Value::as_u64);
                return match num {
                    Some(k) if usize::try_from(k).is_ok_and(|k| k < n) => Ok(()),
                    _ => Err(ArgsError::BadPlaceholder { num, bins: n }),
                };
            }
            o.values().try_for_each(|x| check_placeholders(x, n))
        }
        Value::Array(a) => a.iter().try_for_each(|x| check_placeholders(x, n)),
        _ => Ok(()),
    }
}

/// `num` of a `{"_placeholder":true,"num":N}` object.
pub(crate) fn placeholder_num(v: &Value) -> Option<usize> {
    let o = v.as_object()?;
    if o.get("_placeholder")?.as_bool()? {
        o.get("num")?.as_u64().map(|n| n as usize)
    } else {
        None
    }
}

impl From<Vec<Value>> for Args {
    fn from(values: Vec<Value>) -> Self {
        Args::from_values(values)
    }
}

impl From<Value> for Args {
    /// A JSON array becomes the argument list; any other value is the one argument.
    fn from(v: Value) -> Self {
        match v {
            Value::Array(values) => values.into(),
            other => vec![other].into(),
        }
    }
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No reply within the timeout.
    #[error("ack timeout")]
    Timeout,
    /// The socket disconnected before replying.
    #[error("socket disconnected")]
    Disconnected,
    /// The packet could not be queued.
    #[error("emit failed: {0}")]
    Send(#[from] crate::engine::SendError),
    /// The emit was refused before anything was sent (reserved event name, full
    /// offline buffer, unserializable argument).
    #[error("emit refused: {0}")]
    Rejected(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_arguments_stay_text_until_read() {
        let a = Args::from_json(r#" [1, {"a": "b"}] "#, Vec::new()).unwrap();
        assert_eq!(a.raw_json(), Some(r#"[1, {"a": "b"}]"#));
        assert_eq!(a.json(), r#"[1, {"a": "b"}]"#);
        assert!(!a.is_empty());
        assert_eq!(a.values(), [json!(1), json!({"a": "b"})]);
        assert_eq!(a.len(), 2);
        // Reading keeps the text; changing drops it.
        assert!(a.raw_json().is_some());
        let mut b = a.clone();
        assert_eq!(a, b);
        b.values_mut().push(json!(null));
        assert_eq!(b.raw_json(), None);
        assert_eq!(b.json(), r#"[1,{"a":"b"},null]"#);
        assert_ne!(a, b);
        assert_eq!(a, Args::from(vec![json!(1), json!({"a": "b"})]));
        assert!(Args::from_json("[ ]", Vec::new()).unwrap().is_empty());
        assert_eq!(Args::new().json(), "[]");
    }

    #[test]
    fn json_arguments_are_checked() {
        assert!(matches!(
            Args::from_json("[1,", Vec::new()),
            Err(ArgsError::InvalidJson(_))
        ));
        assert_eq!(Args::from_json("{}", Vec::new()), Err(ArgsError::NotArray));
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_ARGS_DEPTH + 1),
            "]".repeat(MAX_ARGS_DEPTH + 1)
        );
        assert_eq!(Args::from_json(&deep, Vec::new()), Err(ArgsError::TooDeep));
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_ARGS_DEPTH),
            "]".repeat(MAX_ARGS_DEPTH)
        );
        assert!(Args::from_json(&ok, Vec::new()).is_ok());
        // Placeholders need their attachments (and then the values are parsed).
        let p = r#"["x", {"_placeholder": true, "num": 0}]"#;
        assert_eq!(
            Args::from_json(p, Vec::new()),
            Err(ArgsError::BadPlaceholder {
                num: Some(0),
                bins: 0
            })
        );
        let a = Args::from_json(p, vec![Bytes::from_static(b"\x01")]).unwrap();
        assert_eq!(a.raw_json(), None);
        assert_eq!(a.binary(1).map(|b| b.as_ref()), Some(&b"\x01"[..]));
    }
}
