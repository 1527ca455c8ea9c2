use idem::{idempotent, Error};

#[idempotent(key = id)]
async fn create(id: u32) -> Result<impl std::fmt::Display, Error> {
    Ok(id)
}

fn main() {}
