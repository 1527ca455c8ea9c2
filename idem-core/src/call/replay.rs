//! A duplicate's answer: the outcome a completed record holds, decoded for the caller.

use serde::de::DeserializeOwned;

use super::guard::Guard;
use super::policy::ErrorPolicy;
use super::report::{Report, Source};
use crate::codec;
use crate::error::Error;
use crate::observe::CallOutcome;
use crate::store::{Codec, Outcome, Record, FORMAT};

impl Guard {
    /// The outcome a completed record holds, for a duplicate call.
    pub(super) fn replay<T, E, P>(&self, record: &Record, errors: &P) -> Result<Report<T>, E>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        if record.format > FORMAT {
            return Err(self
                .decode_error(format!(
                    "the record has format {}, written by a newer version of idem (this one reads up to {FORMAT})",
                    record.format
                ))
                .into());
        }
        if let Codec::Unknown(name) = &record.codec {
            return Err(self
                .decode_error(format!(
                    "the record uses codec `{name}`, which this build cannot read (written by a \
                     newer version of idem)"
                ))
                .into());
        }
        let data = || {
            record
                .data
                .as_ref()
                .ok_or_else(|| self.decode_error("the completed record holds no data"))
        };
        self.outcome(CallOutcome::Replayed, "replayed the recorded outcome");
        match record.outcome {
            Some(Outcome::Ok) => match codec::decode(&record.codec, data()?) {
                Ok(value) => Ok(Report {
                    value,
                    source: Source::Replayed,
                    fence: record.fence,
                    replayed_until_ms: Some(record.expires_at_s.saturating_mul(1000)),
                }),
                Err(e) => Err(self
                    .decode_error(format!("the recorded value does not decode: {e}"))
                    .into()),
            },
            Some(Outcome::Err) => {
                // Errors are recorded as JSON.
                let data = match (&record.codec, std::str::from_utf8(data()?)) {
                    (Codec::Json, Ok(data)) => data,
                    _ => return Err(self.decode_error("the recorded error is not JSON").into()),
                };
                match errors.decode(data) {
                    Some(Ok(error)) => Err(error),
                    Some(Err(e)) => Err(self
                        .decode_error(format!("the recorded error does not decode: {e}"))
                        .into()),
                    None => Err(Error::RecordedError {
                        namespace: self.namespace.to_string(),
                        digest: String::from(self.digest()),
                        data: data.to_owned(),
                    }
                    .into()),
                }
            }
            Some(Outcome::NotStored) => Err(Error::ResultNotStored {
                namespace: self.namespace.to_string(),
                digest: String::from(self.digest()),
            }
            .into()),
            None => Err(self
                .decode_error("the completed record has no outcome")
                .into()),
        }
    }
}
