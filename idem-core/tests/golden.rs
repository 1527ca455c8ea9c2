//! Golden vectors for the frozen formats: canonical key encoding, digest, HMAC digest
//! and record id. The expected values were computed by an independent implementation
//! (Python's `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`,
//! `hashlib.sha256` and `hmac`). If one of these tests fails, a change broke every
//! stored record and every token handed downstream: revert it.

use std::collections::{BTreeMap, HashMap};

use idem_core::key::{canonical_json, canonical_key, check_namespace, digest, id_from_digest};
use serde::Serialize;

const NS: &str = "orders::create";

fn check<K: Serialize + ?Sized>(key: &K, canonical: &str, sha: &str, hmac: &str) {
    let bytes = canonical_key(key).expect("a valid key");
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), canonical);
    assert_eq!(digest(NS, &bytes, None), sha);
    assert_eq!(digest(NS, &bytes, Some(b"s3cret")), hmac);
}

#[test]
fn string_key() {
    check(
        "req-1",
        r#""req-1""#,
        "f29f018128aee652b6ba7279a58295a81e5c54e6762fb787356e5e7d042eedd9",
        "3cd9a62ffbdc81b2c8f7441ec9ac234f661cedb95cf5863628d174e456c220a6",
    );
    // String and &str and a newtype around it encode alike.
    #[derive(Serialize)]
    struct RequestId(String);
    check(
        &RequestId("req-1".into()),
        r#""req-1""#,
        "f29f018128aee652b6ba7279a58295a81e5c54e6762fb787356e5e7d042eedd9",
        "3cd9a62ffbdc81b2c8f7441ec9ac234f661cedb95cf5863628d174e456c220a6",
    );
}

#[test]
fn tuple_key() {
    check(
        &("a", 7u8),
        r#"["a",7]"#,
        "78c3bf6f7778ee4a642e659d1d5316ac6426f9daaa85e97bb1ca7d0640aa7e66",
        "85784b4a9086dfb16371ce67cab409e46d9b0b48d00c5a3d9d16b819b63b07b6",
    );
}

#[test]
fn struct_fields_are_sorted() {
    #[derive(Serialize)]
    struct Key {
        b: u32,
        a: &'static str,
        c: Option<bool>,
        d: Option<bool>,
    }
    check(
        &Key {
            b: 1,
            a: "x",
            c: Some(true),
            d: None,
        },
        r#"{"a":"x","b":1,"c":true,"d":null}"#,
        "3c3604fd894a920f628aaf6e9829dc39c6bfb8c93d79a15b6db00d3e5a6e9e8d",
        "f8b707b8fcf46295ac09055757cc222d0bb8b2805a2397ec61a6f9a1ae721dc8",
    );
}

#[test]
fn map_keys_sorted_by_utf8_bytes_whatever_the_map() {
    let expected = (
        r#"{"A":3,"z":2,"é":1}"#,
        "1d53b323465b70ceb9e5153d522808bd60a5f1b8cc928d2868b806698cbdfbc2",
        "ac3c19fbc965d24e734e1c88104f603d4153b38e7fba73dd6ab7dfbd491ba923",
    );
    let btree: BTreeMap<&str, u8> = [("é", 1), ("z", 2), ("A", 3)].into();
    check(&btree, expected.0, expected.1, expected.2);
    for _ in 0..8 {
        // HashMap iteration order varies from one map to the next; the encoding may not.
        let hash: HashMap<&str, u8> = [("é", 1), ("z", 2), ("A", 3)].into();
        check(&hash, expected.0, expected.1, expected.2);
    }
}

#[test]
fn strings_escape_what_rfc_8259_requires_and_nothing_more() {
    check(
        "a\"b\\c\n\u{1}\u{1f}\t/é\u{7f}",
        "\"a\\\"b\\\\c\\n\\u0001\\u001f\\t/é\u{7f}\"",
        "21d2ea87f10b31e6308194102b6a27fc3104d8c5778190c4118f061a2cc2d9bd",
        "8e3bc42834333ec250d3a4e99d4620d80a56a5ed9239ae23b3db992faacc074d",
    );
}

