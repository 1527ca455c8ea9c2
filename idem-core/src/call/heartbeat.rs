//! Heartbeats: the lease renewed while the body runs, polled in the body's own future.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::guard::Guard;
use crate::context::Context;
use crate::protocol::{self, ExtendAnswer};
use crate::store::{Attempt, Renewal, StoreError, Written};

/// An extend in flight: the renewal it asked for, and the store's answer.
type Heartbeat<'a> = BoxFuture<'a, (Renewal, Result<Written<()>, StoreError>)>;

impl Guard {
    /// Polls the body together with its heartbeats until the body ends; an extend still
    /// in flight then is awaited, so no heartbeat can land after complete or release.
    ///
    /// Every beat is scheduled from the lease it renews, not from when the body started:
    /// the first at `lease_start + lease / 3`, where `lease_start` is the clock reading
    /// taken before begin was sent (`lease_until_ms - lease`), each later one at
    /// `lease / 3` past the start of the lease the previous beat asked for. A slow begin
    /// therefore cannot push the first renewal past the promised margin.
    pub(super) async fn drive<F: Future>(
        &self,
        attempt: &Attempt,
        context: &Context,
        lease_until_ms: u64,
        body: F,
    ) -> F::Output {
        let clock = self.engine.clock();
        let store = self.engine.store();
        let terms = self.terms();
        let every_ms = terms.beat_every_ms();
        let beats_until = self
            .clock_now()
            .saturating_add(self.max_duration.as_millis() as u64);
        let mut body = pin!(body);
        let mut next_beat = terms.first_beat_ms(lease_until_ms);
        // Armed when the body first waits: a body that ends at once needs no timer.
        let mut timer = None;
        let mut armed = false;
        let mut extend: Option<Heartbeat<'_>> = None;

        let output = poll_fn(|cx| {
            if let Poll::Ready(output) = body.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            if !armed {
                armed = true;
                timer = Some(clock.sleep(Duration::from_millis(
                    next_beat.saturating_sub(self.clock_now()),
                )));
            }
            loop {
                if let Some(in_flight) = extend.as_mut() {
                    match in_flight.as_mut().poll(cx) {
                        Poll::Ready((renewal, result)) => {
                            extend = None;
                            self.beat_settled(attempt, context, &renewal, result);
                            if !context.is_marked_lost() {
                                let now = self.clock_now();
                                timer = Some(clock.sleep(Duration::from_millis(
                                    next_beat.saturating_sub(now),
                                )));
                            }
                            continue;
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        timer = None;
                        let now = self.clock_now();
                        if now.saturating_sub(next_beat) > every_ms / 2 {
                            tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                                late_ms = now - next_beat,
                                "heartbeat is late: the body may be blocking its thread");
                        }
                        if now >= beats_until {
                            tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                                "the body ran past max_duration; heartbeats stop and the lease will lapse");
                            return Poll::Pending;
                        }
                        next_beat = terms.next_beat_ms(now);
                        let renewal = terms.renewal(now);
                        extend = Some(Box::pin(async move {
                            let answer = self.store_call("extend", store.extend(attempt, &renewal)).await;
                            (renewal, answer)
                        }));
                    }
                    _ => return Poll::Pending,
                }
            }
        })
        .await;
        if let Some(in_flight) = extend {
            let (renewal, result) = in_flight.await;
            self.beat_settled(attempt, context, &renewal, result);
        }
        output
    }

    fn beat_settled(
        &self,
        attempt: &Attempt,
        context: &Context,
        renewal: &Renewal,
        result: Result<Written<()>, StoreError>,
    ) {
        match result {
            Ok(written) => match protocol::after_extend(written, attempt, renewal) {
                ExtendAnswer::Renewed(lease_until_ms) => context.renewed(lease_until_ms),
                ExtendAnswer::Lost { current_fence } => {
                    tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        fence = attempt.fence, current_fence, "heartbeat refused: the lease is lost");
                    context.mark_lost();
                }
            },
            Err(error) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    %error, "heartbeat failed; the lease may lapse");
            }
        }
    }
}
