//! The attempt that wrote a record.

use std::fmt;
use std::str::FromStr;

/// The attempt that holds (or held) a key: random per attempt, so that a record shows
/// which attempt wrote it ([`Record::shows_begin_by`](super::Record::shows_begin_by)
/// and its kin read a lost response back from it).
///
/// 128 random bits, kept as a number; stores write it as 32 lowercase hex digits (a
/// UUID's simple form), the form every record has held, which [`FromStr`] reads back.
///
/// ```
/// use idem_core::store::Owner;
/// let owner = Owner::random();
/// assert_ne!(owner, Owner::random());
/// assert_eq!(owner.to_string().parse::<Owner>().unwrap(), owner);
/// assert_eq!(Owner::from_u128(255).to_string(), format!("{:0>32}", "ff"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
// Two halves rather than a `u128`: a `u128` would make every request and record that
// holds an owner 16-byte aligned.
pub struct Owner([u64; 2]);

impl Owner {
    /// A fresh attempt's owner: a random (version 4) UUID.
    pub fn random() -> Owner {
        Owner::from_u128(uuid::Uuid::new_v4().as_u128())
    }

    /// The owner a store reads back from its stored text: the number 32 hex digits
    /// write ([`FromStr`]), or, for an owner stored in another form (an older
    /// `idem forget` wrote `idem-cli-forget-{uuid}`; another tool may write anything),
    /// a number derived from the text (the first 16 bytes of its SHA-256). Such an
    /// owner equals no attempt's, which is all the protocol asks of it: the record reads,
    /// and it is held by nobody who runs.
    pub fn from_stored(text: &str) -> Owner {
        text.parse().unwrap_or_else(|_| {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(text.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            Owner::from_u128(u128::from_be_bytes(bytes))
        })
    }

    /// The owner with this number: for tests and models that need owners they can name.
    pub const fn from_u128(value: u128) -> Owner {
        Owner([(value >> 64) as u64, value as u64])
    }

    /// The owner written out: 32 lowercase hex digits as ASCII bytes, from a table (what
    /// `Display` writes, for a store that writes bytes, such as a command's argument).
    pub fn to_hex(self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.as_u128().to_be_bytes()) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        hex
    }

    /// The owner's number.
    pub const fn as_u128(self) -> u128 {
        (self.0[0] as u128) << 64 | self.0[1] as u128
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({self})")
    }
}

/// A text that is not an owner: see [`Owner`]'s [`FromStr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a record owner (32 lowercase hex digits)")]
pub struct InvalidOwner(String);

/// Reads 32 lowercase hex digits, the form owners are written in.
impl FromStr for Owner {
    type Err = InvalidOwner;

    fn from_str(text: &str) -> Result<Owner, InvalidOwner> {
        if text.len() != 32 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(InvalidOwner(text.to_owned()));
        }
        u128::from_str_radix(text, 16)
            .map(Owner::from_u128)
            .map_err(|_| InvalidOwner(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_the_uuid_simple_form_and_read_back() {
        let uuid = uuid::Uuid::new_v4();
        let text = uuid.simple().to_string();
        let owner: Owner = text.parse().unwrap();
        assert_eq!(owner.as_u128(), uuid.as_u128());
        assert_eq!(owner.to_string(), text);
        assert_eq!(owner.to_hex(), text.as_bytes());
        assert_eq!(Owner::from_u128(0xab).to_string(), format!("{:032x}", 0xab));
        assert_eq!(Owner::from_stored(&text), owner);
        for bad in [
            "",
            "abc",
            &"g".repeat(32),
            &"0".repeat(33),
            "+0000000000000000000000000000001",
        ] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?} was read");
        }
        let old = format!("idem-cli-forget-{uuid}");
        assert_eq!(Owner::from_stored(&old), Owner::from_stored(&old));
        assert_ne!(
            Owner::from_stored(&old),
            Owner::from_stored("idem-cli-forget-other")
        );
    }
}
