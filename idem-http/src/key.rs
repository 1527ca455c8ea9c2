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
/// unescaped; RFC 9651 §3.3.3), or the value itself when it is a bare token of visible
/// ASCII. Parameters after the string (`"8e03978e";v=1`) are accepted and ignored, as
/// RFC 9651 lets an Item carry them; a list of keys (`"a", "b"`) is refused.
pub fn parse(value: &[u8]) -> Result<String, KeyProblem> {
    // Spaces around a field value are not part of it (RFC 9651 §4.2).
    let value = value.trim_ascii();
    let key = match value {
        [b'"', rest @ ..] => {
            let (key, after) = string(rest)?;
            parameters(after)?;
            key
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
    let mut values = request.headers().get_all(&config.header).iter();
    let Some(value) = values.next() else {
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
    if values.next().is_some() {
        let detail = format!(
            "the request has more than one `{}` field: send the key once",
            config.header
        );
        return Err(Refused::new(Problem::InvalidKey, detail));
    }
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

/// A structured-field string's content (RFC 9651 §3.3.3), the opening `"` already
/// read: printable ASCII, with `"` and `\` escaped by `\`, up to the closing `"`; and
/// what follows it.
fn string(inner: &[u8]) -> Result<(String, &[u8]), KeyProblem> {
    let mut key = String::with_capacity(inner.len());
    let mut bytes = inner.iter().enumerate();
    while let Some((at, &b)) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some((_, &escaped @ (b'"' | b'\\'))) => key.push(escaped as char),
                _ => {
                    return Err(KeyProblem::Invalid(
                        "in a string, `\\` escapes only `\"` and `\\`",
                    ))
                }
            },
            b'"' => return Ok((key, &inner[at + 1..])),
            0x20..=0x7e => key.push(b as char),
            _ => return Err(KeyProblem::Invalid("a string holds printable ASCII only")),
        }
    }
    Err(KeyProblem::Invalid(
        "a string that opens with `\"` must close with one",
    ))
}

/// What may follow the key's string: parameters (RFC 9651 §3.1.2, `;name` or
/// `;name=value`, accepted and ignored), and nothing else; a `,` makes a list.
fn parameters(mut rest: &[u8]) -> Result<(), KeyProblem> {
    const LIST: KeyProblem = KeyProblem::Invalid(
        "the header holds a list: send one key (a string, with parameters if any)",
    );
    loop {
        rest = rest.trim_ascii_start();
        match rest {
            [] => return Ok(()),
            [b',', ..] => return Err(LIST),
            [b';', after @ ..] => {
                let after = after.trim_ascii_start();
                let name_len = after
                    .iter()
                    .take_while(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(b)
                    })
                    .count();
                if name_len == 0 || !(after[0].is_ascii_lowercase() || after[0] == b'*') {
                    return Err(KeyProblem::Invalid(
                        "a parameter's name is lowercase: `;name` or `;name=value`",
                    ));
                }
                rest = &after[name_len..];
                if let [b'=', value @ ..] = rest {
                    rest = match value {
                        [b'"', inner @ ..] => string(inner)?.1,
                        _ => {
                            let len = value
                                .iter()
                                .take_while(|b| b.is_ascii_graphic() && !b";,\"".contains(b))
                                .count();
                            if len == 0 {
                                return Err(KeyProblem::Invalid("a parameter's value is missing"));
                            }
                            &value[len..]
                        }
                    };
                }
            }
            _ => {
                return Err(KeyProblem::Invalid(
                    "after the key's string only parameters (`;name=value`) may follow",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_give_the_same_key() {
        assert_eq!(parse(b"\"8e03978e-40d5\"").unwrap(), "8e03978e-40d5");
        // RFC 9651 parameters are accepted and ignored; spaces around the value too.
        for with_parameters in [
            &b"\"8e03978e-40d5\";v=1"[..],
            b"\"8e03978e-40d5\"; v=1;flag",
            b"\"8e03978e-40d5\";note=\"a;b,c\";n=-1.5;*x=?1",
            b" \"8e03978e-40d5\" ",
        ] {
            assert_eq!(
                parse(with_parameters).unwrap(),
                "8e03978e-40d5",
                "{}",
                String::from_utf8_lossy(with_parameters)
            );
        }
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
        // A list of keys, and what is neither parameters nor nothing after the string.
        for bad in [
            &b"\"a\", \"b\""[..],
            b"\"a\";v=1, \"b\"",
            b"\"a\" x",
            b"\"a\";V=1",
            b"\"a\";=1",
            b"\"a\";v=",
            b"\"a\";v=\"open",
        ] {
            assert!(
                matches!(parse(bad), Err(KeyProblem::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(&[b'k'; 256]), Err(KeyProblem::TooLong(256)));
    }
}
