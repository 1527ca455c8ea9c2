//! Attribute names and key layout.

/// The attribute names of the table. The defaults follow AWS Lambda Powertools, so an
/// existing Powertools idempotency table and its templates can be reused; the
/// attributes Powertools does not have (`owner`, `fence`, `outcome`, `format`, `codec`,
/// `steps`) are idem's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeNames {
    /// The partition key (string): the record id, or in sort-key mode the static
    /// partition value. Default `id`.
    pub id: String,
    /// The TTL attribute, epoch seconds. Default `expiration`.
    pub expiration: String,
    /// The lease's end, epoch milliseconds. Default `in_progress_expiration`.
    pub in_progress_expiration: String,
    /// `INPROGRESS` or `COMPLETED`. Default `status`.
    pub status: String,
    /// The encoded value or error: a string for JSON, Binary for bytes. Default `data`.
    pub data: String,
    /// The payload fingerprint's digest. Default `validation`.
    pub validation: String,
    /// The attempt's owner id. Default `owner`.
    pub owner: String,
    /// The fencing number. Default `fence`.
    pub fence: String,
    /// `ok`, `err` or `not_stored`. Default `outcome`.
    pub outcome: String,
    /// The record format version. Default `format`.
    pub format: String,
    /// The codec of `data`. Default `codec`.
    pub codec: String,
    /// The journal of the record's steps: a list of maps, one per journal write, in the
    /// order they were written (the crate documentation, "How records map to items").
    /// Absent while no step has been journaled. Default `steps`.
    pub steps: String,
}

impl Default for AttributeNames {
    fn default() -> Self {
        AttributeNames {
            id: "id".into(),
            expiration: "expiration".into(),
            in_progress_expiration: "in_progress_expiration".into(),
            status: "status".into(),
            data: "data".into(),
            validation: "validation".into(),
            owner: "owner".into(),
            fence: "fence".into(),
            outcome: "outcome".into(),
            format: "format".into(),
            codec: "codec".into(),
            steps: "steps".into(),
        }
    }
}

/// Where the record id goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KeyLayout {
    /// The id is the partition key (up to 2048 bytes). The default.
    #[default]
    PartitionKey,
    /// Powertools' sort-key mode: every record has the same partition key value and the
    /// id is the sort key (up to 1024 bytes).
    SortKey {
        /// The sort key attribute (string).
        attribute: String,
        /// The partition key value every record shares.
        partition_value: String,
    },
}
