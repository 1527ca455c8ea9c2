//! Bytes per record in the in-memory store at 1,000,000 records, counted by a global
//! allocator, and evidence that expired records are reclaimed.
//!
//! `cargo bench -p idem-core --bench memory` (add `-- --records N` for another count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem_core::{Call, EngineBuilder, Error, ManualClock, MemoryStore, Namespace};

/// The system allocator, counting the bytes live at any moment.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let mut records: u64 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--records" {
            records = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--records takes a number");
        }
        // cargo bench passes `--bench`; other arguments are ignored.
    }
    // The namespace as `#[idempotent]` passes it (a name fixed for the program, which
    // every record shares), then as a `&str` given to `Call::new` (copied once per call,
    // the copy kept by the call's record).
    measure(records, "fixed namespace (#[idempotent])", || {
        Namespace::fixed("bench::memory")
    });
    measure(records, "namespace given as &str", || {
        Namespace::from("bench::memory")
    });
}

/// Fills a store with `records` records, their calls in `namespace()`, and prints the
/// live heap per record; then shows that expired records are reclaimed.
fn measure(records: u64, label: &str, namespace: impl Fn() -> Namespace) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::default();
    let ttl = Duration::from_secs(3600);
    let store = Arc::new(MemoryStore::with_capacity(records as usize));
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .ttl(ttl)
        .build()
        .unwrap();
    let fill = |from: u64, to: u64| {
        runtime.block_on(async {
            for key in from..to {
                // A UUID-like request id and a small value, as a typical handler has.
                let request_id = format!("{key:08x}-9a4d-4e6f-8b7a-1c2d3e4f5a6b");
                let value = Call::new(namespace(), &request_id)
                    .engine(&engine)
                    .run(|_| async move { Ok::<_, Error>(format!("group-{key}")) })
                    .await;
                value.unwrap();
            }
        })
    };
    let before = LIVE.load(Ordering::SeqCst);
    fill(0, records);
    let after = LIVE.load(Ordering::SeqCst);
    let per_record = (after - before) as f64 / records as f64;
    println!("{label}: records: {}", store.len());
    println!(
        "{label}: live heap: {:.1} MiB, {per_record:.0} bytes per record",
        (after - before) as f64 / (1 << 20) as f64
    );

    // Past the TTL, new keys reclaim the expired records instead of growing the map.
    clock.advance(ttl + Duration::from_secs(1));
    let batch = records / 10;
    fill(records, records + batch);
    let reclaimed = LIVE.load(Ordering::SeqCst);
    println!(
        "after {batch} new keys past the ttl: records: {}, live heap: {:.1} MiB",
        store.len(),
        (reclaimed - before) as f64 / (1 << 20) as f64
    );
    assert!(
        store.len() <= batch as usize + 1024,
        "expired records were reclaimed"
    );
}
