#[kcl::processor(checkpoint(evry = 100))]
async fn handle(record: kcl::Record) -> Result<(), kcl::ProcessorError> {
    let _ = record;
    Ok(())
}

fn main() {}
