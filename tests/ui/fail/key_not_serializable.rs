// A key that is not `Serialize`: one error, on the key expression.
use idem::{idempotent, Error};

struct OrderId(u64);

#[idempotent(key = order)]
async fn ship(order: OrderId) -> Result<u64, Error> {
    Ok(order.0)
}

fn main() {}
