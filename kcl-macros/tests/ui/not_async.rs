#[kcl::processor]
fn handle(record: kcl::Record) -> Result<(), kcl::ProcessorError> {
    let _ = record;
    Ok(())
}

fn main() {}