#[test]
fn nested_structures() {
    #[derive(Serialize)]
    struct Line {
        sku: &'static str,
        qty: u32,
    }
    #[derive(Serialize)]
    struct Order {
        lines: Vec<Line>,
        id: &'static str,
    }
    #[derive(Serialize)]
    struct Key {
        tenant: &'static str,
        order: Order,
    }
    check(
        &Key {
            tenant: "acme",
            order: Order {
                lines: vec![Line { sku: "X-1", qty: 2 }],
                id: "o-9",
            },
        },
        r#"{"order":{"id":"o-9","lines":[{"qty":2,"sku":"X-1"}]},"tenant":"acme"}"#,
        "1a2957664485834d408f2b62e74a10da0219bae8c6b2d91b3f480642a415601f",
        "1700b9cea73ebfd5fd91d3fb597e863926f14a0290ca2bf2089ed2882055c7b4",
    );
}

#[test]
fn integers_up_to_128_bits_in_decimal() {
    assert_eq!(
        canonical_json(&u128::MAX).unwrap(),
        b"340282366920938463463374607431768211455"
    );
    assert_eq!(
        canonical_json(&i128::MIN).unwrap(),
        b"-170141183460469231731687303715884105728"
    );
    assert_eq!(canonical_json(&i64::MIN).unwrap(), b"-9223372036854775808");
    assert_eq!(canonical_json(&0u8).unwrap(), b"0");
}

#[test]
fn enums_are_externally_tagged() {
    #[derive(Serialize)]
    enum Action {
        Create,
        Update(u32),
        Move(u8, u8),
        Delete { id: &'static str },
    }
    let enc = |a: Action| String::from_utf8(canonical_json(&a).unwrap()).unwrap();
    assert_eq!(enc(Action::Create), r#""Create""#);
    assert_eq!(enc(Action::Update(5)), r#"{"Update":5}"#);
    assert_eq!(enc(Action::Move(1, 2)), r#"{"Move":[1,2]}"#);
    assert_eq!(enc(Action::Delete { id: "x" }), r#"{"Delete":{"id":"x"}}"#);
}

#[test]
fn floats_are_refused() {
    let error = canonical_key(&("order", 1.5f64)).unwrap_err();
    assert!(error.to_string().contains("floats"), "{error}");
    assert!(canonical_key(&1.0f32).is_err());
}

#[test]
fn empty_keys_are_refused() {
    assert!(canonical_key("").is_err());
    assert!(canonical_key(&()).is_err());
    assert!(canonical_key(&None::<u8>).is_err());
    assert!(canonical_key(&Vec::<u8>::new()).is_err());
    assert!(canonical_key(&BTreeMap::<String, u8>::new()).is_err());
    let error = canonical_key("").unwrap_err();
    assert!(error.to_string().contains("empty"), "{error}");
    // Not empty: zero, false, a space, a list holding an empty string.
    assert_eq!(canonical_key(&0u8).unwrap(), b"0");
    assert_eq!(canonical_key(&false).unwrap(), b"false");
    assert_eq!(canonical_key(" ").unwrap(), br#"" ""#);
    assert_eq!(canonical_key(&vec![""]).unwrap(), br#"[""]"#);
}

#[test]
fn map_keys_must_be_strings_or_integers() {
    let ints: BTreeMap<u32, &str> = [(10, "a"), (9, "b")].into();
    // Integer keys become strings and sort as strings.
    assert_eq!(canonical_json(&ints).unwrap(), br#"{"10":"a","9":"b"}"#);
    let tuples: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    assert!(canonical_json(&tuples).is_err());
}

#[test]
fn token_is_64_lowercase_hex_and_id_joins_namespace_and_digest() {
    let token = digest(NS, br#""req-1""#, None);
    assert_eq!(token.len(), 64);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(
        id_from_digest(NS, &token).unwrap().to_string(),
        "orders::create#f29f018128aee652b6ba7279a58295a81e5c54e6762fb787356e5e7d042eedd9"
    );
    // The namespace is part of the digest: the same key elsewhere is another record.
    assert_ne!(token, digest("orders::cancel", br#""req-1""#, None));
}

#[test]
fn namespaces_refuse_hash_and_empty() {
    assert!(check_namespace("orders::create").is_ok());
    assert!(check_namespace("").is_err());
    assert!(check_namespace("orders#create").unwrap_err().contains('#'));
}
