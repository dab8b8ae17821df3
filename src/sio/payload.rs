//! Event arguments as the wire carries them: a JSON array plus binary attachments
//! referenced by `{"_placeholder":true,"num":N}`.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::proto::socketio::placeholder;

/// The arguments of an emit or an ack: JSON values, and binary attachments that the
/// values reference by placeholder. Build it with [`Args::new`] and [`Args::arg`] /
/// [`Args::bin`], or convert from a `Vec<Value>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    /// The arguments, in order. Binary arguments appear as placeholder objects.
    pub values: Vec<Value>,
    /// The binary attachments, indexed by the placeholders' `num`.
    pub bins: Vec<Bytes>,
}

/// Serializing an argument failed.
#[derive(Debug, thiserror::Error)]
#[error("argument serialization failed: {0}")]
pub struct SerializeError(#[from] serde_json::Error);

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// One argument.
    pub fn one<T: Serialize + ?Sized>(value: &T) -> Result<Self, SerializeError> {
        Ok(Args {
            values: vec![serde_json::to_value(value)?],
            bins: Vec::new(),
        })
    }

    /// Append a JSON argument.
    pub fn arg<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, SerializeError> {
        self.values.push(serde_json::to_value(value)?);
        Ok(self)
    }

    /// Append a JSON value as an argument.
    pub fn value(mut self, value: Value) -> Self {
        self.values.push(value);
        self
    }

    /// Append a binary argument (sent as an attachment).
    pub fn bin(mut self, data: impl Into<Bytes>) -> Self {
        self.values.push(placeholder(self.bins.len()));
        self.bins.push(data.into());
        self
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Argument `i` deserialized as `T` (a placeholder stays a placeholder object).
    pub fn get<T: DeserializeOwned>(&self, i: usize) -> Option<T> {
        self.values.get(i).and_then(|v| T::deserialize(v).ok())
    }

    /// Argument `i` as a string slice.
    pub fn str(&self, i: usize) -> Option<&str> {
        self.values.get(i).and_then(Value::as_str)
    }

    /// If argument `i` is a binary placeholder, its attachment.
    pub fn binary(&self, i: usize) -> Option<&Bytes> {
        let v = self.values.get(i)?;
        let num = placeholder_num(v)?;
        self.bins.get(num)
    }

    /// The arguments as one JSON array text, `["a",{"b":1}]` — the form the C ABI uses.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.values).unwrap_or_else(|_| "[]".to_owned())
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
        Args {
            values,
            bins: Vec::new(),
        }
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
