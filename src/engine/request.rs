//! The handshake request a connection keeps: one compact buffer, expanded on demand.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use crate::config::RequestInfo;

/// The HTTP request that opened a connection, shared (cheap to clone) by the Engine.IO
/// session and every Socket.IO socket of it.
///
/// It keeps the path and query and the headers in one buffer, so an idle connection does
/// not hold a whole [`http::HeaderMap`]. [`SharedRequest::header`],
/// [`SharedRequest::query`], [`SharedRequest::query_pairs`] and [`SharedRequest::peer`]
/// read that buffer directly. It dereferences to a [`RequestInfo`] for everything else
/// (`request.headers`, `request.uri`, `request.peer`): the first such access builds the
/// full `RequestInfo` once and keeps it for the connection's life.
///
/// Header names are lowercase; values keep their bytes; repeated headers keep their order.
/// Thread-safe (`Send + Sync`).
#[derive(Clone)]
pub struct SharedRequest(Arc<Compact>);

struct Compact {
    peer: SocketAddr,
    /// The path and query, then per header: name length (u16 LE), value length (u32 LE),
    /// name, value.
    raw: Box<[u8]>,
    uri_len: usize,
    full: OnceLock<Box<RequestInfo>>,
}

/// Bytes of a header entry's lengths.
const ENTRY_HEAD: usize = 6;

