//! The digest of a canonical key within a namespace, and the record id
//! `{namespace}#{digest}` that carries it.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

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

/// Appends a digest as lowercase hex digits, two per byte from a table, written into a
/// buffer on the stack and appended at once (a `char` pushed at a time costs ten times
/// as much).
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
    push_lower_hex(&mut out, &hasher.finalize());
    out
}

fn push_lower_hex(out: &mut String, digest: &[u8]) {
    let mut hex = [0u8; 64];
    for (pair, &byte) in hex.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    let hex = &hex[..2 * digest.len().min(32)];
    out.push_str(std::str::from_utf8(hex).expect("hex digits are ASCII"));
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
