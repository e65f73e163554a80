//! `local-broker`: serve Kinesis Data Streams, DynamoDB lease tables and Firehose on one local
//! endpoint.

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
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with a generated self-signed certificate, unless
    /// --tls-cert and --tls-key name one.
    #[arg(long)]
    tls: bool,
    /// PEM certificate chain for HTTPS (implies --tls).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for HTTPS (implies --tls).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Enforce AWS's per-shard throughput limits (ProvisionedThroughputExceededException).
    #[arg(long)]
    enforce_limits: bool,
    /// `sigv4`: verify every request's SigV4 signature against --credentials; `none`: accept any
    /// signature. Giving --credentials alone also means `sigv4`.
    #[arg(long, value_enum)]
    auth: Option<AuthMode>,
    /// Credentials whose SigV4 signatures are accepted, `ACCESS_KEY_ID:SECRET` (repeatable).
    #[arg(long = "credentials", value_name = "ACCESS_KEY_ID:SECRET")]
    credentials: Vec<String>,
    /// Keep streams, records, consumers, tags, policies and DynamoDB tables in this directory
    /// across restarts. Without it everything is in memory.
    #[arg(long, env = "LOCAL_BROKER_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// With --data-dir: `always` (acknowledge writes only once fsynced; group commit),
    /// `interval=MS` (fsync every MS milliseconds), or `never` (fsync at clean shutdown only).
    #[arg(long, default_value = "always", requires = "data_dir")]
    sync: local_broker::SyncMode,
    /// With --data-dir: MiB of recently written record bodies kept in memory across all shards;
    /// older records are read from disk.
    #[arg(long, default_value_t = 64, requires = "data_dir")]
    cache_mib: usize,
    /// Inject faults into requests, `OPERATION:KIND=P[,KIND=P...]` (repeatable): OPERATION is a
    /// name (`GetRecords`), `kinesis:NAME`, `dynamodb:NAME`, `kinesis:*`, `dynamodb:*` or `*`;
    /// KIND is `throttle`, `error` (HTTP 500), `drop` (close the connection) or `slow=P@LATENCY`
    /// (`200ms`, `2s`). Example: `--fault 'GetRecords:throttle=0.2,slow=0.1@500ms'`.
    #[arg(long = "fault", value_name = "OPERATION:KIND=P,...")]
    faults: Vec<local_broker::FaultRule>,
    /// Seed the fault draws so a run can be repeated.
    #[arg(long, requires = "faults")]
    fault_seed: Option<u64>,
    /// Firehose S3 destinations write objects under this directory, one subdirectory per bucket.
    #[arg(long, env = "LOCAL_BROKER_S3_ROOT")]
    s3_root: Option<std::path::PathBuf>,
    /// Firehose S3 destinations write to this S3-compatible endpoint instead (path-style;
    /// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "LOCAL_BROKER_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// A Lambda function for Firehose transforms, `ARN=URL` (repeatable): the URL takes the
    /// transform event as a JSON POST and answers as the function would.
    #[arg(long = "lambda", value_name = "ARN=URL")]
    lambda: Vec<String>,
    /// Write the self-signed certificate (PEM) here, for clients to trust.
    #[arg(long)]
    tls_cert_out: Option<std::path::PathBuf>,
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// Accept any signature (the default without --credentials).
    None,
    /// Verify SigV4 signatures against the configured credentials.
    Sigv4,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(local_broker::TlsSettings::Files { cert, key }),
        _ if args.tls => Some(local_broker::TlsSettings::SelfSigned),
        _ => None,
    };
    let mut builder = local_broker::LocalBroker::builder();
    let verify = match args.auth {
        Some(AuthMode::Sigv4) if args.credentials.is_empty() => {
            eprintln!("local-broker: --auth sigv4 needs at least one --credentials KEY:SECRET");
            return std::process::ExitCode::FAILURE;
        }
        Some(AuthMode::None) if !args.credentials.is_empty() => {
            eprintln!("local-broker: --auth none contradicts --credentials; drop one of them");
            return std::process::ExitCode::FAILURE;
        }
        Some(mode) => mode == AuthMode::Sigv4,
        None => !args.credentials.is_empty(),
    };
    if verify {
        let mut credentials = local_broker::Credentials::new();
        for pair in &args.credentials {
            let Some((id, secret)) = local_broker::Credentials::parse_pair(pair) else {
                eprintln!("local-broker: --credentials takes ACCESS_KEY_ID:SECRET, got {pair:?}");
                return std::process::ExitCode::FAILURE;
            };
            credentials = credentials.with(id, secret);
        }
        builder = builder.auth(credentials);
    }
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    for rule in args.faults {
        builder = builder.fault(rule);
    }
    if let Some(seed) = args.fault_seed {
        builder = builder.fault_seed(seed);
    }
    if let Some(dir) = args.data_dir {
        builder = builder
            .data_dir(dir)
            .sync(args.sync)
            .cache_size(args.cache_mib.saturating_mul(1024 * 1024));
    }
    for function in &args.lambda {
        let Some((arn, url)) = function.split_once('=') else {
            eprintln!("local-broker: --lambda takes ARN=URL, got {function:?}");
            return std::process::ExitCode::FAILURE;
        };
        builder = builder.lambda_function(arn, url);
    }
    if let Some(dir) = args.s3_root {
        builder = builder.s3_root(dir);
    }
    if let Some(url) = args.s3_endpoint {
        builder = builder.s3_endpoint(url);
    }
    let broker = builder
        .host(args.host)
        .port(args.port)
        .region(args.region)
        .account_id(args.account_id)
        .state_transition_delay(Duration::from_millis(args.state_transition_delay_ms))
        .enforce_limits(args.enforce_limits)
        .start()
        .await;
    let broker = match broker {
        Ok(broker) => broker,
        Err(err) => {
            eprintln!("local-broker: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (&args.tls_cert_out, broker.certificate_pem())
        && let Err(err) = std::fs::write(path, pem)
    {
        eprintln!("local-broker: cannot write {}: {err}", path.display());
        return std::process::ExitCode::FAILURE;
    }
    println!("local-broker listening on {}", broker.endpoint());
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("local-broker: cannot wait for Ctrl-C: {err}");
    }
    tracing::info!("shutting down");
    broker.shutdown().await;
    std::process::ExitCode::SUCCESS
}
