//! The batch forms on the machine's PostgreSQL: batches sharing keys, sent at once in
//! different orders, lock rows in id order and so never deadlock.

mod common;

use std::sync::Arc;

use idem_core::store::{Attempt, Begin, Completion, Outcome, RecordId, Store, Written};
use idem_core::testkit::{begin_at, completion_at, fresh_id, LEASE_MS, T0, TTL_MS};

const TASKS: u64 = 8;

/// Eight tasks each send 15 batch begins and batch completions over the same 24 keys,
/// each batch in its own order, each task taking and completing its own share and
/// meeting the others' rows: every statement answers (PostgreSQL aborts one of two
/// statements that lock rows in opposite orders with a deadlock error).
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn batches_sharing_keys_in_any_order_never_deadlock() {
    let store = Arc::new(common::store("batch_deadlock").await);
    let ids: Arc<Vec<RecordId>> = Arc::new((0..24).map(|_| fresh_id("deadlock")).collect());
    // Enough other rows that the planner reaches each key through the index, in
    // whatever order a statement lists it, rather than in the table's order.
    let filler: Vec<Begin> = (0..5000)
        .map(|_| begin_at(fresh_id("filler"), "filler", T0, None))
        .collect();
    for answer in store.begin_batch(&filler).await {
        answer.unwrap();
    }
    let analyze = format!("ANALYZE {}", store.table());
    sqlx::query(sqlx::AssertSqlSafe(analyze))
        .execute(store.pool())
        .await
        .unwrap();
    // Every key exists, so every batch locks every row.
    let first: Vec<Begin> = ids
        .iter()
        .map(|id| begin_at(id, "setup", T0, None))
        .collect();
    for answer in store.begin_batch(&first).await {
        assert_eq!(answer.unwrap(), Written::Applied(1));
    }
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(task);
                let mut errors = Vec::new();
                for round in 0..15u64 {
                    // Each round past the last one's records; this task takes its own
                    // share of the keys, and asks for the others as of T0, when they
                    // are live: refused, but their rows locked all the same.
                    let now = T0 + (round + 1) * 2 * (TTL_MS + LEASE_MS);
                    let owner = format!("task-{task}-{round}");
                    let mine = |index: usize| index as u64 % TASKS == task;
                    let mut begins: Vec<Begin> = ids
                        .iter()
                        .enumerate()
                        .map(|(index, id)| {
                            begin_at(id, &owner, if mine(index) { now } else { T0 }, None)
                        })
                        .collect();
                    rng.shuffle(&mut begins);
                    let mut completions: Vec<(Attempt, Completion)> = Vec::new();
                    let answers = store.begin_batch(&begins).await;
                    for (answer, begin) in answers.into_iter().zip(&begins) {
                        let fence = match answer {
                            Ok(Written::Applied(fence)) => fence,
                            Ok(Written::Refused(_)) => 1,
                            Err(error) => {
                                errors.push(error.to_string());
                                continue;
                            }
                        };
                        let holder = if begin.now_ms == now {
                            idem_core::testkit::owner(&owner)
                        } else {
                            idem_core::testkit::owner("nobody")
                        };
                        completions.push((
                            Attempt {
                                id: begin.id.clone(),
                                owner: holder,
                                fence,
                            },
                            completion_at(now + 1, Outcome::Ok, Some("1")),
                        ));
                    }
                    // This task's keys and the others', in one more order of its own:
                    // two tasks update their own rows and lock each other's.
                    rng.shuffle(&mut completions);
                    for answer in store.complete_batch(&completions).await {
                        if let Err(error) = answer {
                            errors.push(error.to_string());
                        }
                    }
                }
                errors
            })
        })
        .collect();
    for task in tasks {
        let errors = task.await.unwrap();
        assert!(
            errors.is_empty(),
            "{} statements failed, the first: {:?}",
            errors.len(),
            errors.first()
        );
    }
}

/// Two batches of the same 64 keys, one in ascending and one in descending order, sent
/// at once, 20 rounds: each key is taken by exactly one of them, and each then completes
/// the keys it took and sends completions for the other's (refused, but their rows
/// locked): no statement fails.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn two_batches_of_the_same_keys_in_opposite_orders_both_answer() {
    let store = common::store("batch_opposite").await;
    let mut ids: Vec<RecordId> = (0..64).map(|_| fresh_id("opposite")).collect();
    ids.sort_by_key(|id| id.to_string());
    for round in 0..20u64 {
        let now = T0 + round * 2 * (TTL_MS + LEASE_MS);
        let begins = |owner: &str, ids: &mut dyn Iterator<Item = &RecordId>| -> Vec<Begin> {
            ids.map(|id| begin_at(id, owner, now, None)).collect()
        };
        let forward = begins("forward", &mut ids.iter());
        let backward = begins("backward", &mut ids.iter().rev());
        let (taken_forward, taken_backward) =
            tokio::join!(store.begin_batch(&forward), store.begin_batch(&backward));
        let mut completions = [Vec::new(), Vec::new()];
        let mut winners = 0;
        for (side, (begins, answers)) in [(&forward, taken_forward), (&backward, taken_backward)]
            .into_iter()
            .enumerate()
        {
            for (begin, answer) in begins.iter().zip(answers) {
                let fence = match answer.expect("no statement fails") {
                    Written::Applied(fence) => {
                        winners += 1;
                        fence
                    }
                    Written::Refused(Some(record)) => record.fence,
                    Written::Refused(None) => panic!("{}: no record", begin.id),
                };
                completions[side].push((
                    Attempt {
                        id: begin.id.clone(),
                        owner: begin.owner,
                        fence,
                    },
                    completion_at(now + 1, Outcome::Ok, Some("1")),
                ));
            }
        }
        assert_eq!(winners, ids.len(), "each key taken once in round {round}");
        let [forward, backward] = completions;
        let (completed_forward, completed_backward) = tokio::join!(
            store.complete_batch(&forward),
            store.complete_batch(&backward)
        );
        let applied = completed_forward
            .into_iter()
            .chain(completed_backward)
            .filter(|answer| {
                matches!(
                    answer.as_ref().expect("no statement fails"),
                    Written::Applied(())
                )
            })
            .count();
        assert_eq!(
            applied,
            ids.len(),
            "each key completed once in round {round}"
        );
    }
}
