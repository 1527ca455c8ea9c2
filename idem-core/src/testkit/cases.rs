//! The conformance cases, one per rule of the store contract.

use std::sync::Arc;

use super::{
    attempt, begin_at, bytes_completion_at, completion_at, fresh_id, owner, renewal_at, Model,
    LEASE_MS, T0,
};
use crate::store::{
    Attempt, Begin, Codec, Completion, Outcome, Record, RecordId, State, StepRecord, Steps, Store,
    Written, FORMAT,
};

async fn acquire(store: &Arc<dyn Store>, request: &Begin) -> u64 {
    match store.begin(request).await.expect("begin") {
        Written::Applied(fence) => fence,
        Written::Refused(record) => panic!(
            "begin at {} should have been applied, was refused with {record:?}",
            request.now_ms
        ),
    }
}

async fn refused_begin(store: &Arc<dyn Store>, request: &Begin) -> Record {
    match store.begin(request).await.expect("begin") {
        Written::Applied(fence) => panic!(
            "begin at {} should have been refused, was applied with fence {fence}",
            request.now_ms
        ),
        Written::Refused(Some(record)) => Arc::unwrap_or_clone(record),
        Written::Refused(None) => panic!("a refused begin must return the current record"),
    }
}

async fn read(store: &Arc<dyn Store>, id: &RecordId) -> Record {
    store
        .read(id)
        .await
        .expect("read")
        .map(Arc::unwrap_or_clone)
        .unwrap_or_else(|| panic!("record {id} should exist"))
}

/// begin on an empty key is applied with fence 1.
pub async fn begin_on_empty_acquires_fence_1(store: Arc<dyn Store>) {
    let id = fresh_id("empty");
    assert_eq!(acquire(&store, &begin_at(&id, "a", T0, None)).await, 1);
}

/// begin writes state, owner, fence, lease, expiry, fingerprint, format and codec.
pub async fn begin_writes_every_field(store: Arc<dyn Store>) {
    let id = fresh_id("fields");
    let request = begin_at(&id, "owner-a", T0, Some("fp-1"));
    acquire(&store, &request).await;
    assert_eq!(
        read(&store, &id).await,
        Record {
            id: id.clone(),
            state: State::InProgress,
            owner: owner("owner-a"),
            fence: 1,
            lease_until_ms: request.lease_until_ms,
            expires_at_s: request.expires_at_s,
            fingerprint: Some("fp-1".into()),
            outcome: None,
            data: None,
            format: FORMAT,
            codec: Codec::Json,
            steps: Steps::new(),
        }
    );
}

/// read of a key never written is `None`.
pub async fn read_of_absent_is_none(store: Arc<dyn Store>) {
    assert_eq!(store.read(&fresh_id("absent")).await.expect("read"), None);
}

/// begin is refused while another attempt's lease is live, up to its last millisecond,
/// and the refusal carries the holder's record.
pub async fn begin_refused_while_lease_live(store: Arc<dyn Store>) {
    let id = fresh_id("live");
    let first = begin_at(&id, "a", T0, None);
    acquire(&store, &first).await;
    for now in [T0, T0 + 1, first.lease_until_ms - 1] {
        let record = refused_begin(&store, &begin_at(&id, "b", now, None)).await;
        assert_eq!(record.owner, owner("a"));
        assert_eq!(record.state, State::InProgress);
        assert_eq!(record.fence, 1);
    }
}

/// At the lease's end the key is free: begin takes it over with fence + 1, its own
/// owner, and its own fingerprint (none removes the old one).
pub async fn begin_takes_over_at_lease_end_with_higher_fence(store: Arc<dyn Store>) {
    let id = fresh_id("takeover");
    let first = begin_at(&id, "a", T0, Some("fp"));
    acquire(&store, &first).await;
    let second = begin_at(&id, "b", first.lease_until_ms, None);
    assert_eq!(acquire(&store, &second).await, 2);
    let record = read(&store, &id).await;
    assert_eq!(record.owner, owner("b"));
    assert_eq!(record.fence, 2);
    assert_eq!(record.lease_until_ms, second.lease_until_ms);
    assert_eq!(record.expires_at_s, second.expires_at_s);
    assert_eq!(
        record.fingerprint, None,
        "begin without a fingerprint removes it"
    );
}

