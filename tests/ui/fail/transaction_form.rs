use idem::{idempotent, Error, Report};

// The transaction needs a name and a type.
#[idempotent(key = id, transaction = tx)]
async fn written_as_a_value(id: u32) -> Result<u32, Error> {
    Ok(id)
}

// A transactional call does not report.
#[idempotent(key = id, report = true, transaction(tx: Tx))]
async fn with_report(id: u32) -> Result<Report<u32>, Error> {
    unimplemented!("{id}")
}

struct Tx;

fn main() {}
