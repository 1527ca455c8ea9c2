use idem::idempotent;

#[idempotent(key = id)]
async fn create(id: u32) {
    let _ = id;
}

fn main() {}
