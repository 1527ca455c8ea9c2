use idem::{idempotent, Error};

#[idempotent(key = id, ttl = "24 hourz")]
async fn create(id: u32) -> Result<u32, Error> {
    Ok(id)
}

fn main() {}