impl SharedRequest {
    /// Copy what a connection keeps of a request: its path and query, headers and peer.
    /// Headers whose name or value is too long for the compact form (a name over 65535
    /// bytes, a value over 4 GiB; hyper never accepts such requests) are left out.
    pub fn new(uri: &http::Uri, headers: &http::HeaderMap, peer: SocketAddr) -> SharedRequest {
        let pq = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        let fits = |k: &http::HeaderName, v: &http::HeaderValue| {
            u16::try_from(k.as_str().len()).is_ok() && u32::try_from(v.len()).is_ok()
        };
        let size = pq.len()
            + headers
                .iter()
                .filter(|(k, v)| fits(k, v))
                .map(|(k, v)| ENTRY_HEAD + k.as_str().len() + v.len())
                .sum::<usize>();
        let mut raw = Vec::with_capacity(size);
        raw.extend_from_slice(pq.as_bytes());
        for (k, v) in headers {
            if !fits(k, v) {
                continue;
            }
            raw.extend_from_slice(&(k.as_str().len() as u16).to_le_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_le_bytes());
            raw.extend_from_slice(k.as_str().as_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        SharedRequest(Arc::new(Compact {
            peer,
            raw: raw.into_boxed_slice(),
            uri_len: pq.len(),
            full: OnceLock::new(),
        }))
    }

    /// The compact form of `info`.
    pub fn from_info(info: &RequestInfo) -> SharedRequest {
        SharedRequest::new(&info.uri, &info.headers, info.peer)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    /// The request's path and query (`/socket.io/?EIO=4&transport=websocket`).
    pub fn path_and_query(&self) -> &str {
        self.0
            .raw
            .get(..self.0.uri_len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("/")
    }

    /// The first value of query parameter `key`, percent-decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        let (_, q) = self.path_and_query().split_once('?')?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// All query parameters, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        match self.path_and_query().split_once('?') {
            Some((_, q)) => form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The first value of header `name` (any case) as text, if present and visible
    /// ASCII (as [`http::HeaderValue::to_str`] decides).
    pub fn header(&self, name: &str) -> Option<&str> {
        let (_, v) = self.headers().find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        let visible = v.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
        if !visible {
            return None;
        }
        std::str::from_utf8(v).ok()
    }

    /// Every header as `(lowercase name, value bytes)`, in the request's order (repeated
    /// names: each value, in order).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let mut rest = self.0.raw.get(self.0.uri_len..).unwrap_or(&[]);
        std::iter::from_fn(move || {
            let head = rest.get(..ENTRY_HEAD)?;
            let nl = u16::from_le_bytes([head[0], head[1]]) as usize;
            let vl = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
            let body = rest.get(ENTRY_HEAD..)?;
            let name = body.get(..nl)?;
            let value = body.get(nl..nl + vl)?;
            rest = body.get(nl + vl..)?;
            Some((std::str::from_utf8(name).ok()?, value))
        })
    }

    /// The full request, built now (without keeping it; dereferencing keeps it).
    pub fn to_info(&self) -> RequestInfo {
        let uri = http::Uri::try_from(self.path_and_query())
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        let mut headers = http::HeaderMap::with_capacity(self.headers().count());
        for (k, v) in self.headers() {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_bytes(v),
            ) {
                headers.append(k, v);
            }
        }
        RequestInfo {
            uri,
            headers,
            peer: self.0.peer,
        }
    }
}

impl std::ops::Deref for SharedRequest {
    type Target = RequestInfo;

    /// The full request, built on first use and kept.
    fn deref(&self) -> &RequestInfo {
        self.0.full.get_or_init(|| Box::new(self.to_info()))
    }
}

impl From<RequestInfo> for SharedRequest {
    fn from(info: RequestInfo) -> Self {
        SharedRequest::from_info(&info)
    }
}

impl fmt::Debug for SharedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'a>(&'a SharedRequest);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(
                        self.0
                            .headers()
                            .map(|(k, v)| (k, String::from_utf8_lossy(v))),
                    )
                    .finish()
            }
        }
        f.debug_struct("RequestInfo")
            .field("uri", &self.path_and_query())
            .field("headers", &Headers(self))
            .field("peer", &self.0.peer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (http::Uri, http::HeaderMap, SocketAddr) {
        let uri: http::Uri = "http://example.com/socket.io/?EIO=4&transport=websocket&x=a%20b"
            .parse()
            .unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("host", "example.com".parse().unwrap());
        h.append("x-multi", "one".parse().unwrap());
        h.append("x-multi", "two".parse().unwrap());
        h.insert("cookie", "a=1; b=2".parse().unwrap());
        h.insert(
            "x-bin",
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        (uri, h, "127.0.0.1:4000".parse().unwrap())
    }

    #[test]
    fn compact_reads_match_the_full_request() {
        let (uri, h, peer) = sample();
        let full = RequestInfo::owned(&uri, &h, peer);
        let c = SharedRequest::new(&uri, &h, peer);
        assert_eq!(c.peer(), peer);
        assert_eq!(
            c.path_and_query(),
            "/socket.io/?EIO=4&transport=websocket&x=a%20b"
        );
        for name in [
            "host", "HOST", "x-multi", "cookie", "x-bin", "missing", "bad name",
        ] {
            assert_eq!(c.header(name), full.header(name), "{name}");
        }
        assert_eq!(c.header("X-Multi"), Some("one"));
        assert_eq!(c.query("x").as_deref(), Some("a b"));
        assert_eq!(c.query("EIO"), full.query("EIO"));
        assert_eq!(c.query("nope"), None);
        assert_eq!(c.query_pairs(), full.query_pairs());
        assert_eq!(c.headers().count(), 5);
        // Nothing expanded so far.
        assert!(c.0.full.get().is_none());
        // The deref gives the same request, and keeps it.
        assert_eq!(c.uri, full.uri);
        assert_eq!(c.headers, full.headers);
        assert_eq!(c.peer, full.peer);
        assert!(c.0.full.get().is_some());
        let again = c.clone();
        assert!(std::ptr::eq(&*again, &*c));
    }

    #[test]
    fn no_query_and_no_headers() {
        let uri: http::Uri = "/".parse().unwrap();
        let c = SharedRequest::new(&uri, &http::HeaderMap::new(), "[::1]:1".parse().unwrap());
        assert_eq!(c.query("a"), None);
        assert!(c.query_pairs().is_empty());
        assert_eq!(c.headers().count(), 0);
        assert_eq!(c.to_info().uri, "/");
        assert!(format!("{c:?}").contains("RequestInfo"));
    }
}
