use idem::{idempotent, Error};

pub struct Event {
    pub request_id: String,
}

#[idempotent(key = event.requestid)]
async fn create(event: Event) -> Result<usize, Error> {
    Ok(event.request_id.len())
}

fn main() {}
