use idem::{idempotent, Error};

pub struct Group {
    pub id: u32,
}

#[idempotent(key = id)]
async fn create(id: u32) -> Result<Group, Error> {
    Ok(Group { id })
}

fn main() {}
