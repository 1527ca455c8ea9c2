//! Keys, tokens and namespaces: the frozen formats.
//!
//! A key is any [`serde::Serialize`] value, encoded by idem's own canonical serializer:
//! JSON with map keys (and struct fields) sorted by their UTF-8 bytes, integers in
//! decimal (up to 128 bits), strings escaped as RFC 8259 requires and nothing more, no
//! whitespace, and no floats (their text form is not canonical). The digest is the
//! lowercase hex SHA-256 of `namespace || 0x00 || canonical bytes`, or HMAC-SHA-256
//! keyed with the engine's secret. These formats never change: downstream systems store
//! the token, and records written by one version are found by the next.
//!
//! A plain SHA-256 digest is pseudonymous, not anonymous: anyone who can guess a key
//! can recompute its digest. Where keys carry personal data (an e-mail address, an
//! account number), configure a secret with
//! [`EngineBuilder::secret`](crate::EngineBuilder::secret).

use std::fmt;

use hmac::{Hmac, Mac};
use serde::ser::{self, Serialize};
use sha2::{Digest as _, Sha256};

/// Why a value cannot serve as a key (or fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    message: String,
    empty: bool,
}

impl KeyError {
    fn new(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
            empty: false,
        }
    }

    fn empty(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
            empty: true,
        }
    }

    /// Whether the key was refused for being empty (or having an empty part), as
    /// opposed to holding a value no key may hold (a float).
    pub fn is_empty_key(&self) -> bool {
        self.empty
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyError::new(msg.to_string())
    }
}

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

/// The 64-character lowercase hex digest of a canonical key within a namespace:
/// SHA-256 of `namespace || 0x00 || canonical`, or HMAC-SHA-256 keyed with `secret`.
///
/// ```
/// # use idem_core::key::digest;
/// let d = digest("billing::charge", br#""req-1""#, None);
/// assert_eq!(d.len(), 64);
/// assert_ne!(d, digest("billing::charge", br#""req-1""#, Some(b"secret")));
/// ```
pub fn digest(namespace: &str, canonical: &[u8], secret: Option<&[u8]>) -> String {
    let mut out = String::with_capacity(64);
    push_digest(&mut out, namespace, canonical, secret);
    out
}

/// Appends [`digest`]'s 64 hex digits to `out`.
pub(crate) fn push_digest(
    out: &mut String,
    namespace: &str,
    canonical: &[u8],
    secret: Option<&[u8]>,
) {
    match secret {
        None => {
            let mut hasher = Sha256::new();
            hasher.update(namespace.as_bytes());
            hasher.update([0u8]);
            hasher.update(canonical);
            push_lower_hex(out, &hasher.finalize());
        }
        Some(secret) => {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .expect("HMAC-SHA-256 accepts keys of any length");
            mac.update(namespace.as_bytes());
            mac.update(&[0u8]);
            mac.update(canonical);
            push_lower_hex(out, &mac.finalize().into_bytes());
        }
    }
}

/// Appends a digest as lowercase hex digits, two per byte from a table (the `hex`
/// crate's encoders were a measurable part of a call).
fn push_lower_hex(out: &mut String, digest: &[u8]) {
    out.reserve(digest.len() * 2);
    for &byte in digest {
        out.push(HEX_DIGITS[usize::from(byte >> 4)] as char);
        out.push(HEX_DIGITS[usize::from(byte & 0x0f)] as char);
    }
}

/// Lowercase hex digits, by value.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Checks a namespace: not empty, and without `#` (which separates it from the digest
/// in a record id).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    if namespace.is_empty() {
        Err("a namespace must not be empty".into())
    } else if namespace.contains('#') {
        Err(format!(
            "`{namespace}` contains `#`, which separates the namespace from the digest in a record id; choose a name without it"
        ))
    } else {
        Ok(())
    }
}

/// The record id of a digest within a namespace: `{namespace}#{digest}`. A store may
/// put a prefix of its own in front when it writes. Operators who have a key, not its
/// digest, use [`Engine::record_id`](crate::Engine::record_id), which digests it with
/// the engine's secret.
pub fn id_from_digest(namespace: &str, digest: &str) -> String {
    let mut id = String::with_capacity(namespace.len() + 1 + digest.len());
    id.push_str(namespace);
    id.push('#');
    id.push_str(digest);
    id
}

