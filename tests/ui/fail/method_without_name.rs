use idem::{idempotent, Error};

pub struct Billing;

impl Billing {
    #[idempotent(key = order)]
    async fn charge(&self, order: u64) -> Result<u64, Error> {
        Ok(order)
    }
}

fn main() {}
