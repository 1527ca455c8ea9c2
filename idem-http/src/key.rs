//! The `Idempotency-Key` header's value: a structured-field string as the IETF draft
//! (draft-ietf-httpapi-idempotency-key-header) defines it (`"8e03978e-40d5"`), or a bare
//! token as Stripe and most clients send it (`8e03978e-40d5`).

use http::request::Parts;
use http::Request;

use crate::layer::Config;
use crate::problem::{Problem, Refused};

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

/// A guarded request's key, from the layer's header: `None` when it has none and the
/// route is optional (it passes through unguarded); refused when it has none and the
/// route requires one, or when the header's value is not a key.
pub(crate) fn read<B>(config: &Config, request: &Request<B>) -> Result<Option<String>, Refused> {
    let Some(value) = request.headers().get(&config.header) else {
        if !config.required {
            return Ok(None);
        }
        let detail = format!(
            "{} {} needs an `{}` header",
            request.method(),
            request.uri().path(),
            config.header
        );
        return Err(Refused::new(Problem::MissingKey, detail));
    };
    match parse(value.as_bytes()) {
        Ok(key) => Ok(Some(key)),
        Err(KeyProblem::TooLong(chars)) => {
            let detail =
                format!("the key has {chars} characters; at most {MAX_KEY_CHARS} are accepted");
            Err(Refused::new(Problem::KeyTooLong, detail))
        }
        Err(KeyProblem::Invalid(why)) => Err(Refused::new(Problem::InvalidKey, why)),
    }
}

/// The key's scope, from the layer's extractor: `None` when keys are global; refused
/// when the extractor finds none in the request.
pub(crate) fn scope(config: &Config, parts: &Parts) -> Result<Option<String>, Refused> {
    let Some(scope) = &config.scope else {
        return Ok(None);
    };
    match scope(parts) {
        Some(scope) => Ok(Some(scope)),
        None => Err(Refused::new(
            Problem::MissingScope,
            "the key is scoped (by tenant, account or user), and this request has none",
        )),
    }
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
