//! The `Idempotency-Key` header's value: a structured-field string as the IETF draft
//! (draft-ietf-httpapi-idempotency-key-header) defines it (`"8e03978e-40d5"`), or a bare
//! token as Stripe and most clients send it (`8e03978e-40d5`).

/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// Why a header value is not a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// Longer than [`MAX_KEY_CHARS`].
    TooLong(usize),
    /// Empty, not visible ASCII, or a malformed structured-field string.
    Invalid(&'static str),
}

/// The key in a header value: the content of a structured-field string (`\"` and `\\`
/// unescaped), or the value itself when it is a bare token of visible ASCII.
pub fn parse(value: &[u8]) -> Result<String, KeyProblem> {
    let key = match value {
        [b'"', inner @ .., b'"'] => unquote(inner)?,
        [b'"', ..] => {
            return Err(KeyProblem::Invalid(
                "a string that opens with `\"` must close with one",
            ))
        }
        bare => {
            if !bare.iter().all(|b| b.is_ascii_graphic()) {
                return Err(KeyProblem::Invalid(
                    "a bare key is visible ASCII without spaces; quote it as a structured-field string otherwise",
                ));
            }
            String::from_utf8(bare.to_vec()).expect("ASCII")
        }
    };
    if key.is_empty() {
        return Err(KeyProblem::Invalid("the key is empty"));
    }
    if key.len() > MAX_KEY_CHARS {
        return Err(KeyProblem::TooLong(key.len()));
    }
    Ok(key)
}

/// A structured-field string's content (RFC 8941 §3.3.3): printable ASCII, with `"` and
/// `\` escaped by `\`.
fn unquote(inner: &[u8]) -> Result<String, KeyProblem> {
    let mut key = String::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => key.push(escaped as char),
                _ => {
                    return Err(KeyProblem::Invalid(
                        "in a string, `\\` escapes only `\"` and `\\`",
                    ))
                }
            },
            b'"' => {
                return Err(KeyProblem::Invalid(
                    "a `\"` inside a string must be escaped",
                ))
            }
            0x20..=0x7e => key.push(b as char),
            _ => return Err(KeyProblem::Invalid("a string holds printable ASCII only")),
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_give_the_same_key() {
        assert_eq!(parse(b"\"8e03978e-40d5\"").unwrap(), "8e03978e-40d5");
        assert_eq!(parse(b"8e03978e-40d5").unwrap(), "8e03978e-40d5");
        assert_eq!(parse(br#""a \"b\" \\c""#).unwrap(), r#"a "b" \c"#);
    }

    #[test]
    fn malformed_empty_and_long_keys_are_refused() {
        for bad in [
            &b""[..],
            b"\"\"",
            b"\"open",
            b"two words",
            b"\"bad\\escape\"",
            b"\"in\"side\"",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(matches!(parse(bad), Err(KeyProblem::Invalid(_))), "{bad:?}");
        }
        assert_eq!(parse(&[b'k'; 255]).unwrap().len(), 255);
        assert_eq!(parse(&[b'k'; 256]), Err(KeyProblem::TooLong(256)));
    }
}
