//! The whole store conformance suite on the machine's Redis, over RESP2 and RESP3: every rule, the model, the
//! engine race and a duplicate storm. Each test works under a prefix of its own and
//! deletes its keys at the end.

mod common;

use idem_core::testkit::Sizes;

idem_core::store_conformance!(
    factory = || async { common::store("conformance").await },
    atomic = true,
    sizes = Sizes {
        storm_events: 1000,
        storm_concurrency: 24,
        ..Sizes::default()
    },
    ignore = "needs the Redis server that scripts/test checks",
);

/// The same suite over a RESP3 connection (`HELLO 3`): the server answers maps, sets
/// and verbatim strings where RESP2 has arrays and bulk strings.
mod resp3 {
    use super::*;

    idem_core::store_conformance!(
        factory = || async { common::store_resp3("conformance-resp3").await },
        atomic = true,
        sizes = Sizes {
            storm_events: 1000,
            storm_concurrency: 24,
            ..Sizes::default()
        },
        ignore = "needs the Redis server that scripts/test checks",
    );
}