/// A completed record refuses begin until it expires, carrying outcome and data.
pub async fn completed_record_refuses_begin(store: Arc<dyn Store>) {
    let id = fresh_id("completed");
    let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
    let done = completion_at(T0 + 10, Outcome::Ok, Some("{\"group\":7}"));
    assert_eq!(
        store
            .complete(&attempt(&id, "a", fence), &done)
            .await
            .expect("complete"),
        Written::Applied(())
    );
    let record = refused_begin(&store, &begin_at(&id, "b", T0 + LEASE_MS * 10, None)).await;
    assert_eq!(record.state, State::Completed);
    assert_eq!(record.outcome, Some(Outcome::Ok));
    assert_eq!(record.data.as_deref(), Some(&b"{\"group\":7}"[..]));
    assert_eq!(record.owner, owner("a"), "completion keeps the owner");
    assert_eq!(record.fence, fence);
    assert_eq!(record.expires_at_s, done.expires_at_s);
}

/// A completed record is free from its expiry on; begin clears outcome and data.
pub async fn begin_takes_over_after_record_expiry(store: Arc<dyn Store>) {
    let id = fresh_id("expiry");
    let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
    let done = completion_at(T0, Outcome::Ok, Some("1"));
    store
        .complete(&attempt(&id, "a", fence), &done)
        .await
        .expect("complete");
    let expiry_ms = done.expires_at_s * 1000;
    refused_begin(&store, &begin_at(&id, "b", expiry_ms - 1, None)).await;
    let again = begin_at(&id, "b", expiry_ms, Some("fp"));
    // A store may have deleted the expired record (TTL), which resets the fence.
    assert!(acquire(&store, &again).await >= 1);
    let record = read(&store, &id).await;
    assert_eq!(record.state, State::InProgress);
    assert_eq!(record.owner, owner("b"));
    assert_eq!(record.outcome, None, "begin removes the old outcome");
    assert_eq!(record.data, None, "begin removes the old data");
    assert_eq!(record.fingerprint.as_deref(), Some("fp"));
}

/// The fingerprint comes back on refusals in both states, for the engine to compare.
pub async fn fingerprint_returned_in_both_states(store: Arc<dyn Store>) {
    let id = fresh_id("fingerprint");
    let fence = acquire(&store, &begin_at(&id, "a", T0, Some("fp-a"))).await;
    let record = refused_begin(&store, &begin_at(&id, "b", T0 + 1, Some("fp-b"))).await;
    assert_eq!(record.fingerprint.as_deref(), Some("fp-a"));
    store
        .complete(
            &attempt(&id, "a", fence),
            &completion_at(T0 + 2, Outcome::Ok, Some("1")),
        )
        .await
        .expect("complete");
    let record = refused_begin(&store, &begin_at(&id, "b", T0 + 3, Some("fp-b"))).await;
    assert_eq!(record.state, State::Completed);
    assert_eq!(record.fingerprint.as_deref(), Some("fp-a"));
}

/// A lapsed lease taken over by `b`: returns the id and `b`'s record.
async fn taken_over(store: &Arc<dyn Store>, case: &str) -> (RecordId, Record) {
    let id = fresh_id(case);
    let first = begin_at(&id, "a", T0, None);
    acquire(store, &first).await;
    acquire(store, &begin_at(&id, "b", first.lease_until_ms + 5, None)).await;
    let record = read(store, &id).await;
    (id, record)
}

fn assert_refused_with(written: Written<()>, current: &Record) {
    assert_eq!(written, Written::Refused(Some(Arc::new(current.clone()))));
}

