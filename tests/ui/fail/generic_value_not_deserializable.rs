// A generic value type that is only `Serialize`: the help says what to add, not which
// private trait to implement.
use idem::{idempotent, Error};

#[idempotent(key = id)]
async fn load<T: serde::Serialize + Default>(id: u32) -> Result<T, Error> {
    let _ = id;
    Ok(T::default())
}

fn main() {}
