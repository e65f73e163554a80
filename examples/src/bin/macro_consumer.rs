//! The shortest consumer: one function per record, configured by the environment
//! (`KCL_STREAM`, `KCL_APPLICATION`, `AWS_ENDPOINT_URL`, ... — see `kcl::runner`). Each record's
//! data is decoded as a JSON order; a record that is not one is logged and skipped. Checkpoints
//! every 100 records, and on Ctrl-C or SIGTERM checkpoints and hands the shards over.
//!
//! ```text
//! cargo run --release -p local-broker -- --port 4567 &
//! aws --endpoint-url http://127.0.0.1:4567 --region us-east-1 kinesis create-stream --stream-name orders --shard-count 2
//! aws --endpoint-url http://127.0.0.1:4567 --region us-east-1 kinesis put-record --stream-name orders \
//!     --partition-key c1 --cli-binary-format raw-in-base64-out --data '{"id":1,"customer":"c1","cents":1250}'
//! KCL_STREAM=orders KCL_INITIAL_POSITION=TRIM_HORIZON AWS_ENDPOINT_URL=http://127.0.0.1:4567 \
//!     cargo run -p examples --bin macro_consumer
//! ```
//!
//! The same consumer written against the `RecordProcessor` trait is `consumer.rs`.

use kcl::Json;

#[derive(Debug, serde::Deserialize)]
struct Order {
    id: u64,
    customer: String,
    cents: u64,
}

#[kcl::processor(checkpoint(every = 100))]
async fn print_order(Json(order): Json<Order>) -> Result<(), std::io::Error> {
    println!(
        "order {} from {}: {}.{:02}",
        order.id,
        order.customer,
        order.cents / 100,
        order.cents % 100
    );
    Ok(())
}

#[kcl::main]
async fn main() -> Result<(), kcl::runner::RunError> {
    kcl::run_from_env(print_order).await
}
