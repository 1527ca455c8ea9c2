//! Records as DynamoDB items: an item decoded into a record.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use idem_core::store::{Codec, Outcome, Record, State, StoreError, FORMAT};

use crate::names::AttributeNames;
use crate::store::Context;

/// Decodes an item into a record; the context names the operation, the record id
/// (without the store's prefix) and the table.
pub(crate) fn decode(
    names: &AttributeNames,
    context: Context<'_>,
    item: &HashMap<String, AttributeValue>,
) -> Result<Record, StoreError> {
    let id = context.id;
    let malformed = |attribute: &str, what: &str| {
        StoreError::malformed(format!(
            "{context}: the item has {what} in attribute `{attribute}`"
        ))
    };
    let string = |attribute: &str| -> Result<Option<&String>, StoreError> {
        match item.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value)),
            Some(_) => Err(malformed(attribute, "a value that is not a string")),
        }
    };
    let required_string =
        |attribute: &str| string(attribute)?.ok_or_else(|| malformed(attribute, "no value"));
    let number = |attribute: &str| -> Result<u64, StoreError> {
        match item.get(attribute) {
            Some(AttributeValue::N(value)) => value
                .parse()
                .map_err(|_| malformed(attribute, "a number that is not a whole u64")),
            Some(_) => Err(malformed(attribute, "a value that is not a number")),
            None => Err(malformed(attribute, "no value")),
        }
    };
    let state = required_string(&names.status)?;
    let state: State = state
        .parse()
        .map_err(|e: String| malformed(&names.status, &e))?;
    let outcome = match string(&names.outcome)? {
        None => None,
        Some(outcome) => Some(
            outcome
                .parse::<Outcome>()
                .map_err(|e: String| malformed(&names.outcome, &e))?,
        ),
    };
    // Begin leaves format and codec to complete, which writes the data they describe:
    // a record in progress may have neither.
    let format = match item.get(&names.format) {
        None if state == State::InProgress => u64::from(FORMAT),
        _ => number(&names.format)?,
    };
    let codec = match string(&names.codec)? {
        None if state == State::InProgress => Codec::Json,
        _ => Codec::from_stored(required_string(&names.codec)?),
    };
    // JSON as a string, bytes as Binary (never base64 in a string).
    let data = match item.get(&names.data) {
        None => None,
        Some(AttributeValue::S(json)) => Some(Bytes::copy_from_slice(json.as_bytes())),
        Some(AttributeValue::B(blob)) => Some(Bytes::copy_from_slice(blob.as_ref())),
        Some(_) => {
            return Err(malformed(
                &names.data,
                "a value that is neither string nor binary",
            ))
        }
    };
    Ok(Record {
        id: id.to_owned(),
        state,
        owner: required_string(&names.owner)?.clone(),
        fence: number(&names.fence)?,
        lease_until_ms: number(&names.in_progress_expiration)?,
        expires_at_s: number(&names.expiration)?,
        fingerprint: string(&names.validation)?.cloned(),
        outcome,
        data,
        format: u32::try_from(format)
            .map_err(|_| malformed(&names.format, "a format number out of range"))?,
        codec,
        steps: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn attribute_value() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            ".{0,12}".prop_map(AttributeValue::S),
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                "[0-9.eE+-]{0,8}",
            ]
            .prop_map(AttributeValue::N),
            any::<bool>().prop_map(AttributeValue::Bool),
            Just(AttributeValue::Null(true)),
            prop::collection::vec(any::<u8>(), 0..8)
                .prop_map(|b| AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(b))),
            prop_oneof![
                Just("INPROGRESS"),
                Just("COMPLETED"),
                Just("ok"),
                Just("err"),
                Just("not_stored")
            ]
            .prop_map(|s| AttributeValue::S(s.into())),
        ]
    }

    fn item() -> impl Strategy<Value = HashMap<String, AttributeValue>> {
        let names = AttributeNames::default();
        let keys = vec![
            names.status,
            names.owner,
            names.fence,
            names.in_progress_expiration,
            names.expiration,
            names.validation,
            names.outcome,
            names.data,
            names.format,
            names.codec,
            "unrelated".to_owned(),
        ];
        prop::collection::vec((prop::sample::select(keys), attribute_value()), 0..14)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any item decodes to a record or a malformed-record error; never a panic, never
        /// another kind of error.
        #[test]
        fn any_item_decodes_or_is_malformed(item in item()) {
            let context = Context { operation: "read", id: "ns#d", table: "idem" };
            match decode(&AttributeNames::default(), context, &item) {
                Ok(record) => {
                    // Only what the item holds comes back.
                    prop_assert_eq!(Some(&AttributeValue::S(record.state.as_str().into())), item.get("status"));
                    let fence = item.get("fence").and_then(|f| f.as_n().ok()).and_then(|f| f.parse().ok());
                    prop_assert_eq!(Some(record.fence), fence);
                }
                Err(error) => prop_assert_eq!(error.kind(), idem_core::store::StoreErrorKind::Malformed),
            }
        }
    }
}
