//! [`Str`]: a cheaply clonable UTF-8 string backed by [`bytes::Bytes`].

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};

use bytes::Bytes;

/// A cheaply clonable, immutable UTF-8 string backed by [`Bytes`].
///
/// Cloning and slicing never copy the text. The content is always valid UTF-8: every
/// constructor either starts from a `str`/`String` or validates the bytes.
///
/// `Hash`, `Eq` and `Ord` agree with those of `str`, so a `HashMap<Str, _>` or
/// `BTreeMap<Str, _>` can be looked up with a `&str`.
#[derive(Clone, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Str(Bytes);

impl Str {
    /// A `Str` pointing at static text, without allocating.
    pub const fn from_static(s: &'static str) -> Str {
        Str(Bytes::from_static(s.as_bytes()))
    }

    /// A `Str` holding a copy of `s` (use `From<String>` to reuse an owned buffer instead).
    pub fn copy_from(s: &str) -> Str {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `Str` guarantees the bytes are valid UTF-8 (they come
        // from a `str`/`String`, from `std::str::from_utf8` validation, or from slicing an
        // existing `Str` on char boundaries), and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The UTF-8 bytes of the text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Wraps `b` after checking that it is valid UTF-8 (no copy).
    pub fn try_from_bytes(b: Bytes) -> Result<Str, std::str::Utf8Error> {
        std::str::from_utf8(&b)?;
        Ok(Str(b))
    }

    /// The text from byte offset `start` to the end, sharing the buffer.
    ///
    /// Never panics: when `start` is greater than the length or is not on a char boundary,
    /// the result is the empty string.
    pub fn slice_from(&self, start: usize) -> Str {
        if self.as_str().is_char_boundary(start) {
            Str(self.0.slice(start..))
        } else {
            Str::default()
        }
    }

    /// The text in byte range `range`, sharing the buffer; `None` when the range is reversed,
    /// out of bounds, or either end is not on a char boundary.
    pub fn slice(&self, range: Range<usize>) -> Option<Str> {
        let s = self.as_str();
        if range.start <= range.end
            && range.end <= s.len()
            && s.is_char_boundary(range.start)
            && s.is_char_boundary(range.end)
        {
            Some(Str(self.0.slice(range)))
        } else {
            None
        }
    }
}

impl Hash for Str {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must match `str`'s Hash for `Borrow<str>` lookups to work.
        self.as_str().hash(state);
    }
}

impl From<String> for Str {
    fn from(s: String) -> Str {
        Str(Bytes::from(s))
    }
}

impl From<&'static str> for Str {
    fn from(s: &'static str) -> Str {
        Str::from_static(s)
    }
}

impl From<Str> for Bytes {
    fn from(s: Str) -> Bytes {
        s.0
    }
}

impl From<Str> for String {
    fn from(s: Str) -> String {
        s.as_str().to_owned()
    }
}

impl TryFrom<Bytes> for Str {
    type Error = std::str::Utf8Error;

    fn try_from(b: Bytes) -> Result<Str, Self::Error> {
        Str::try_from_bytes(b)
    }
}

impl Deref for Str {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Str {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Str {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Str> for str {
    fn eq(&self, other: &Str) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Str> for &str {
    fn eq(&self, other: &Str) -> bool {
        *self == other.as_str()
    }
}

impl serde::Serialize for Str {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Str {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Str, D::Error> {
        String::deserialize(deserializer).map(Str::from)
    }
}

#[cfg(test)]
mod tests {
    use super::Str;
    use bytes::Bytes;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn constructors_and_accessors() {
        const S: Str = Str::from_static("hello");
        assert_eq!(S.as_str(), "hello");
        assert_eq!(S.len(), 5);
        assert!(!S.is_empty());
        assert!(Str::default().is_empty());
        assert_eq!(Str::from(String::from("abc")), "abc");
        assert_eq!(Str::from("abc"), *"abc");
        assert_eq!(Str::copy_from("xyz").as_bytes(), b"xyz");
        assert_eq!(Str::from("q").into_bytes(), Bytes::from_static(b"q"));
        assert_eq!(String::from(Str::from("s")), "s");
        let abc = Str::from("abc");
        assert!("abc" == abc);
        assert!(*"abc" == abc);
        assert_eq!(Str::from("abc"), String::from("abc"));
    }

    #[test]
    fn try_from_bytes_validates() {
        assert_eq!(
            Str::try_from_bytes(Bytes::from_static("é".as_bytes())).ok(),
            Some(Str::from("é"))
        );
        assert!(Str::try_from_bytes(Bytes::from_static(b"\xff\xfe")).is_err());
        assert!(Str::try_from_bytes(Bytes::from_static(b"a\xc3")).is_err());
        assert!(Str::try_from(Bytes::from_static(b"ok")).is_ok());
    }

    #[test]
    fn slicing_never_panics() {
        let s = Str::from("aé😀b");
        assert_eq!(s.slice_from(0), "aé😀b");
        assert_eq!(s.slice_from(1), "é😀b");
        assert_eq!(s.slice_from(2), ""); // inside 'é'
        assert_eq!(s.slice_from(3), "😀b");
        assert_eq!(s.slice_from(s.len()), "");
        assert_eq!(s.slice_from(s.len() + 1), "");
        assert_eq!(s.slice_from(usize::MAX), "");
        assert_eq!(s.slice(0..1), Some(Str::from("a")));
        assert_eq!(s.slice(1..3), Some(Str::from("é")));
        assert_eq!(s.slice(1..2), None);
        assert_eq!(s.slice(3..5), None);
        assert_eq!(s.slice(0..s.len()), Some(s.clone()));
        assert_eq!(s.slice(0..s.len() + 1), None);
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = s.slice(3..1);
        assert_eq!(reversed, None);
        assert_eq!(s.slice(s.len()..s.len()), Some(Str::default()));
        for i in 0..s.len() + 2 {
            for j in 0..s.len() + 2 {
                let _ = s.slice(i..j);
            }
            let _ = s.slice_from(i);
        }
    }

    #[test]
    fn hash_and_ord_agree_with_str() {
        let mut map = HashMap::new();
        map.insert(Str::from("/admin"), 1);
        assert_eq!(map.get("/admin"), Some(&1));
        let mut tree = BTreeMap::new();
        tree.insert(Str::from("b"), 2);
        tree.insert(Str::from("a"), 1);
        assert_eq!(tree.get("a"), Some(&1));
        assert_eq!(
            tree.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let (a, b) = (Str::from("a"), Str::from("b"));
        assert!(a < b);
    }

    #[test]
    fn formatting_and_serde() {
        let s = Str::from("a\"b");
        assert_eq!(format!("{s}"), "a\"b");
        assert_eq!(format!("{s:?}"), format!("{:?}", "a\"b"));
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some(r#""a\"b""#));
        let back: Result<Str, _> = serde_json::from_str(r#""x\u00e9""#);
        assert_eq!(back.ok(), Some(Str::from("xé")));
        assert_eq!(&*s, "a\"b");
        let r: &str = s.as_ref();
        assert_eq!(r, "a\"b");
    }
}
