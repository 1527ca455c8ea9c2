use idem::idempotent;

#[derive(Debug)]
pub enum CreateError {
    Quota,
}

#[idempotent(key = id)]
async fn create(id: u32) -> Result<u32, CreateError> {
    if id == 0 {
        return Err(CreateError::Quota);
    }
    Ok(id)
}

fn main() {}
