//! The digest of a canonical key within a namespace, and the record id
//! `{namespace}#{digest}` that carries it.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

use super::{InvalidRecordId, Namespace, RecordId};

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
    let mut hex = [0u8; 64];
    lower_hex(&digest_bytes(namespace, canonical, secret), &mut hex);
    std::str::from_utf8(&hex)
        .expect("hex digits are ASCII")
        .to_owned()
}

/// [`digest`]'s 32 bytes, before they are written as hex.
pub(crate) fn digest_bytes(namespace: &str, canonical: &[u8], secret: Option<&[u8]>) -> [u8; 32] {
    match secret {
        None => {
            let mut hasher = Sha256::new();
            hasher.update(namespace.as_bytes());
            hasher.update([0u8]);
            hasher.update(canonical);
            hasher.finalize().into()
        }
        Some(secret) => {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .expect("HMAC-SHA-256 accepts keys of any length");
            mac.update(namespace.as_bytes());
            mac.update(&[0u8]);
            mac.update(canonical);
            mac.finalize().into_bytes().into()
        }
    }
}

/// A step's token: `hex(SHA-256(token || 0x00 || step))`, the attempt's token (the
/// key's digest) and the step's name. [`Context::token`](crate::Context::token) answers
/// it inside the step, so what the step sends downstream carries a key of its own, the
/// same in every attempt of the key.
pub fn step_token(token: &str, step: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(token.as_bytes());
    hasher.update([0u8]);
    hasher.update(step.as_bytes());
    let mut out = String::with_capacity(64);
    push_lower_hex(&mut out, &hasher.finalize().into());
    out
}

// A digest as lowercase hex digits, two per byte from a table, written into a buffer on
// the stack and appended at once (a `char` pushed at a time costs ten times as much).
fn push_lower_hex(out: &mut String, digest: &[u8; 32]) {
    let mut hex = [0u8; 64];
    lower_hex(digest, &mut hex);
    out.push_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"));
}

/// Writes a digest's 64 lowercase hex digits into `hex`.
pub(super) fn lower_hex(digest: &[u8; 32], hex: &mut [u8; 64]) {
    for (pair, &byte) in hex.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
}

/// Lowercase hex digits, by value.
pub(super) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Both hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [HEX_DIGITS[byte >> 4], HEX_DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

/// Checks a namespace: not empty, and without `#` (which separates it from the digest
/// in a record id).
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    if namespace.is_empty() {
        Err("a namespace must not be empty".into())
    } else if namespace.as_bytes().contains(&b'#') {
        Err(format!(
            "`{namespace}` contains `#`, which separates the namespace from the digest in a record id; choose a name without it"
        ))
    } else {
        Ok(())
    }
}

/// The record id of a digest, given as its 64 lowercase hex digits, within a namespace:
/// `{namespace}#{digest}` written out. A store may put a prefix of its own in front when
/// it writes. Operators who have a key, not its digest, use
/// [`Engine::record_id`](crate::Engine::record_id), which digests it with the engine's
/// secret.
///
/// ```
/// # use idem_core::key::id_from_digest;
/// let id = id_from_digest("orders::create", &"0f".repeat(32)).unwrap();
/// assert_eq!(id.to_string(), format!("orders::create#{}", "0f".repeat(32)));
/// assert!(id_from_digest("orders::create", "not-hex").is_err());
/// ```
pub fn id_from_digest(namespace: &str, digest: &str) -> Result<RecordId, InvalidRecordId> {
    format!("{namespace}#{digest}").parse()
}

/// The [`RecordId`] of a canonical key within `namespace`, its digest as [`digest`]
/// computes it.
pub(crate) fn record_id(
    namespace: &Namespace,
    canonical: &[u8],
    secret: Option<&[u8]>,
) -> RecordId {
    RecordId::new(
        namespace.clone(),
        digest_bytes(namespace, canonical, secret),
    )
}
