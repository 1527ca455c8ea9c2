use idem::{idempotent, Error};

#[derive(Debug)]
pub enum CreateError {
    Quota,
    Idem(Error),
}

impl From<Error> for CreateError {
    fn from(error: Error) -> Self {
        CreateError::Idem(error)
    }
}

fn is_quota(error: &CreateError) -> bool {
    matches!(error, CreateError::Quota)
}

#[idempotent(key = id, replay_errors = is_quota)]
async fn create(id: u32) -> Result<u32, CreateError> {
    Ok(id)
}

fn main() {}
