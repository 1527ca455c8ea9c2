// With `report = true`, the function returns `Result<idem::Report<T>, E>`.
use idem::{idempotent, Error};

#[idempotent(key = id, report = true)]
async fn create(id: u32) -> Result<u32, Error> {
    Ok(id)
}

fn main() {}
