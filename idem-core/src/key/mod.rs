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

mod canonical;
mod digest;
mod direct;
mod error;
mod id;
mod namespace;
mod serializer;

pub use canonical::{canonical_json, canonical_key};
pub(crate) use digest::record_id;
pub use digest::{check_namespace, digest, id_from_digest, step_token};
pub use error::KeyError;
pub use id::{DigestHex, InvalidRecordId, RecordId};
pub use namespace::Namespace;
