struct NotAnError;

#[kcl::processor]
async fn handle(record: kcl::Record) -> Result<(), NotAnError> {
    let _ = record;
    Ok(())
}

fn main() {}
