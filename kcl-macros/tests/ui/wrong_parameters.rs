#[kcl::processor]
async fn handle(record: kcl::Record, shard: String) -> Result<(), kcl::ProcessorError> {
    let _ = (record, shard);
    Ok(())
}

#[kcl::processor]
async fn text(data: String) -> Result<(), kcl::ProcessorError> {
    let _ = data;
    Ok(())
}

fn main() {}
