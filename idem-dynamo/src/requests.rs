//! Every request of one table, written once: the item key, one conditional `UpdateItem`
//! per transition (its update and condition expressions, with the attribute names and
//! values they alias), and the `GetItem` and `DeleteItem` of a read and a delete.
//! `store.rs` sends them and maps their answers.
//!
//! Every attribute name is aliased (a configured name may be a reserved word), and each
//! request carries exactly the names and values its expressions use: DynamoDB rejects
//! an unused one. Aliases are static; the names and values are moved into the request.
//! Every `UpdateItem` asks for the old item when its condition fails (`ALL_OLD`), so a
//! refusal brings the record as it is.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder;
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use idem_core::store::{
    Attempt, Begin, Codec, Completion, RecordId, Renewal, State, StepRecord, FORMAT,
};

use crate::item;

use crate::names::{AttributeNames, KeyLayout};
use crate::store::DynamoStore;

/// Expression attribute names, by alias.
pub(crate) type Names = HashMap<String, String>;
/// Expression attribute values, by alias.
pub(crate) type Values = HashMap<String, AttributeValue>;

/// An expression's attribute names and values, registered as they are used, so a
/// request carries every name aliased and no name or value it does not use.
#[derive(Debug, Default)]
pub(crate) struct Expression {
    names: Names,
    values: Values,
}

