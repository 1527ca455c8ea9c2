use idem::idempotent;

#[idempotent(key = id)]
async fn create(id: u32) -> Option<u32> {
    Some(id)
}

fn main() {}
