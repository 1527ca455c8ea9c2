// syn's own error about the item is passed on: the attribute goes on a function.
use idem::idempotent;

#[idempotent(key = 1)]
struct Order {
    id: u64,
}

fn main() {}