impl Expression {
    /// `alias` (with its `#`) stands for `attribute`; returns the alias.
    pub fn name(&mut self, alias: &'static str, attribute: &str) -> &'static str {
        self.names.insert(alias.to_owned(), attribute.to_owned());
        alias
    }

    /// `alias` (with its `:`) stands for `value`; returns the alias.
    pub fn value(&mut self, alias: &'static str, value: AttributeValue) -> &'static str {
        self.values.insert(alias.to_owned(), value);
        alias
    }

    /// The names and the values, moved out for the request (`None` where empty).
    pub fn into_parts(self) -> (Option<Names>, Option<Values>) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

pub(crate) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// One conditional `UpdateItem` of a transition, before its key and table.
#[derive(Debug)]
pub(crate) struct Update {
    /// The store operation, as an error names it: `begin`, `complete`, `extend`,
    /// `release` or `journal`.
    pub(crate) operation: &'static str,
    update: String,
    condition: String,
    expression: Expression,
    /// The answer carries the updated attributes (`UPDATED_NEW`).
    return_new: bool,
}

/// The condition of complete, extend, release and journal: the attempt holds the record.
fn held_by(names: &AttributeNames, expression: &mut Expression, attempt: &Attempt) -> String {
    let status = expression.name("#status", &names.status);
    let in_progress = expression.value(":inprogress", s(State::InProgress.as_str()));
    let owner = expression.name("#owner", &names.owner);
    let owner_value = expression.value(":owner", s(attempt.owner.to_string()));
    let fence = expression.name("#fence", &names.fence);
    let fence_value = expression.value(":fence", n(attempt.fence));
    format!("{status} = {in_progress} AND {owner} = {owner_value} AND {fence} = {fence_value}")
}

/// An update of the record the attempt holds, on the condition that it holds it (and
/// `also`, when given).
fn held_update(
    operation: &'static str,
    names: &AttributeNames,
    attempt: &Attempt,
    mut expression: Expression,
    update: String,
    also: Option<String>,
) -> Update {
    let mut condition = held_by(names, &mut expression, attempt);
    if let Some(also) = also {
        condition = format!("{condition} AND {also}");
    }
    Update {
        operation,
        update,
        condition,
        expression,
        return_new: false,
    }
}

/// The attempt's own fields as `SET` assignments: status, owner, lease, expiry and the
/// fingerprint when the call has one.
fn attempt_fields(names: &AttributeNames, e: &mut Expression, request: &Begin) -> String {
    let status = e.name("#status", &names.status);
    let in_progress = e.value(":inprogress", s(State::InProgress.as_str()));
    let owner = e.name("#owner", &names.owner);
    let owner_value = e.value(":owner", s(request.owner.to_string()));
    let lease = e.name("#lease", &names.in_progress_expiration);
    let lease_value = e.value(":lease", n(request.lease_until_ms));
    let expiration = e.name("#expiration", &names.expiration);
    let expiration_value = e.value(":expiration", n(request.expires_at_s));
    let mut fields = format!(
        "{status} = {in_progress}, {owner} = {owner_value}, {lease} = {lease_value}, \
         {expiration} = {expiration_value}"
    );
    if let Some(fingerprint) = &request.fingerprint {
        let validation = e.name("#validation", &names.validation);
        let value = e.value(":validation", s(fingerprint.as_str()));
        fields.push_str(&format!(", {validation} = {value}"));
    }
    fields
}

/// Begin on a key with no item, the lean request: the attempt's fields and fence 1;
/// nothing to clear, no answer to read.
pub(crate) fn begin_new(names: &AttributeNames, request: &Begin) -> Update {
    let mut e = Expression::default();
    let fields = attempt_fields(names, &mut e, request);
    let fence = e.name("#fence", &names.fence);
    let one = e.value(":one", n(1));
    let update = format!("SET {fields}, {fence} = {one}");
    let id = e.name("#id", &names.id);
    let condition = format!("attribute_not_exists({id})");
    Update {
        operation: "begin",
        update,
        condition,
        expression: e,
        return_new: false,
    }
}

/// Begin on a key whose item may exist and be free (completed and expired, or in
/// progress past its lease): the next fence, read back (`UPDATED_NEW`), and the old
/// attempt's outcome, data, format, codec and fingerprint cleared.
pub(crate) fn take_over(names: &AttributeNames, request: &Begin) -> Update {
    let mut e = Expression::default();
    let fields = attempt_fields(names, &mut e, request);
    let fence = e.name("#fence", &names.fence);
    let zero = e.value(":zero", n(0));
    let one = e.value(":one", n(1));
    let set = format!("SET {fields}, {fence} = if_not_exists({fence}, {zero}) + {one}");
    let mut remove = [
        e.name("#data", &names.data),
        e.name("#outcome", &names.outcome),
        e.name("#format", &names.format),
        e.name("#codec", &names.codec),
    ]
    .join(", ");
    if request.fingerprint.is_none() {
        remove.push_str(&format!(", {}", e.name("#validation", &names.validation)));
    }
    // The free predicate, over attributes the fields named already.
    let status = e.name("#status", &names.status);
    let in_progress = e.value(":inprogress", s(State::InProgress.as_str()));
    let lease = e.name("#lease", &names.in_progress_expiration);
    let expiration = e.name("#expiration", &names.expiration);
    let completed = e.value(":completed", s(State::Completed.as_str()));
    let update = format!("{set} REMOVE {remove}");
    let id = e.name("#id", &names.id);
    let now_s = e.value(":now_s", n(request.now_ms / 1000));
    let now_ms = e.value(":now_ms", n(request.now_ms));
    let condition = format!(
        "attribute_not_exists({id}) OR ({status} = {completed} AND {expiration} <= {now_s}) \
         OR ({status} = {in_progress} AND {lease} <= {now_ms})"
    );
    Update {
        operation: "begin",
        update,
        condition,
        expression: e,
        return_new: true,
    }
}

/// Complete: the outcome and the data (removed when there is none) with their format
/// and codec, which a record in progress does not have.
pub(crate) fn complete(
    names: &AttributeNames,
    attempt: &Attempt,
    completion: &Completion,
) -> Update {
    let mut e = Expression::default();
    let status = e.name("#status", &names.status);
    let completed = e.value(":completed", s(State::Completed.as_str()));
    let outcome = e.name("#outcome", &names.outcome);
    let outcome_value = e.value(":outcome", s(completion.outcome.as_str()));
    let expiration = e.name("#expiration", &names.expiration);
    let expiration_value = e.value(":expiration", n(completion.expires_at_s));
    let data = e.name("#data", &names.data);
    let format = e.name("#format", &names.format);
    let format_value = e.value(":format", n(FORMAT.into()));
    let codec = e.name("#codec", &names.codec);
    let codec_value = e.value(":codec", s(completion.codec.as_str()));
    let mut update = format!(
        "SET {status} = {completed}, {outcome} = {outcome_value}, {expiration} = {expiration_value}, \
         {format} = {format_value}, {codec} = {codec_value}"
    );
    // The journal goes with the completion (a replay needs only the outcome): removing
    // an absent attribute costs nothing, so a body without steps pays no more than the
    // name in the request.
    let steps = e.name("#steps", &names.steps);
    match &completion.data {
        Some(value) => {
            let value = e.value(":data", data_value(&completion.codec, value));
            update.push_str(&format!(", {data} = {value} REMOVE {steps}"));
        }
        None => update.push_str(&format!(" REMOVE {data}, {steps}")),
    }
    held_update("complete", names, attempt, e, update, None)
}

/// A value or error as stored: JSON as a string (as Powertools writes it), anything
/// else (bytes, or JSON that is not UTF-8) as Binary, never base64 in a string.
pub(crate) fn data_value(codec: &Codec, data: &[u8]) -> AttributeValue {
    match (codec, std::str::from_utf8(data)) {
        (Codec::Json, Ok(json)) => s(json),
        _ => AttributeValue::B(Blob::new(data.to_vec())),
    }
}

/// Journal: one entry appended to the `steps` list (created by the first write of the
/// record's lifetime), under complete's condition. The list is the journal's log: an
/// entry of a name already in it is appended too, and decoding keeps the last entry of
/// each name at the place of its first (`item::decode_steps`), which is the store
/// contract's replace-in-place with first-write order, in one write whatever the item
/// holds (see the crate documentation for why not a map by name).
pub(crate) fn journal(names: &AttributeNames, attempt: &Attempt, step: &StepRecord) -> Update {
    let mut e = Expression::default();
    let steps = e.name("#steps", &names.steps);
    let empty = e.value(":empty", AttributeValue::L(Vec::new()));
    let entry = e.value(":entry", AttributeValue::L(vec![item::encode_step(step)]));
    let update = format!("SET {steps} = list_append(if_not_exists({steps}, {empty}), {entry})");
    held_update("journal", names, attempt, e, update, None)
}

/// Extend: the lease and the expiry, unless the lease was released.
pub(crate) fn extend(names: &AttributeNames, attempt: &Attempt, renewal: &Renewal) -> Update {
    let mut e = Expression::default();
    let lease_name = e.name("#lease", &names.in_progress_expiration);
    let lease_value = e.value(":lease", n(renewal.lease_until_ms));
    let expiration = e.name("#expiration", &names.expiration);
    let expiration_value = e.value(":expiration", n(renewal.expires_at_s));
    let update = format!("SET {lease_name} = {lease_value}, {expiration} = {expiration_value}");
    // A heartbeat that lands after the release must not revive the lease.
    let zero = e.value(":zero", n(0));
    let not_released = format!("{lease_name} > {zero}");
    held_update("extend", names, attempt, e, update, Some(not_released))
}

/// Release: the lease ends now (0), the record stays.
pub(crate) fn release(names: &AttributeNames, attempt: &Attempt) -> Update {
    let mut e = Expression::default();
    let lease = e.name("#lease", &names.in_progress_expiration);
    let zero = e.value(":zero", n(0));
    let update = format!("SET {lease} = {zero}");
    held_update("release", names, attempt, e, update, None)
}

impl DynamoStore {
    /// The item key of a record id: `{prefix}{id}` in the partition key, or in sort-key
    /// mode the static partition value and `{prefix}{id}` in the sort key.
    fn key(&self, id: &RecordId) -> HashMap<String, AttributeValue> {
        use std::fmt::Write as _;
        let mut stored = String::with_capacity(self.prefix.len() + id.len());
        stored.push_str(&self.prefix);
        write!(stored, "{id}").expect("a String takes every write");
        match &self.layout {
            KeyLayout::PartitionKey => HashMap::from([(self.names.id.clone(), s(stored))]),
            KeyLayout::SortKey {
                attribute,
                partition_value,
            } => HashMap::from([
                (self.names.id.clone(), s(partition_value.clone())),
                (attribute.clone(), s(stored)),
            ]),
        }
    }

    /// The `UpdateItem` of a transition on `id`, the old item asked for on refusal.
    pub(crate) fn update_item(&self, id: &RecordId, request: Update) -> UpdateItemFluentBuilder {
        let (names, values) = request.expression.into_parts();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .update_expression(request.update)
            .condition_expression(request.condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .set_return_values(request.return_new.then_some(ReturnValue::UpdatedNew))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    }

    /// Read: one strongly consistent `GetItem`.
    pub(crate) fn get_item(&self, id: &RecordId) -> GetItemFluentBuilder {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .consistent_read(true)
    }

    /// Delete: one unconditional `DeleteItem`.
    pub(crate) fn delete_item(&self, id: &RecordId) -> DeleteItemFluentBuilder {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
    }
}
