//! sqlx's errors classed as idem's: transient, permanent or malformed.

use idem_core::store::StoreError;

/// SQLSTATE classes and codes a retry may cure: connection exceptions (`08`),
/// serialization failures and deadlocks (`40`), insufficient resources (`53`, too many
/// connections among them), a lock not available or an object in use (`55P03`,
/// `55006`), a cancelled statement (`57014`, a statement timeout) and a server shutting
/// down or starting (`57P01`..`57P05`).
fn transient_code(code: &str) -> bool {
    matches!(&code[..code.len().min(2)], "08" | "40" | "53")
        || matches!(
            code,
            "55P03" | "55006" | "57014" | "57P01" | "57P02" | "57P03" | "57P04" | "57P05"
        )
}

/// Whether `error` is the database's answer to a lock it waited for past
/// `lock_timeout` (`55P03`): another transaction holds the row.
pub(crate) fn is_lock_timeout(error: &sqlx::Error) -> bool {
    has_code(error, |code| code == "55P03")
}

/// Whether `error` is a serialization failure or a deadlock (`40001`, `40P01`): a
/// fresh transaction may succeed.
pub(crate) fn is_conflict(error: &sqlx::Error) -> bool {
    has_code(error, |code| code == "40001" || code == "40P01")
}

fn has_code(error: &sqlx::Error, code: impl Fn(&str) -> bool) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.code().is_some_and(|c| code(&c)))
}

/// Classes a sqlx error met by `operation` on `table`: the lost connections, pool
/// timeouts and the server's "not now" answers are transient; a row that cannot be
/// decoded is malformed; the rest (a missing table or permission, a constraint) is
/// permanent. Every message names the table.
pub(crate) fn store_error(operation: &'static str, table: &str, error: sqlx::Error) -> StoreError {
    let mut message = format!("PostgreSQL {operation} on {table} failed: {error}");
    if let sqlx::Error::Database(database) = &error {
        let missing = database.message();
        if database.code().as_deref() == Some("42703")
            && (missing.contains("data_bytes") || missing.contains("step_"))
        {
            // A table made before the bytes codec, or before steps.
            message.push_str(&format!(
                "; the table lacks a column this version records in (`data_bytes`, for \
                 bytes, or the journal of steps' `step_*`): run `PgStore::migrate`, or `{}` \
                 (a metadata change, no rewrite; earlier builds ignore the columns)",
                crate::sql::add_columns(table)
            ));
        }
        let too_large = match database.code().as_deref() {
            // program_limit_exceeded ("array size exceeds the maximum allowed"), or an
            // allocation past 1 GB refused while the array is built.
            Some("54000") => true,
            Some("XX000") => missing.contains("memory alloc request size"),
            _ => false,
        };
        if operation == "journal" && too_large {
            message.push_str(
                "; the journal of steps is too large for one PostgreSQL field (1 GB in all \
                 for the steps' data of one record): the step is not journaled",
            );
        }
    }
    let classified = match &error {
        sqlx::Error::Database(database) => {
            if database.code().is_some_and(|code| transient_code(&code)) {
                StoreError::transient(message)
            } else {
                StoreError::permanent(message)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => StoreError::transient(message),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::malformed(message),
        _ => StoreError::permanent(message),
    };
    classified.with_source(error)
}

#[cfg(test)]
mod tests {
    use super::transient_code;

    #[test]
    fn retryable_sqlstates_are_transient_the_rest_not() {
        for code in [
            "40001", "40P01", "08006", "08003", "53300", "55P03", "57014", "57P01", "57P03",
        ] {
            assert!(transient_code(code), "{code}");
        }
        // Missing table, missing permission, unique and check violations, bad syntax.
        for code in ["42P01", "42501", "23505", "23514", "42601", "22P02"] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
