#[kcl::processor]
async fn handle(record: kcl::Record) {
    let _ = record;
}

fn main() {}
