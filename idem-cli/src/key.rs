//! A key given as JSON on the command line, encoded exactly as the engine encodes it,
//! and the secret its digest is keyed with.

use std::path::Path;

use idem_core::key;
use idem_core::RecordId;

use crate::error::CliError;

/// The environment variable that holds the HMAC secret itself.
pub const SECRET_VARIABLE: &str = "IDEM_SECRET";

/// The environment variable that names a file holding the HMAC secret (also
/// `--secret-file`).
pub const SECRET_FILE_VARIABLE: &str = "IDEM_SECRET_FILE";

/// The record id (`{namespace}#{digest}`, without any prefix of the store's) of the key
/// whose JSON text is `key_json`, as [`Engine::record_id`](idem_core::Engine::record_id)
/// computes it for the same value with the same secret: the namespace checked, the key
/// encoded by [`idem_core::key::canonical_key`] (floats and empty keys refused with the
/// engine's own messages), then digested.
///
/// The JSON is parsed into a `serde_json::Value`, which serializes as the Rust value the
/// application keyed on does: a string, an integer (up to 64 bits: a larger one is read
/// as a float and refused), a bool, a sequence or a map (fields sorted by the canonical
/// encoding). A Rust tuple key `("tenant", "req-7")` is the array `["tenant","req-7"]`.
pub fn record_id(
    namespace: &str,
    key_json: &str,
    secret: Option<&[u8]>,
) -> Result<RecordId, CliError> {
    key::check_namespace(namespace).map_err(CliError::usage)?;
    let value: serde_json::Value = serde_json::from_str(key_json).map_err(|e| {
        CliError::usage(format!(
            "the key `{key_json}` is not JSON ({e}); a string key is quoted: '\"abc\"'"
        ))
    })?;
    let canonical = key::canonical_key(&value).map_err(|e| {
        CliError::usage(format!(
            "the key `{key_json}` is refused as the engine refuses it: {e}"
        ))
    })?;
    key::id_from_digest(namespace, &key::digest(namespace, &canonical, secret))
        .map_err(|e| CliError::usage(e.to_string()))
}

/// Where the secret comes from: the environment variable [`SECRET_VARIABLE`], or the
/// file `secret_file` (from `--secret-file` or [`SECRET_FILE_VARIABLE`]), never the
/// command line itself (which other users of the machine can read). Both at once is an
/// error; neither is no secret (plain SHA-256 digests).
///
/// A file's bytes are the secret, less one trailing line break (`\n` or `\r\n`), which
/// editors and `echo` add. An empty secret is refused: it would key HMAC with nothing,
/// which is not what the engine does without a secret.
pub fn load_secret(
    from_variable: Option<Vec<u8>>,
    secret_file: Option<&Path>,
) -> Result<Option<Vec<u8>>, CliError> {
    let secret = match (from_variable, secret_file) {
        (Some(_), Some(file)) => {
            return Err(CliError::usage(format!(
                "both {SECRET_VARIABLE} and a secret file ({}) are set: give one",
                file.display()
            )))
        }
        (Some(secret), None) => secret,
        (None, Some(file)) => {
            let mut bytes = std::fs::read(file).map_err(|e| {
                CliError::usage(format!("cannot read the secret file {}", file.display()))
                    .with_source(e)
            })?;
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        return Err(CliError::usage("the secret is empty"));
    }
    Ok(Some(secret))
}

/// The secret from the process's environment: [`load_secret`] of [`SECRET_VARIABLE`]
/// and `secret_file` (already resolved from `--secret-file` or
/// [`SECRET_FILE_VARIABLE`]).
pub fn secret_from_env(secret_file: Option<&Path>) -> Result<Option<Vec<u8>>, CliError> {
    #[cfg(unix)]
    let variable = {
        use std::os::unix::ffi::OsStrExt as _;
        std::env::var_os(SECRET_VARIABLE).map(|v| v.as_bytes().to_vec())
    };
    #[cfg(not(unix))]
    let variable = std::env::var(SECRET_VARIABLE).ok().map(String::into_bytes);
    load_secret(variable, secret_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idem_core::{Engine, MemoryStore};

    fn engine(secret: Option<&[u8]>) -> Engine {
        let builder = Engine::builder(MemoryStore::new());
        match secret {
            Some(s) => builder.secret(s.to_vec()).build().unwrap(),
            None => builder.build().unwrap(),
        }
    }

    #[test]
    fn ids_are_the_engines() {
        for secret in [None, Some(&b"s3cret"[..])] {
            let e = engine(secret);
            let ns = "billing::charge";
            assert_eq!(
                record_id(ns, r#""abc""#, secret).unwrap(),
                e.record_id(ns, "abc").unwrap()
            );
            assert_eq!(
                record_id(ns, "42", secret).unwrap(),
                e.record_id(ns, &42u64).unwrap()
            );
            assert_eq!(
                record_id(ns, "-7", secret).unwrap(),
                e.record_id(ns, &-7i64).unwrap()
            );
            assert_eq!(
                record_id(ns, r#"["tenant", "req-7"]"#, secret).unwrap(),
                e.record_id(ns, &("tenant", "req-7")).unwrap()
            );
            #[derive(serde::Serialize)]
            struct Order {
                id: u64,
                customer: &'static str,
            }
            assert_eq!(
                record_id(ns, r#"{"id": 7, "customer": "ada"}"#, secret).unwrap(),
                e.record_id(
                    ns,
                    &Order {
                        id: 7,
                        customer: "ada"
                    }
                )
                .unwrap()
            );
        }
        // The frozen format, computed independently (idem-core/tests/golden.rs).
        assert!(record_id("ns", r#""abc""#, None)
            .unwrap()
            .to_string()
            .starts_with("ns#"));
        assert_ne!(
            record_id("ns", r#""abc""#, None).unwrap(),
            record_id("ns", r#""abc""#, Some(b"k")).unwrap()
        );
    }

    #[test]
    fn refuses_what_the_engine_refuses() {
        for key in [
            "1.5",
            "1e3",
            r#""""#,
            "null",
            "[]",
            "{}",
            "18446744073709551616",
        ] {
            let error = record_id("ns", key, None).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Usage, "{key}");
        }
        assert!(record_id("ns", "1.5", None)
            .unwrap_err()
            .message()
            .contains("floats"));
        assert!(record_id("ns", "not json", None)
            .unwrap_err()
            .message()
            .contains("not JSON"));
        assert!(record_id("a#b", "1", None)
            .unwrap_err()
            .message()
            .contains('#'));
        assert!(record_id("", "1", None).is_err());
    }

    #[test]
    fn secrets_come_from_one_place() {
        let dir = std::env::temp_dir().join(format!("idem-cli-secret-{}", std::process::id()));
        std::fs::write(&dir, b"k3y\n").unwrap();
        assert_eq!(load_secret(None, Some(&dir)).unwrap().unwrap(), b"k3y");
        std::fs::write(&dir, b"k3y\r\n").unwrap();
        assert_eq!(load_secret(None, Some(&dir)).unwrap().unwrap(), b"k3y");
        assert!(load_secret(Some(b"x".to_vec()), Some(&dir)).is_err());
        std::fs::write(&dir, b"\n").unwrap();
        assert!(load_secret(None, Some(&dir)).is_err());
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            load_secret(Some(b"v".to_vec()), None).unwrap().unwrap(),
            b"v"
        );
        assert_eq!(load_secret(None, None).unwrap(), None);
    }
}
