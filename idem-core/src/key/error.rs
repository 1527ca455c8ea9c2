//! Why a value cannot serve as a key.

use std::fmt;

use serde::ser;

/// Why a value cannot serve as a key (or fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    message: String,
    empty: bool,
}

impl KeyError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
            empty: false,
        }
    }

    pub(super) fn empty(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
            empty: true,
        }
    }

    /// Whether the key was refused for being empty (or having an empty part), as
    /// opposed to holding a value no key may hold (a float).
    pub fn is_empty_key(&self) -> bool {
        self.empty
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyError {}

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        KeyError::new(msg.to_string())
    }
}
