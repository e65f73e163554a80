//! Every form `#[kcl::processor]` and `#[kcl::main]` accept expands to code that compiles, is a
//! processor factory, and keeps the function callable.

use std::rc::Rc;

use kcl::{Json, ProcessorError, ProcessorFactory, Record};

#[derive(Debug, serde::Deserialize)]
struct Order {
    id: u64,
}

/// Owned record, default policy, a std error type.
#[kcl::processor]
async fn owned(record: Record) -> Result<(), std::io::Error> {
    let _ = record.data;
    Ok(())
}

#[kcl::processor(checkpoint(every = 100))]
async fn borrowed(record: &kcl::Record) -> Result<(), ProcessorError> {
    if record.data.is_empty() {
        return Err("empty record".into());
    }
    Ok(())
}

#[kcl::processor(checkpoint(seconds = 5))]
pub(crate) async fn batch(records: &[Record]) -> Result<(), String> {
    // State that is not Send is fine as long as it is not held across an await.
    let count = Rc::new(records.len());
    drop(count);
    tokio::task::yield_now().await;
    Ok(())
}

#[kcl::processor(checkpoint(every = 1))]
async fn json(Json(order): Json<Order>) -> std::result::Result<(), &'static str> {
    if order.id == 0 {
        return Err("order 0");
    }
    Ok(())
}

fn assert_factory(factory: impl ProcessorFactory) {
    let _processor = factory.create_processor();
}

fn record(data: &str) -> Record {
    Record {
        sequence_number: "1".parse().expect("digits"),
        sub_sequence_number: 0,
        partition_key: "key".into(),
        data: data.to_owned().into(),
        approximate_arrival_timestamp: None,
    }
}

#[test]
fn every_form_is_a_processor_factory() {
    assert_factory(owned);
    assert_factory(borrowed);
    assert_factory(batch);
    assert_factory(json);
    let _ = kcl::Scheduler::builder().processor_factory(json);
}

#[tokio::test]
async fn the_functions_stay_callable() {
    owned::call(record("a")).await.expect("ok");
    assert!(borrowed::call(&record("")).await.is_err());
    batch::call(&[record("a")]).await.expect("ok");
    assert_eq!(json::call(Json(Order { id: 0 })).await, Err("order 0"));
}

mod entry_point {
    #[kcl::main]
    pub async fn main() -> Result<(), String> {
        Err(String::from("ran on the runtime"))
    }

    #[test]
    fn kcl_main_runs_the_body_on_a_runtime() {
        assert_eq!(main(), Err("ran on the runtime".to_owned()));
    }
}
