use idem::{idempotent, Error};

#[idempotent(key = id)]
fn create(id: u32) -> Result<u32, Error> {
    Ok(id)
}

fn main() {}
