use idem::{idempotent, Error};

#[idempotent(key = id, ttl = "1h", ttl = "2h")]
async fn create(id: u32) -> Result<u32, Error> {
    Ok(id)
}

fn main() {}
