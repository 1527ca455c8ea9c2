//! A record's id: the namespace and the key's digest, `{namespace}#{digest}` when
//! written out.

use std::fmt;
use std::str::FromStr;

use super::digest::{lower_hex, HEX_DIGITS};
use super::Namespace;

/// The id of a key's record: its namespace and the 32 bytes of the key's digest
/// ([`digest`](super::digest)). Written out (a store's key, a log line, `idem inspect`)
/// it is `{namespace}#{digest}`, the digest as 64 lowercase hex digits: the frozen form
/// every store keeps, which [`FromStr`] reads back.
///
/// Kept as bytes, not as its text, so that a call makes no string for it and a record in
/// memory holds 32 bytes and a shared namespace instead of a copy of the text.
///
/// ```
/// use idem_core::{Engine, MemoryStore, RecordId};
/// let engine = Engine::new(MemoryStore::new());
/// let id = engine.record_id("orders::create", "req-1").unwrap();
/// let text = id.to_string();
/// assert!(text.starts_with("orders::create#"));
/// assert_eq!(text.len(), id.len());
/// assert_eq!(text.parse::<RecordId>().unwrap(), id);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordId {
    namespace: Namespace,
    digest: [u8; 32],
}

impl RecordId {
    /// The id of the key whose digest is `digest` within `namespace`. The namespace is
    /// not checked here ([`check_namespace`](super::check_namespace) is, when a call
    /// runs).
    pub fn new(namespace: impl Into<Namespace>, digest: [u8; 32]) -> RecordId {
        RecordId {
            namespace: namespace.into(),
            digest,
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The key's digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The digest as 64 lowercase hex digits, written where it is displayed (a log
    /// field) or turned into a `String` (the call's token,
    /// [`Context::token`](crate::Context::token)).
    pub fn digest_hex(&self) -> DigestHex<'_> {
        DigestHex(&self.digest)
    }

    /// The length of the written-out id in bytes: what counts against a store's
    /// [`Limits::max_id_bytes`](crate::store::Limits::max_id_bytes).
    pub fn len(&self) -> usize {
        self.namespace.len() + 1 + 64
    }

    /// Always `false`: an id holds at least its `#` and digest. For symmetry with
    /// [`len`](RecordId::len).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.namespace)?;
        f.write_str("#")?;
        fmt::Display::fmt(&self.digest_hex(), f)
    }
}

/// A digest displayed as 64 lowercase hex digits: [`RecordId::digest_hex`].
#[derive(Clone, Copy)]
pub struct DigestHex<'a>(&'a [u8; 32]);

impl DigestHex<'_> {
    /// The 64 hex digits as ASCII bytes, for a writer that takes bytes (a command's
    /// argument buffer).
    pub fn to_ascii(self) -> [u8; 64] {
        let mut hex = [0u8; 64];
        lower_hex(self.0, &mut hex);
        hex
    }
}

/// The 64 hex digits as a `String`, written straight from the table (`to_string` would
/// go through the formatter).
impl From<DigestHex<'_>> for String {
    fn from(hex: DigestHex<'_>) -> String {
        String::from_utf8(hex.to_ascii().to_vec()).expect("hex digits are ASCII")
    }
}

impl fmt::Display for DigestHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_ascii();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for DigestHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A text that is not a record id: see [`RecordId`]'s [`FromStr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a record id ({{namespace}}#{{64 lowercase hex digits}}): {reason}")]
pub struct InvalidRecordId {
    text: String,
    reason: &'static str,
}

/// Reads `{namespace}#{digest}`: a non-empty namespace, the last `#`, and 64 lowercase
/// hex digits. The namespace is copied once.
impl FromStr for RecordId {
    type Err = InvalidRecordId;

    fn from_str(text: &str) -> Result<RecordId, InvalidRecordId> {
        let invalid = |reason| InvalidRecordId {
            text: text.to_owned(),
            reason,
        };
        let (namespace, hex) = text
            .rsplit_once('#')
            .ok_or_else(|| invalid("it has no `#`"))?;
        if namespace.is_empty() {
            return Err(invalid("its namespace is empty"));
        }
        if namespace.contains('#') {
            return Err(invalid("its namespace contains `#`"));
        }
        if hex.len() != 64 {
            return Err(invalid("its digest is not 64 hex digits"));
        }
        let mut digest = [0u8; 32];
        for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let high =
                hex_value(pair[0]).ok_or_else(|| invalid("its digest is not lowercase hex"))?;
            let low =
                hex_value(pair[1]).ok_or_else(|| invalid("its digest is not lowercase hex"))?;
            *byte = high << 4 | low;
        }
        Ok(RecordId::new(namespace, digest))
    }
}

/// The value of a lowercase hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    HEX_DIGITS
        .iter()
        .position(|&d| d == digit)
        .map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_out_and_read_back() {
        let id = RecordId::new(Namespace::fixed("orders::create"), [0xab; 32]);
        let text = id.to_string();
        assert_eq!(text, format!("orders::create#{}", "ab".repeat(32)));
        assert_eq!(text.len(), id.len());
        assert_eq!(id.digest_hex().to_string(), "ab".repeat(32));
        assert_eq!(String::from(id.digest_hex()), "ab".repeat(32));
        assert_eq!(text.parse::<RecordId>(), Ok(id));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let hex = "0f".repeat(32);
        for bad in [
            String::new(),
            "orders".to_owned(),
            format!("#{hex}"),
            format!("a#b#{hex}"),
            format!("orders#{}", &hex[2..]),
            format!("orders#{}", hex.to_uppercase()),
            format!("orders#{}zz", &hex[2..]),
        ] {
            assert!(bad.parse::<RecordId>().is_err(), "{bad:?} was read");
        }
    }
}