/// complete by the attempt that lost its lease is refused and changes nothing.
pub async fn stale_owner_complete_refused(store: Arc<dyn Store>) {
    let (id, current) = taken_over(&store, "stale-complete").await;
    let now = current.lease_until_ms - 1;
    let written = store
        .complete(
            &attempt(&id, "a", 1),
            &completion_at(now, Outcome::Ok, Some("1")),
        )
        .await
        .expect("complete");
    assert_refused_with(written, &current);
    assert_eq!(read(&store, &id).await, current);
}

/// extend by the attempt that lost its lease is refused and changes nothing.
pub async fn stale_owner_extend_refused(store: Arc<dyn Store>) {
    let (id, current) = taken_over(&store, "stale-extend").await;
    let written = store
        .extend(
            &attempt(&id, "a", 1),
            &renewal_at(current.lease_until_ms - 1),
        )
        .await
        .expect("extend");
    assert_refused_with(written, &current);
    assert_eq!(read(&store, &id).await, current);
}

/// release by the attempt that lost its lease is refused and changes nothing.
pub async fn stale_owner_release_refused(store: Arc<dyn Store>) {
    let (id, current) = taken_over(&store, "stale-release").await;
    let written = store.release(&attempt(&id, "a", 1)).await.expect("release");
    assert_refused_with(written, &current);
    assert_eq!(read(&store, &id).await, current);
}

/// The right owner with the wrong fence is refused too.
pub async fn stale_fence_refused(store: Arc<dyn Store>) {
    let id = fresh_id("stale-fence");
    let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
    let current = read(&store, &id).await;
    let wrong = attempt(&id, "a", fence + 1);
    let done = completion_at(T0 + 1, Outcome::Ok, Some("1"));
    assert_refused_with(
        store.complete(&wrong, &done).await.expect("complete"),
        &current,
    );
    assert_refused_with(
        store
            .extend(&wrong, &renewal_at(T0 + 1))
            .await
            .expect("extend"),
        &current,
    );
    assert_refused_with(store.release(&wrong).await.expect("release"), &current);
    assert_eq!(read(&store, &id).await, current);
}

/// A lapsed lease that nobody took over still lets its attempt complete.
pub async fn complete_after_lapse_without_takeover_accepted(store: Arc<dyn Store>) {
    let id = fresh_id("lapsed");
    let first = begin_at(&id, "a", T0, None);
    let fence = acquire(&store, &first).await;
    let late = first.lease_until_ms + LEASE_MS * 3;
    let done = completion_at(late, Outcome::Ok, Some("\"late\""));
    assert_eq!(
        store
            .complete(&attempt(&id, "a", fence), &done)
            .await
            .expect("complete"),
        Written::Applied(())
    );
    let record = read(&store, &id).await;
    assert_eq!(record.state, State::Completed);
    assert_eq!(
        record.expires_at_s, done.expires_at_s,
        "ttl counts from completion"
    );
}

/// complete, extend and release on a key that has no record are refused with `None`.
pub async fn writes_on_absent_record_refused_with_none(store: Arc<dyn Store>) {
    let id = fresh_id("absent-writes");
    let nobody = attempt(&id, "a", 1);
    let done = completion_at(T0, Outcome::Ok, Some("1"));
    assert_eq!(
        store.complete(&nobody, &done).await.expect("complete"),
        Written::Refused(None)
    );
    assert_eq!(
        store
            .extend(&nobody, &renewal_at(T0))
            .await
            .expect("extend"),
        Written::Refused(None)
    );
    assert_eq!(
        store.release(&nobody).await.expect("release"),
        Written::Refused(None)
    );
    assert_eq!(
        store.read(&id).await.expect("read"),
        None,
        "no write may create a record"
    );
}

