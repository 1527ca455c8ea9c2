//! The canonical encoding: the serialized value's tree, written out with sorted maps.

use serde::ser::Serialize;

use super::digest::HEX_DIGITS;
use super::direct;
use super::error::KeyError;
use super::serializer::NodeSerializer;

/// Encodes `value` in idem's canonical JSON: map keys and struct fields sorted by their
/// UTF-8 bytes, integers in decimal (up to 128 bits), strings escaped as RFC 8259
/// requires and nothing more (`"`, `\\` and U+0000 to U+001F), no whitespace, and no
/// floats (their text form is not canonical). Enums are externally tagged, as
/// `serde_json` writes them. The format is frozen: digests and tokens depend on it.
///
/// ```
/// # use idem_core::key::canonical_json;
/// # #[derive(serde::Serialize)] struct Order { id: u64, customer: &'static str }
/// let bytes = canonical_json(&Order { id: 7, customer: "ada" }).unwrap();
/// assert_eq!(bytes, br#"{"customer":"ada","id":7}"#);
/// assert!(canonical_json(&1.5f64).is_err());
/// ```
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, KeyError> {
    let node = value.serialize(NodeSerializer)?;
    let mut out = Vec::new();
    node.write(&mut out);
    Ok(out)
}

/// Encodes a key: [`canonical_json`], refusing the empty values `""`, `null`, `[]` and
/// `{}` (a key that is always empty would make every call a duplicate of the first),
/// and a tuple key with such a value as a part: `(tenant, None)` for two requests
/// without an idempotency key would make them share one record, and the second would
/// get the first one's result. (Fields inside a struct key are the user's own data and
/// may be empty.)
///
/// ```
/// # use idem_core::key::canonical_key;
/// assert!(canonical_key(&("tenant-1", "req-7")).is_ok());
/// assert!(canonical_key(&("tenant-1", None::<&str>)).unwrap_err().is_empty_key());
/// assert!(canonical_key(&("tenant-1", "")).unwrap_err().is_empty_key());
/// ```
pub fn canonical_key<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, KeyError> {
    // The common keys (a scalar, or a tuple of scalars) are written straight out.
    let mut out = Vec::with_capacity(64);
    match direct::write_key(value, &mut out) {
        Ok(false) => Ok(out),
        // Empty, or another shape: the tree says which, and writes the rest.
        Ok(true) | Err(direct::Fallback) => tree_key(value),
    }
}

/// [`canonical_key`] through the tree: every shape, and every error.
pub(super) fn tree_key<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, KeyError> {
    let node = value.serialize(NodeSerializer)?;
    if node.is_empty() {
        let mut bytes = Vec::new();
        node.write(&mut bytes);
        return Err(KeyError::empty(format!(
            "the key is empty ({}); key on a value that tells events apart, such as a request id",
            String::from_utf8_lossy(&bytes)
        )));
    }
    if let Node::Tuple(parts) = &node {
        if let Some(part) = parts.iter().position(Node::is_empty) {
            return Err(KeyError::empty(format!(
                "part {part} of the tuple key is empty (\"\", null, [] or {{}}); two events \
                 without that part would share one record"
            )));
        }
    }
    let mut out = Vec::with_capacity(64);
    node.write(&mut out);
    Ok(out)
}

/// The serialized value, before it is written out with sorted maps.
pub(super) enum Node {
    Null,
    Bool(bool),
    /// An integer, already in decimal.
    Int(String),
    Str(String),
    Seq(Vec<Node>),
    /// A tuple (written as a sequence): its parts are a composite key's parts.
    Tuple(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// `""`, `null`, `[]` or `{}`.
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Node::Null => true,
            Node::Str(s) => s.is_empty(),
            Node::Seq(items) | Node::Tuple(items) => items.is_empty(),
            Node::Map(entries) => entries.is_empty(),
            Node::Bool(_) | Node::Int(_) => false,
        }
    }

    pub(super) fn write(self, out: &mut Vec<u8>) {
        match self {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Int(digits) => out.extend_from_slice(digits.as_bytes()),
            Node::Str(s) => write_str(&s, out),
            Node::Seq(items) | Node::Tuple(items) => {
                out.push(b'[');
                for (i, item) in items.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Node::Map(mut entries) => {
                // Stable: equal keys (a map holding both 1 and "1") keep their order.
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push(b'{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(&key, out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// A JSON string: `"` and `\` escaped, control characters U+0000 to U+001F escaped
/// (short forms where JSON has them, `\u00xx` otherwise), everything else verbatim.
pub(super) fn write_str(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    // Runs of bytes that need no escape are copied whole.
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX_DIGITS[usize::from(b >> 4)]);
            out.push(HEX_DIGITS[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
