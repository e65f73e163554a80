//! `local-broker`: serve Kinesis Data Streams and DynamoDB lease tables on one local endpoint.

use clap::Parser;
use std::time::Duration;

/// A Kinesis-compatible local server for tests and self-hosting.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "LOCAL_BROKER_HOST")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 4567, env = "LOCAL_BROKER_PORT")]
    port: u16,
    /// Region used in ARNs.
    #[arg(long, default_value = local_broker::config::DEFAULT_REGION, env = "AWS_REGION")]
    region: String,
    /// Twelve-digit account id used in ARNs.
    #[arg(long, default_value = local_broker::config::DEFAULT_ACCOUNT_ID)]
    account_id: String,
    /// How long streams and tables stay CREATING/UPDATING/DELETING, in milliseconds.
    #[arg(long, default_value_t = 0)]
    state_transition_delay_ms: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let broker = local_broker::LocalBroker::builder()
        .host(args.host)
        .port(args.port)
        .region(args.region)
        .account_id(args.account_id)
        .state_transition_delay(Duration::from_millis(args.state_transition_delay_ms))
        .start()
        .await;
    let broker = match broker {
        Ok(broker) => broker,
        Err(err) => {
            eprintln!("local-broker: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("local-broker listening on {}", broker.endpoint());
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("local-broker: cannot wait for Ctrl-C: {err}");
    }
    tracing::info!("shutting down");
    broker.shutdown().await;
    std::process::ExitCode::SUCCESS
}