/// release frees the key at once (lease 0), keeps the record, and the next begin gets
/// a higher fence without any clock move.
pub async fn release_frees_at_once_and_reacquire_gets_higher_fence(store: Arc<dyn Store>) {
    let id = fresh_id("release");
    let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
    assert_eq!(
        store
            .release(&attempt(&id, "a", fence))
            .await
            .expect("release"),
        Written::Applied(())
    );
    let record = read(&store, &id).await;
    assert_eq!(record.lease_until_ms, 0);
    assert_eq!(record.state, State::InProgress);
    assert_eq!(
        acquire(&store, &begin_at(&id, "b", T0 + 1, None)).await,
        fence + 1
    );
}

/// extend after a release is refused and leaves the lease released: a heartbeat that
/// reaches the store after the release (its sender gave up waiting) cannot revive it.
pub async fn extend_after_release_refused(store: Arc<dyn Store>) {
    let id = fresh_id("late-extend");
    let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
    let held = attempt(&id, "a", fence);
    store.release(&held).await.expect("release");
    let released = read(&store, &id).await;
    assert_eq!(released.lease_until_ms, 0);
    let written = store
        .extend(&held, &renewal_at(T0 + 1))
        .await
        .expect("extend");
    assert_eq!(written, Written::Refused(Some(Arc::new(released.clone()))));
    assert_eq!(read(&store, &id).await, released, "the record is unchanged");
    assert_eq!(
        acquire(&store, &begin_at(&id, "b", T0 + 2, None)).await,
        fence + 1,
        "the key is still free"
    );
}

/// extend moves the lease and the expiry; the old lease end no longer frees the key.
pub async fn extend_renews_lease(store: Arc<dyn Store>) {
    let id = fresh_id("extend");
    let first = begin_at(&id, "a", T0, None);
    let fence = acquire(&store, &first).await;
    let renewed = renewal_at(T0 + LEASE_MS / 3);
    assert_eq!(
        store
            .extend(&attempt(&id, "a", fence), &renewed)
            .await
            .expect("extend"),
        Written::Applied(())
    );
    let record = read(&store, &id).await;
    assert_eq!(record.lease_until_ms, renewed.lease_until_ms);
    assert_eq!(record.expires_at_s, renewed.expires_at_s);
    refused_begin(&store, &begin_at(&id, "b", first.lease_until_ms, None)).await;
    assert_eq!(
        acquire(&store, &begin_at(&id, "b", renewed.lease_until_ms, None)).await,
        fence + 1
    );
}

/// Each outcome is recorded with its data (none for not-stored).
pub async fn complete_records_each_outcome(store: Arc<dyn Store>) {
    for (outcome, data) in [
        (Outcome::Ok, Some("{\"v\":\"é \\\" ok\"}")),
        (Outcome::Err, Some("{\"code\":\"E42\"}")),
        (Outcome::NotStored, None),
    ] {
        let id = fresh_id("outcomes");
        let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
        store
            .complete(
                &attempt(&id, "a", fence),
                &completion_at(T0 + 1, outcome, data),
            )
            .await
            .expect("complete");
        let record = read(&store, &id).await;
        assert_eq!(record.outcome, Some(outcome));
        assert_eq!(record.data.as_deref(), data.map(str::as_bytes));
        assert_eq!(record.codec, Codec::Json);
    }
}

/// A value recorded as bytes keeps its codec and every byte (not UTF-8, NUL, empty),
/// and a later JSON completion of the same key after a takeover is JSON again.
pub async fn complete_keeps_bytes_as_bytes(store: Arc<dyn Store>) {
    let id = fresh_id("bytes");
    let mut now = T0;
    for data in [
        &b"\x00\x9f\x92\x96\xff{\"not\": json}\x00"[..],
        b"",
        b"\xc3\x28",
    ] {
        let fence = acquire(&store, &begin_at(&id, "a", now, None)).await;
        let done = bytes_completion_at(now + 1, data);
        let written = store.complete(&attempt(&id, "a", fence), &done).await;
        assert_eq!(written.expect("complete"), Written::Applied(()));
        let record = read(&store, &id).await;
        assert_eq!(record.codec, Codec::Bytes);
        assert_eq!(record.data.as_deref(), Some(data));
        let refused = refused_begin(&store, &begin_at(&id, "b", now + 2, None)).await;
        assert_eq!(
            (refused.codec, refused.data),
            (Codec::Bytes, Some(data.into()))
        );
        now = done.expires_at_s * 1000;
    }
    let fence = acquire(&store, &begin_at(&id, "c", now, None)).await;
    let json = completion_at(now + 1, Outcome::Ok, Some("7"));
    store
        .complete(&attempt(&id, "c", fence), &json)
        .await
        .expect("complete");
    let record = read(&store, &id).await;
    assert_eq!((record.codec, record.data), (Codec::Json, Some("7".into())));
}

