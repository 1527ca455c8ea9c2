//! Every shape #[idempotent] supports compiles.

use idem::{idempotent, Error};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
}

pub struct Event {
    pub request_id: String,
    pub size: u32,
}

// A free function.
#[idempotent(key = event.request_id, ttl = "24h", lease = "30s", max_duration = "15m", wait = "10s")]
pub async fn free(event: Event) -> Result<Group, Error> {
    Ok(Group { id: event.size.into() })
}

pub struct Service;

// An inherent method with `&self`, and one taking `self` by value.
impl Service {
    #[idempotent(key = id, name = "Service::by_ref")]
    pub async fn by_ref(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }

    #[idempotent(key = id, name = "Service::by_value")]
    pub async fn by_value(self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }

    // An associated function without `self` looks like a free function.
    #[idempotent(key = id)]
    pub async fn associated(id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

// A native async fn in a trait impl.
pub trait Native {
    fn run(&self, id: u64) -> impl std::future::Future<Output = Result<u64, Error>> + Send;
}

impl Native for Service {
    #[idempotent(key = id, name = "Service::native")]
    async fn run(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

// An #[async_trait] impl.
#[async_trait::async_trait]
pub trait Boxed {
    async fn run(&self, id: u64) -> Result<u64, Error>;
}

#[async_trait::async_trait]
impl Boxed for Service {
    #[idempotent(key = id, name = "Service::boxed")]
    async fn run(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

// Generics, `impl Trait` arguments, explicit lifetimes, destructured parameters.
#[idempotent(key = (id, tag.as_ref()))]
pub async fn generic<T: Serialize + Send>(id: u64, tag: impl AsRef<str> + Send, item: T) -> Result<usize, Error> {
    let _ = item;
    Ok(id as usize)
}

#[idempotent(key = id)]
pub async fn lifetimes<'a>(id: &'a str, rest: &'a [u8]) -> Result<usize, Error> {
    Ok(id.len() + rest.len())
}

#[idempotent(key = request_id)]
pub async fn destructured(Event { request_id, size }: Event, (a, _): (u8, u8)) -> Result<u32, Error> {
    let _ = request_id;
    Ok(size + u32::from(a))
}

// Other Result types.
#[idempotent(key = id)]
pub async fn io(id: u64) -> std::io::Result<u64> {
    Ok(id)
}

#[idempotent(key = id)]
pub async fn any(id: u64) -> anyhow::Result<u64> {
    Ok(id)
}

// A re-exported idem, through `crate = ...`.
mod reexport {
    pub use idem;
}

#[idempotent(key = id, crate = reexport::idem)]
pub async fn through_reexport(id: u64) -> Result<u64, Error> {
    Ok(id)
}

fn main() {}
