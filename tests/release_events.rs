//! The event that reports a release carries the body's error: by `Display` where the
//! error type has one, else by `Debug`, else by its type's name.

use std::io::Write;
use std::sync::{Arc, Mutex};

use idem::{idempotent, Engine, Error, MemoryStore};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum Shown {
    #[error("the card was declined by the issuer")]
    Declined,
    #[error(transparent)]
    Idem(#[from] Error),
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug only
enum DebugOnly {
    Unavailable { retry_in_s: u32 },
    Idem(Error),
}

impl From<Error> for DebugOnly {
    fn from(error: Error) -> Self {
        DebugOnly::Idem(error)
    }
}

#[idempotent(key = id)]
async fn shown(id: u32) -> Result<u32, Shown> {
    let _ = id;
    Err(Shown::Declined)
}

#[idempotent(key = id)]
async fn debug_only(id: u32) -> Result<u32, DebugOnly> {
    let _ = id;
    Err(DebugOnly::Unavailable { retry_in_s: 30 })
}

#[tokio::test]
async fn the_release_event_carries_the_error_text() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    Engine::new(MemoryStore::new())
        .scope(async {
            assert!(shown(1).await.is_err());
            assert!(debug_only(1).await.is_err());
        })
        .await;
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let released: Vec<_> = text
        .lines()
        .filter(|l| l.contains("outcome=\"released\""))
        .collect();
    assert_eq!(released.len(), 2, "{text}");
    assert!(
        released[0].contains("the card was declined by the issuer"),
        "{}",
        released[0]
    );
    assert!(
        released[1].contains("Unavailable { retry_in_s: 30 }"),
        "{}",
        released[1]
    );
}
