//! The CLI's one error type: a message for the operator, an exit code, and the cause.

use std::fmt;

/// What went wrong, said for an operator: the message names the store and the record
/// where there is one, and the cause (a store error, a database client's error) is kept
/// as the [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct CliError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The kind of a [`CliError`], which decides the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A key, namespace, secret or option the CLI refuses (exit code 2, as for a
    /// command line clap refuses).
    Usage,
    /// The store could not be reached or answered with an error (exit code 1).
    Store,
    /// The CLI refused to write: a live lease without `--force`, or a record that changed
    /// since it was read (exit code 3).
    Refused,
    /// There is no record with that id (exit code 4).
    NotFound,
}

impl ErrorKind {
    /// The process's exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Store => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Refused => 3,
            ErrorKind::NotFound => 4,
        }
    }
}

impl CliError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A usage error: see [`ErrorKind::Usage`].
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::Usage, message)
    }

    /// A store error: see [`ErrorKind::Store`].
    pub fn store(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::Store, message)
    }

    /// The same error, keeping `source` as its cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind, which decides the exit code.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the causes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The message followed by every cause in its chain, `: `-separated, for printing.
    pub fn report(&self) -> String {
        let mut out = self.message.clone();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            let text = error.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = error.source();
        }
        out
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<idem_core::store::StoreError> for CliError {
    fn from(error: idem_core::store::StoreError) -> Self {
        CliError::store(error.to_string()).with_source(error)
    }
}
