//! Consumes a Kinesis stream with the KCL and prints every record as a JSON line on stdout:
//! `{"shard":…,"sequence":…,"sub_sequence":…,"partition_key":…,"data":…,"data_encoding":…}`
//! (`data` is the UTF-8 text when it is valid UTF-8, else base64). Logs go to stderr. Run several
//! with the same `--application` to share the shards; Ctrl-C checkpoints and hands them over.
//! Several `--stream`s make one multi-stream application (one lease table, the Java KCL's
//! multi-stream lease keys), and each line then also names its `"stream"`.
//!
//! ```text
//! cargo run -p examples --bin consumer -- --stream orders --endpoint http://127.0.0.1:4567 \
//!     --initial-position trim-horizon
//! cargo run -p examples --bin consumer -- --stream orders --stream refunds --endpoint http://127.0.0.1:4567
//! cargo run -p examples --bin consumer -- --stream orders --region eu-west-1   # real AWS
//! ```

use std::io::Write;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine;
use clap::Parser;
use kcl::{InitialPosition, ProcessRecordsInput, ProcessorError, RecordProcessor, Scheduler};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Print the records of a Kinesis stream as JSON lines, using the KCL")]
struct Args {
    /// Stream to consume; repeat (or separate with commas) for a multi-stream application.
    #[arg(long, env = "KCL_STREAM", value_delimiter = ',', required = true)]
    stream: Vec<String>,
    /// Application name: the consumer group, and the name of its DynamoDB lease table.
    #[arg(long, env = "KCL_APPLICATION", default_value = "kcl-consumer")]
    application: String,
    /// Endpoint for both Kinesis and DynamoDB (e.g. a local broker); default: AWS.
    #[arg(long, env = "KCL_ENDPOINT")]
    endpoint: Option<String>,
    /// AWS region (default: from the environment / AWS config, else us-east-1).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// Where shards without a checkpoint start: `latest`, `trim-horizon`, or an RFC 3339
    /// timestamp such as 2026-01-31T12:00:00Z.
    #[arg(long, default_value = "latest", value_parser = parse_position)]
    initial_position: InitialPosition,
    /// This worker's id in the lease table (default: a random UUID).
    #[arg(long)]
    worker_id: Option<String>,
}

fn parse_position(text: &str) -> Result<InitialPosition, String> {
    match text.to_ascii_lowercase().replace('_', "-").as_str() {
        "latest" => Ok(InitialPosition::Latest),
        "trim-horizon" => Ok(InitialPosition::TrimHorizon),
        _ => aws_smithy_types::DateTime::from_str(
            text,
            aws_smithy_types::date_time::Format::DateTime,
        )
        .ok()
        .and_then(|t| SystemTime::try_from(t).ok())
        .map(InitialPosition::AtTimestamp)
        .ok_or_else(|| format!("{text:?} is not latest, trim-horizon or an RFC 3339 timestamp")),
    }
}

/// Prints each record as one JSON line, then checkpoints the batch.
#[derive(Default)]
struct JsonLines {
    shard: String,
    /// The shard's stream, in a multi-stream application.
    stream: Option<String>,
}

#[async_trait]
impl RecordProcessor for JsonLines {
    async fn initialize(&mut self, input: kcl::InitializationInput) -> Result<(), ProcessorError> {
        tracing::info!(shard = %input.shard_id, from = %input.extended_sequence_number, "reading shard");
        self.shard = input.shard_id;
        self.stream = input.stream.map(|s| s.name().to_owned());
        Ok(())
    }

    async fn process_records(&mut self, input: &ProcessRecordsInput) -> Result<(), ProcessorError> {
        let mut out = Vec::new();
        for record in &input.records {
            let (data, encoding) = match std::str::from_utf8(&record.data) {
                Ok(text) => (text.to_owned(), "utf8"),
                Err(_) => (
                    base64::engine::general_purpose::STANDARD.encode(&record.data),
                    "base64",
                ),
            };
            let mut line = serde_json::json!({
                "shard": self.shard,
                "sequence": record.sequence_number.as_str(),
                "sub_sequence": record.sub_sequence_number,
                "partition_key": record.partition_key,
                "data": data,
                "data_encoding": encoding,
            });
            if let Some(stream) = &self.stream {
                line["stream"] = stream.as_str().into();
            }
            serde_json::to_writer(&mut out, &line)?;
            out.push(b'\n');
        }
        // One write per batch keeps lines from different shards whole.
        {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out)?;
            stdout.flush()?;
        }
        input.checkpointer.checkpoint().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging("warn,kcl=info,consumer=info");
    let args = Args::parse();

    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    match (&args.region, &args.endpoint) {
        (Some(region), _) => loader = loader.region(aws_config::Region::new(region.clone())),
        // A local endpoint does not care; skip the region lookup chain (and its IMDS probe).
        (None, Some(_)) => loader = loader.region(aws_config::Region::new("us-east-1")),
        (None, None) => {}
    }
    if let Some(endpoint) = &args.endpoint {
        loader = loader.endpoint_url(endpoint);
        // A local endpoint accepts any credentials; use the environment's when it has some.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "AKID", "SECRET", None, None, "consumer",
            ));
        }
    }
    let mut aws = loader.load().await;
    if aws.region().is_none() {
        aws = aws
            .into_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
    }

    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let mut builder = Scheduler::builder()
        .application_name(&args.application)
        .kinesis_client(kinesis.clone())
        .dynamodb_client(aws_sdk_dynamodb::Client::new(&aws))
        .processor_factory(JsonLines::default)
        .initial_position(args.initial_position.clone());
    builder = match args.stream.as_slice() {
        [one] => builder.stream(one),
        several => {
            let mut streams = Vec::new();
            for name in several {
                let id = kcl::StreamIdentifier::describe(&kinesis, name).await?;
                streams.push(kcl::StreamConfig::new(id, args.initial_position.clone()));
            }
            builder.stream_tracker(streams)
        }
    };
    if let Some(id) = args.worker_id {
        builder = builder.worker_id(id);
    }
    let scheduler = builder.build()?;

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: checkpointing and handing shards over");
            on_signal.cancel();
        }
    });
    scheduler.run(shutdown).await?;
    Ok(())
}