/// delete removes the record; the next begin starts at fence 1 again.
pub async fn delete_removes_record_and_resets_fence(store: Arc<dyn Store>) {
    let id = fresh_id("delete");
    acquire(&store, &begin_at(&id, "a", T0, None)).await;
    store.delete(&id).await.expect("delete");
    assert_eq!(store.read(&id).await.expect("read"), None);
    assert_eq!(acquire(&store, &begin_at(&id, "b", T0 + 1, None)).await, 1);
}

/// Many concurrent begins on one key: exactly one is applied, and every refusal
/// carries the winner's record.
pub async fn concurrent_begins_have_one_winner(store: Arc<dyn Store>) {
    const TASKS: usize = 32;
    let id = fresh_id("race");
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (store, id, start) = (store.clone(), id.clone(), start.clone());
            tokio::spawn(async move {
                let owner = format!("racer-{i}");
                start.wait().await;
                let written = store
                    .begin(&begin_at(&id, &owner, T0, None))
                    .await
                    .expect("begin");
                (owner, written)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refusals = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (owner, Written::Applied(fence)) => winners.push((owner, fence)),
            (_, Written::Refused(record)) => refusals.push(record),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one begin wins: {winners:?}");
    let (winner, fence) = &winners[0];
    assert_eq!(*fence, 1);
    for record in refusals {
        let record = record.expect("a refusal carries the current record");
        assert_eq!(record.owner, owner(winner));
    }
}

/// Four keys in the four states a begin can meet (no record, in progress and live,
/// completed, lapsed), each held by its own model: `Model`'s answers and records are
/// what the single-record operations must give.
async fn four_states(store: &Arc<dyn Store>, case: &str) -> (Vec<RecordId>, Vec<Model>, u64) {
    let ids: Vec<RecordId> = ["absent", "live", "completed", "lapsed"]
        .iter()
        .map(|state| fresh_id(&format!("{case}-{state}")))
        .collect();
    let mut models = vec![Model::default(); 4];
    let now = T0 + LEASE_MS * 2;
    let setup = [
        (1, begin_at(&ids[1], "live", now - 1, None)),
        (2, begin_at(&ids[2], "done", T0, Some("fp"))),
        (3, begin_at(&ids[3], "gone", T0, None)),
    ];
    for (index, request) in &setup {
        assert_eq!(
            store.begin(request).await.expect("begin"),
            models[*index].begin(request)
        );
    }
    let holder = attempt(&ids[2], "done", 1);
    let done = completion_at(T0 + 5, Outcome::Ok, Some("[1,2]"));
    assert_eq!(
        store.complete(&holder, &done).await.expect("complete"),
        models[2].complete(&holder, &done)
    );
    (ids, models, now)
}

/// Each record is the model's.
async fn records_are_the_models(store: &Arc<dyn Store>, ids: &[RecordId], models: &[Model]) {
    for (id, model) in ids.iter().zip(models) {
        assert_eq!(
            store.read(id).await.expect("read"),
            model.record,
            "the record of {id}"
        );
    }
}

/// begin_batch answers each request as begin would alone, in order, and leaves the same
/// records: fence 1 on no record, refused with the live and the completed record,
/// fence + 1 on the lapsed one.
pub async fn begin_batch_answers_as_begin_alone(store: Arc<dyn Store>) {
    let (ids, mut models, now) = four_states(&store, "begin-batch").await;
    let requests: Vec<Begin> = ids
        .iter()
        .map(|id| begin_at(id, "batch", now, Some("fp")))
        .collect();
    let answers = store.begin_batch(&requests).await;
    assert_eq!(answers.len(), requests.len(), "one answer per request");
    for ((answer, request), model) in answers.into_iter().zip(&requests).zip(&mut models) {
        assert_eq!(
            answer.expect("begin in a batch"),
            model.begin(request),
            "the answer to {}",
            request.id
        );
    }
    records_are_the_models(&store, &ids, &models).await;
    // A batch of one and an empty batch.
    let one = begin_at(fresh_id("begin-batch-one"), "batch", now, None);
    let answer = store.begin_batch(std::slice::from_ref(&one)).await;
    assert_eq!(answer.len(), 1);
    assert_eq!(
        answer.into_iter().next().unwrap().expect("begin"),
        Written::Applied(1)
    );
    assert!(store.begin_batch(&[]).await.is_empty());
}

/// complete_batch answers each completion as complete would alone, in order, and
/// leaves the same records: refused with none for no record, applied for the holder,
/// refused with the record for a completion sent again to a completed record and for
/// a stale owner.
pub async fn complete_batch_answers_as_complete_alone(store: Arc<dyn Store>) {
    let (ids, mut models, now) = four_states(&store, "complete-batch").await;
    let completions: Vec<(Attempt, Completion)> = ["nobody", "live", "done", "stale"]
        .into_iter()
        .enumerate()
        .map(|(index, owner)| {
            let data = format!("{{\"item\":{index}}}");
            (
                attempt(&ids[index], owner, 1),
                completion_at(now + 10, Outcome::Ok, Some(&data)),
            )
        })
        .collect();
    let answers = store.complete_batch(&completions).await;
    assert_eq!(
        answers.len(),
        completions.len(),
        "one answer per completion"
    );
    for ((answer, (attempt, completion)), model) in
        answers.into_iter().zip(&completions).zip(&mut models)
    {
        assert_eq!(
            answer.expect("complete in a batch"),
            model.complete(attempt, completion),
            "the answer to {attempt:?}"
        );
    }
    records_are_the_models(&store, &ids, &models).await;
    assert!(store.complete_batch(&[]).await.is_empty());
}

fn step_value(name: &str, json: &str) -> StepRecord {
    StepRecord {
        name: name.to_owned(),
        outcome: Some(Outcome::Ok),
        data: Some(json.as_bytes().to_vec().into()),
        codec: Codec::Json,
    }
}

async fn journal(store: &Arc<dyn Store>, attempt: &Attempt, step: &StepRecord) -> Written<()> {
    store.journal(attempt, step).await.expect("journal")
}

/// journal writes a step into the holder's record, replaces an entry of the same name
/// in place (the order of first writes is kept), keeps JSON, errors and raw bytes as
/// they are, and changes nothing else of the record.
pub async fn journal_writes_steps_by_name(store: Arc<dyn Store>) {
    let id = fresh_id("journal");
    let fence = acquire(&store, &begin_at(&id, "a", T0, Some("fp-1"))).await;
    let holder = attempt(&id, "a", fence);
    let before = read(&store, &id).await;
    let bytes = StepRecord {
        name: "render".into(),
        outcome: Some(Outcome::Ok),
        data: Some(vec![0xff, 0x00, 0xfe, b'"'].into()),
        codec: Codec::Bytes,
    };
    let declined = StepRecord {
        name: "mail".into(),
        outcome: Some(Outcome::Err),
        data: Some(b"{\"declined\":true}".to_vec().into()),
        codec: Codec::Json,
    };
    let charged = step_value("charge", "{\"id\":\"ch_1\"}");
    for step in [&StepRecord::started("charge"), &bytes, &declined, &charged] {
        assert_eq!(journal(&store, &holder, step).await, Written::Applied(()));
    }
    let after = read(&store, &id).await;
    assert_eq!(after.steps, vec![charged, bytes, declined]);
    assert_eq!(
        Record {
            steps: Steps::new(),
            ..after
        },
        before,
        "a journal write changes nothing but the steps"
    );
}

/// journal by an attempt that lost its lease (another took over), or with the wrong
/// fence, is refused with the current record and changes nothing; on a key without a
/// record it is refused with `None` and creates none.
pub async fn stale_journal_refused(store: Arc<dyn Store>) {
    let (id, current) = taken_over(&store, "stale-journal").await;
    let step = step_value("charge", "1");
    assert_refused_with(
        journal(&store, &attempt(&id, "a", 1), &step).await,
        &current,
    );
    assert_refused_with(
        journal(&store, &attempt(&id, "b", current.fence + 1), &step).await,
        &current,
    );
    assert_eq!(read(&store, &id).await, current);
    let absent = fresh_id("journal-absent");
    assert_eq!(
        journal(&store, &attempt(&absent, "a", 1), &step).await,
        Written::Refused(None)
    );
    assert_eq!(store.read(&absent).await.expect("read"), None);
}

/// The journal belongs to the record's lifetime: it survives a release, a takeover
/// after the lease lapsed and a heartbeat, and a later attempt journals beside it; an
/// attempt whose lease lapsed without a takeover may still journal (as it may complete).
pub async fn journal_survives_takeover(store: Arc<dyn Store>) {
    let id = fresh_id("journal-takeover");
    let first = begin_at(&id, "a", T0, None);
    let fence = acquire(&store, &first).await;
    let a = attempt(&id, "a", fence);
    let s1 = step_value("s1", "1");
    assert_eq!(journal(&store, &a, &s1).await, Written::Applied(()));
    assert_eq!(
        store.release(&a).await.expect("release"),
        Written::Applied(())
    );
    let second = begin_at(&id, "b", T0 + 10, None);
    let fence_b = acquire(&store, &second).await;
    let b = attempt(&id, "b", fence_b);
    assert_eq!(read(&store, &id).await.steps, vec![s1.clone()]);
    let s2 = step_value("s2", "2");
    let late = second.lease_until_ms + 5;
    assert_eq!(
        journal(&store, &b, &s2).await,
        Written::Applied(()),
        "a lapsed lease nobody took over still journals"
    );
    let fence_c = acquire(&store, &begin_at(&id, "c", late, None)).await;
    let c = attempt(&id, "c", fence_c);
    assert_eq!(
        store
            .extend(&c, &renewal_at(late + 1))
            .await
            .expect("extend"),
        Written::Applied(())
    );
    let record = read(&store, &id).await;
    assert_eq!((record.owner, record.fence), (owner("c"), fence_c));
    assert_eq!(record.steps, vec![s1, s2]);
}

/// complete empties the journal (a replay needs only the outcome), and a begin after
/// the completed record expired starts a lifetime with no steps.
pub async fn complete_empties_the_journal(store: Arc<dyn Store>) {
    let id = fresh_id("journal-complete");
    let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
    let a = attempt(&id, "a", fence);
    assert_eq!(
        journal(&store, &a, &step_value("s1", "1")).await,
        Written::Applied(())
    );
    let done = completion_at(T0 + 1, Outcome::Ok, Some("\"done\""));
    assert_eq!(
        store.complete(&a, &done).await.expect("complete"),
        Written::Applied(())
    );
    let completed = read(&store, &id).await;
    assert_eq!(completed.state, State::Completed);
    assert_eq!(completed.steps, Vec::new());
    assert_eq!(completed.data.as_deref(), Some(&b"\"done\""[..]));
    let later = done.expires_at_s * 1000 + 1;
    acquire(&store, &begin_at(&id, "b", later, None)).await;
    assert_eq!(read(&store, &id).await.steps, Vec::new());
}
