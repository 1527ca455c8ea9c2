// A ttl or lease the engine would refuse at every call is refused at compile time.
use idem::{idempotent, Error};

#[idempotent(key = id, ttl = "500ms", lease = "10ms")]
async fn create(id: u32) -> Result<u32, Error> {
    Ok(id)
}

fn main() {}
