//! Records as DynamoDB items: an item decoded into a record, and the journal's entries
//! (`steps`) encoded and decoded.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use idem_core::store::{Codec, Outcome, Owner, Record, State, StepRecord, StoreError, FORMAT};

use crate::names::AttributeNames;
use crate::requests::{data_value, s};
use crate::store::Context;

/// The keys of one journal entry, a map in the `steps` list: short, since every entry
/// repeats them and they count against the item's 400 KB.
const STEP_NAME: &str = "n";
/// `ok` or `err`; absent while an at-most-once step has started.
const STEP_OUTCOME: &str = "o";
/// The codec of the entry's data (`json`, `bytes`, or an unknown name kept as stored).
const STEP_CODEC: &str = "c";
/// The value or error: a string for JSON, Binary for bytes; absent while started.
const STEP_DATA: &str = "d";

/// One journal entry as the map the `steps` list holds:
/// `{n: S name, o: S outcome, c: S codec, d: S json | B bytes}`, without `o` and `d`
/// while started.
pub(crate) fn encode_step(step: &StepRecord) -> AttributeValue {
    let mut entry = HashMap::with_capacity(4);
    entry.insert(STEP_NAME.to_owned(), s(step.name.as_str()));
    if let Some(outcome) = &step.outcome {
        entry.insert(STEP_OUTCOME.to_owned(), s(outcome.as_str()));
    }
    entry.insert(STEP_CODEC.to_owned(), s(step.codec.as_str()));
    if let Some(data) = &step.data {
        entry.insert(STEP_DATA.to_owned(), data_value(&step.codec, data));
    }
    AttributeValue::M(entry)
}

/// The journal a `steps` list holds: one step per name, the last entry written for it,
/// at the place of the first (the order of first writes); empty without the attribute
/// (a record written before steps existed, or none journaled). `malformed` names what
/// is wrong.
fn decode_steps(
    value: Option<&AttributeValue>,
    malformed: impl Fn(&str) -> StoreError,
) -> Result<Vec<StepRecord>, StoreError> {
    let entries = match value {
        None => return Ok(Vec::new()),
        Some(AttributeValue::L(entries)) => entries,
        Some(_) => return Err(malformed("a value that is not a list")),
    };
    let mut steps: Vec<StepRecord> = Vec::with_capacity(entries.len());
    for entry in entries {
        let AttributeValue::M(entry) = entry else {
            return Err(malformed("an entry that is not a map"));
        };
        let string = |key: &str| -> Result<Option<&String>, StoreError> {
            match entry.get(key) {
                None => Ok(None),
                Some(AttributeValue::S(value)) => Ok(Some(value)),
                Some(_) => Err(malformed(&format!(
                    "an entry whose `{key}` is not a string"
                ))),
            }
        };
        let name = string(STEP_NAME)?
            .ok_or_else(|| malformed(&format!("an entry without `{STEP_NAME}`")))?;
        let outcome = match string(STEP_OUTCOME)? {
            None => None,
            Some(outcome) => Some(outcome.parse::<Outcome>().map_err(|e: String| {
                malformed(&format!("an entry whose `{STEP_OUTCOME}` is {e}"))
            })?),
        };
        let codec = string(STEP_CODEC)?
            .ok_or_else(|| malformed(&format!("an entry without `{STEP_CODEC}`")))?;
        let data = match entry.get(STEP_DATA) {
            None => None,
            Some(AttributeValue::S(json)) => Some(Bytes::copy_from_slice(json.as_bytes())),
            Some(AttributeValue::B(blob)) => Some(Bytes::copy_from_slice(blob.as_ref())),
            Some(_) => {
                return Err(malformed(&format!(
                    "an entry whose `{STEP_DATA}` is neither string nor binary"
                )))
            }
        };
        let step = StepRecord {
            name: name.clone(),
            outcome,
            data,
            codec: Codec::from_stored(codec),
        };
        match steps.iter_mut().find(|known| known.name == step.name) {
            Some(known) => *known = step,
            None => steps.push(step),
        }
    }
    Ok(steps)
}

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
        id: id.clone(),
        state,
        owner: Owner::from_stored(required_string(&names.owner)?),
        fence: number(&names.fence)?,
        lease_until_ms: number(&names.in_progress_expiration)?,
        expires_at_s: number(&names.expiration)?,
        fingerprint: string(&names.validation)?.cloned(),
        outcome,
        data,
        format: u32::try_from(format)
            .map_err(|_| malformed(&names.format, "a format number out of range"))?,
        codec,
        steps: decode_steps(item.get(&names.steps), |what| malformed(&names.steps, what))?.into(),
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

    /// A `steps` list: entries with the journal's keys (valid or not) and stray ones.
    fn steps_value() -> impl Strategy<Value = AttributeValue> {
        let key = prop::sample::select(vec![STEP_NAME, STEP_OUTCOME, STEP_CODEC, STEP_DATA, "x"]);
        let entry = prop_oneof![
            4 => prop::collection::vec((key, attribute_value()), 0..5).prop_map(|pairs| {
                AttributeValue::M(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
            1 => attribute_value(),
        ];
        prop::collection::vec(entry, 0..4).prop_map(AttributeValue::L)
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
            names.steps.clone(),
            "unrelated".to_owned(),
        ];
        let steps = (prop::option::of(steps_value()), Just(names.steps));
        (
            prop::collection::vec((prop::sample::select(keys), attribute_value()), 0..14),
            steps,
        )
            .prop_map(|(pairs, (steps, name))| {
                let mut item: HashMap<_, _> = pairs.into_iter().collect();
                if let Some(steps) = steps {
                    item.insert(name, steps);
                }
                item
            })
    }

    fn step_record() -> impl Strategy<Value = StepRecord> {
        let outcome = prop_oneof![
            Just(None),
            Just(Some(Outcome::Ok)),
            Just(Some(Outcome::Err))
        ];
        let codec = prop_oneof![
            Just(Codec::Json),
            Just(Codec::Bytes),
            "[a-z]{1,6}".prop_map(|name| Codec::from_stored(&name)),
        ];
        let data = prop::option::of(prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from));
        (
            prop::sample::select(vec!["a", "b", "c", "", "ü \"x\""]),
            outcome,
            data,
            codec,
        )
            .prop_map(|(name, outcome, data, codec)| StepRecord {
                name: name.to_owned(),
                outcome,
                data,
                codec,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        /// The entries a journal appends decode to what `protocol::journal` keeps: the
        /// last entry of each name at the place of its first.
        #[test]
        fn appended_entries_decode_as_the_protocol_journal(writes in prop::collection::vec(step_record(), 0..8)) {
            let list = AttributeValue::L(writes.iter().map(encode_step).collect());
            let decoded = decode_steps(Some(&list), |what| StoreError::malformed(what.to_owned())).unwrap();
            let mut expected: Vec<StepRecord> = Vec::new();
            for step in writes {
                match expected.iter_mut().find(|known| known.name == step.name) {
                    Some(known) => *known = step,
                    None => expected.push(step),
                }
            }
            prop_assert_eq!(decoded, expected);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any item decodes to a record or a malformed-record error; never a panic, never
        /// another kind of error.
        #[test]
        fn any_item_decodes_or_is_malformed(item in item()) {
            let id = idem_core::RecordId::new("ns", [0xd; 32]);
            let context = Context { operation: "read", id: &id, table: "idem" };
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
