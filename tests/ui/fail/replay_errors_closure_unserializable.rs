// replay_errors with a closure on an error type that is not serde: one error, on the return type.
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

#[allow(dead_code)]
fn is_quota(error: &CreateError) -> bool {
    matches!(error, CreateError::Quota)
}

#[idempotent(key = id, replay_errors = |e| matches!(e, CreateError::Quota))]
async fn create(id: u32) -> Result<u32, CreateError> {
    Ok(id)
}

fn main() {}
