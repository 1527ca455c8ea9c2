//! A guarded response streamed to its client while the layer copies it for the record:
//! the handler's body passes through frame by frame, as the client reads it, and the
//! copy (up to `max_body_bytes`) goes to the guarded call when the body ends, passes the
//! limit, fails or panics. A client that leaves before then hands the rest of the body
//! back to the call, which reads it for the record for a while ([`drain`]).

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::layer::{Body, BoxError};

/// How the copy of a streamed response ended.
pub(crate) enum Ended {
    /// The body ended: all of it, at most `max_body_bytes`.
    Whole(Bytes),
    /// The body passed `max_body_bytes`; the client still gets the rest.
    TooLarge,
    /// The body failed or panicked before its end, or its client left and it did not
    /// end in time: never recorded as if whole.
    Cut,
    /// The client left before the body ended: the rest, to read for the record.
    Abandoned(Tee),
}

/// The handler's body on its way to the client, copied for the record.
pub(crate) struct Tee {
    /// `None` once it panicked.
    body: Option<Body>,
    copy: BytesMut,
    limit: usize,
    /// The response's declared Content-Length: the message is whole once copied.
    declared: Option<usize>,
    /// Told how the copy ended, once; `None` after.
    ended: Option<oneshot::Sender<Ended>>,
}

impl Tee {
    /// `body`, copied up to `limit` bytes; `ended` is told how the copy ends.
    pub(crate) fn new(
        body: Body,
        limit: usize,
        declared: Option<usize>,
        ended: oneshot::Sender<Ended>,
    ) -> Tee {
        Tee {
            body: Some(body),
            copy: BytesMut::new(),
            limit,
            declared,
            ended: Some(ended),
        }
    }

    fn end(&mut self, ended: Ended) {
        if let Some(sender) = self.ended.take() {
            // The call gone (its task stopped) has nothing left to record.
            let _ = sender.send(ended);
        }
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        // A panic after the head was sent cannot become a 500: the stream ends in an
        // error (the client sees it cut) and the record says "not stored".
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(body).poll_frame(cx)));
        let frame = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(frame)) => frame,
            Err(_) => {
                tracing::error!(target: "idem", "the handler's response body panicked after its head was sent; recorded as not stored");
                this.body = None;
                this.end(Ended::Cut);
                return Poll::Ready(Some(Err("the response body panicked".into())));
            }
        };
        if this.ended.is_some() {
            match &frame {
                None => {
                    let whole = std::mem::take(&mut this.copy).freeze();
                    this.end(Ended::Whole(whole));
                }
                Some(Err(error)) => {
                    tracing::error!(target: "idem", %error, "the handler's response body failed after its head was sent; recorded as not stored");
                    this.end(Ended::Cut);
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if this.copy.len() + data.len() > this.limit {
                            this.copy = BytesMut::new();
                            this.end(Ended::TooLarge);
                        } else {
                            this.copy.extend_from_slice(data);
                            if this.declared == Some(this.copy.len()) {
                                let whole = std::mem::take(&mut this.copy).freeze();
                                this.end(Ended::Whole(whole));
                            }
                        }
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Tee {
    /// A client that leaves before the copy ended hands the rest of the body back.
    fn drop(&mut self) {
        if let Some(sender) = self.ended.take() {
            let rest = Tee {
                body: self.body.take(),
                copy: std::mem::take(&mut self.copy),
                limit: self.limit,
                declared: self.declared,
                ended: None,
            };
            let _ = sender.send(Ended::Abandoned(rest));
        }
    }
}

/// Reads the rest of a body whose client left, for its record, for at most `within`:
/// how its copy ended, or [`Ended::Cut`] if it did not end in time (then it is dropped).
pub(crate) async fn drain(mut rest: Tee, within: Duration) -> Ended {
    let (sender, mut ended) = oneshot::channel();
    rest.ended = Some(sender);
    let reading = async {
        // Until the copy ended (the body's end, the limit, a failure): no one reads on.
        while rest.ended.is_some() {
            match rest.frame().await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    };
    if tokio::time::timeout(within, reading).await.is_err() {
        tracing::warn!(target: "idem", ?within, "a streamed response whose client left did not end in time; dropped and recorded as not stored");
    }
    // Not handed back again when dropped.
    rest.ended = None;
    ended.try_recv().unwrap_or(Ended::Cut)
}
