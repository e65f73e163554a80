use std::rc::Rc;

#[kcl::processor]
async fn handle(record: &kcl::Record) -> Result<(), kcl::ProcessorError> {
    let seen = Rc::new(record.sequence_number.clone());
    tokio::task::yield_now().await;
    println!("{seen}");
    Ok(())
}

fn main() {}
