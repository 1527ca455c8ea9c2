use idem::{idempotent, Error};

#[idempotent(key = id, lease = 30)]
async fn create(id: u32) -> Result<u32, Error> {
    Ok(id)
}

fn main() {}