/// [`id_from_digest`] of [`digest`], written in one buffer; the digest is the part
/// after `namespace.len() + 1` bytes.
pub(crate) fn record_id(namespace: &str, canonical: &[u8], secret: Option<&[u8]>) -> String {
    let mut id = String::with_capacity(namespace.len() + 1 + 64);
    id.push_str(namespace);
    id.push('#');
    push_digest(&mut id, namespace, canonical, secret);
    id
}

/// The serialized value, before it is written out with sorted maps.
enum Node {
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
    fn is_empty(&self) -> bool {
        match self {
            Node::Null => true,
            Node::Str(s) => s.is_empty(),
            Node::Seq(items) | Node::Tuple(items) => items.is_empty(),
            Node::Map(entries) => entries.is_empty(),
            Node::Bool(_) | Node::Int(_) => false,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
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
fn write_str(s: &str, out: &mut Vec<u8>) {
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

fn float_error() -> KeyError {
    KeyError::new(
        "floats cannot be part of a key: their text form is not canonical; use an integer (cents, milliseconds) or a string",
    )
}

struct NodeSerializer;

struct SeqBuilder {
    items: Vec<Node>,
    /// Built by `serialize_tuple`: a composite key's parts.
    tuple: bool,
    /// For tuple and struct variants: the variant name wrapping the result.
    variant: Option<&'static str>,
}

struct MapBuilder {
    entries: Vec<(String, Node)>,
    pending_key: Option<String>,
    variant: Option<&'static str>,
}

fn wrap(variant: Option<&'static str>, node: Node) -> Node {
    match variant {
        Some(name) => Node::Map(vec![(name.to_owned(), node)]),
        None => node,
    }
}

impl ser::Serializer for NodeSerializer {
    type Ok = Node;
    type Error = KeyError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Node, KeyError> {
        Ok(Node::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i16(self, v: i16) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i32(self, v: i32) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i64(self, v: i64) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i128(self, v: i128) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u8(self, v: u8) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u16(self, v: u16) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u32(self, v: u32) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u64(self, v: u64) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u128(self, v: u128) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_f32(self, _: f32) -> Result<Node, KeyError> {
        Err(float_error())
    }
    fn serialize_f64(self, _: f64) -> Result<Node, KeyError> {
        Err(float_error())
    }
    fn serialize_char(self, v: char) -> Result<Node, KeyError> {
        Ok(Node::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, KeyError> {
        Ok(Node::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Node, KeyError> {
        Ok(Node::Seq(
            v.iter().map(|b| Node::Int(b.to_string())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Node, KeyError> {
        Ok(Node::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, KeyError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, KeyError> {
        Ok(Node::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Node, KeyError> {
        Ok(Node::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Node, KeyError> {
        Ok(Node::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Node, KeyError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Node, KeyError> {
        Ok(wrap(Some(variant), value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, KeyError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0)),
            tuple: false,
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, KeyError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            tuple: true,
            variant: None,
        })
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqBuilder, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, KeyError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            tuple: false,
            variant: Some(variant),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            pending_key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapBuilder, KeyError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len),
            pending_key: None,
            variant: Some(variant),
        })
    }
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.items.push(value.serialize(NodeSerializer)?);
        Ok(())
    }
    fn finish(self) -> Result<Node, KeyError> {
        let node = match self.tuple {
            true => Node::Tuple(self.items),
            false => Node::Seq(self.items),
        };
        Ok(wrap(self.variant, node))
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl MapBuilder {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), KeyError> {
        self.entries
            .push((key.to_owned(), value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn finish(self) -> Result<Node, KeyError> {
        Ok(wrap(self.variant, Node::Map(self.entries)))
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.pending_key = Some(match key.serialize(NodeSerializer)? {
            Node::Str(s) | Node::Int(s) => s,
            _ => {
                return Err(KeyError::new(
                    "map keys inside a key must be strings or integers",
                ))
            }
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| KeyError::new("a map value came without its key"))?;
        self.entries.push((key, value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}
