//! A call's settings, resolved: the engine's defaults fill the gaps, every setting is
//! checked, and the key is encoded into the attempt's begin. Nothing is written yet.

use crate::key::Namespace;
use std::time::Duration;

use super::guard::Guard;
use crate::context::Context;
use crate::engine::{check_timing, Engine};
use crate::error::Error;
use crate::key::{self, KeyError};
use crate::observe::{self, CallOutcome};
use crate::store::{Begin, Isolation, Owner};

/// What a call was given, before the engine's defaults fill the gaps.
pub(super) struct Settings {
    pub(super) engine: Option<Engine>,
    pub(super) namespace: Namespace,
    pub(super) key: Result<Vec<u8>, KeyError>,
    pub(super) fingerprint: Option<Result<Vec<u8>, KeyError>>,
    pub(super) ttl: Option<Duration>,
    pub(super) lease: Option<Duration>,
    pub(super) max_duration: Option<Duration>,
    pub(super) wait: Option<Duration>,
    pub(super) optional_key: bool,
    pub(super) isolation: Option<Isolation>,
}

/// What a call's settings resolve to.
pub(super) enum Resolved {
    /// The key guards the body.
    Guarded(Guard),
    /// No key to guard with and the call allowed that ([`Call::optional_key`](super::Call::optional_key)), or the
    /// engine is disabled: the body runs unguarded.
    Unguarded {
        /// The call's namespace.
        namespace: Namespace,
        /// The body's context: no token, fence 0.
        context: Context,
        /// The engine the call resolved to (for a transaction's store).
        engine: Engine,
        /// The isolation level of the body's transaction, if it has one.
        isolation: Option<Isolation>,
    },
}

impl Settings {
    /// The attempt these settings describe, with the engine's defaults filled in and
    /// every setting checked; nothing is written yet.
    pub(super) fn resolve(self) -> Result<Resolved, Error> {
        let Settings {
            engine,
            namespace,
            key,
            fingerprint,
            ttl,
            lease,
            max_duration,
            wait,
            optional_key,
            isolation,
        } = self;
        let engine = match engine {
            Some(engine) => engine,
            None => Engine::current().ok_or(Error::NoEngine)?,
        };
        if engine.is_disabled() {
            observe::call(&namespace, CallOutcome::Unguarded);
            key::check_namespace(&namespace).map_err(Error::Config)?;
            // No record, but the key's token all the same: what the body sends
            // downstream keeps its idempotency keys while idem is off.
            let token = match &key {
                Ok(key) => engine.digest(&namespace, key),
                Err(_) => String::new(),
            };
            let context = Context::unguarded(namespace.clone(), token, engine.clone());
            return Ok(Resolved::Unguarded {
                namespace,
                context,
                engine,
                isolation,
            });
        }
        let defaults = *engine.defaults();
        // The engine's own times were checked when it was built; a call's are checked
        // here.
        if ttl.is_some() || lease.is_some() {
            check_timing(
                ttl.unwrap_or(defaults.ttl),
                lease.unwrap_or(defaults.lease),
                defaults.store_timeout,
            )?;
        }
        let ttl = ttl.unwrap_or(defaults.ttl);
        let lease = lease.unwrap_or(defaults.lease);
        key::check_namespace(&namespace).map_err(Error::Config)?;
        let invalid = |e: KeyError| Error::InvalidKey {
            namespace: namespace.to_string(),
            reason: e.to_string(),
        };
        let key = match key {
            Ok(key) => key,
            Err(error) if error.is_empty_key() && optional_key => {
                tracing::warn!(target: "idem", namespace = %namespace, reason = %error,
                    outcome = CallOutcome::Unguarded.as_str(),
                    "no idempotency key: the body runs unguarded (optional_key)");
                observe::call(&namespace, CallOutcome::Unguarded);
                let context = Context::unguarded(namespace.clone(), String::new(), engine.clone());
                return Ok(Resolved::Unguarded {
                    namespace,
                    context,
                    engine,
                    isolation,
                });
            }
            Err(error) => return Err(invalid(error)),
        };
        let fingerprint = match fingerprint {
            Some(payload) => Some(engine.digest(&namespace, &payload.map_err(invalid)?)),
            None => None,
        };
        let id = engine.id(&namespace, &key);
        let max_id = engine.store().limits().max_id_bytes;
        if id.len() > max_id {
            return Err(Error::InvalidKey {
                reason: format!(
                    "the record id would be {} bytes and the store takes at most {max_id}; use a shorter name",
                    id.len()
                ),
                namespace: namespace.to_string(),
            });
        }
        // The times are set when it is sent.
        let request = Begin {
            id,
            owner: Owner::random(),
            now_ms: 0,
            lease_until_ms: 0,
            expires_at_s: 0,
            fingerprint,
        };
        Ok(Resolved::Guarded(Guard {
            engine,
            namespace,
            request,
            ttl,
            lease,
            max_duration: max_duration.unwrap_or(defaults.max_duration),
            wait: wait.or(defaults.wait),
            isolation,
            holds_key: false,
        }))
    }
}
