//! Run a worker from environment variables, with logging and a graceful shutdown on Ctrl-C or
//! SIGTERM: what [`#[kcl::main]`](macro@crate::main) and [`run_from_env`] do.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `KCL_STREAM` | the stream to consume | required |
//! | `KCL_APPLICATION` | the application name (and lease table) | the stream name |
//! | `KCL_WORKER_ID` | this worker's id in the lease table | `<hostname>-<pid>` |
//! | `KCL_INITIAL_POSITION` | where shards without a checkpoint start: `TRIM_HORIZON` or `LATEST` | `LATEST` |
//! | `KCL_RETRIEVAL` | `polling`, or `fanout` (enhanced fan-out through a consumer named after the application) | `polling` |
//! | `AWS_ENDPOINT_URL` | one endpoint for Kinesis and DynamoDB (e.g. a local broker) | AWS |
//! | `AWS_REGION` | the AWS region | `us-east-1` |
//! | `RUST_LOG` | the log filter (`tracing_subscriber`'s `EnvFilter`) | `info` |
//!
//! Credentials come from the AWS SDK's default chain; with `AWS_ENDPOINT_URL` set and no
//! `AWS_ACCESS_KEY_ID`, placeholder credentials are used (a local broker accepts any).
//!
//! ```no_run
//! #[kcl::processor]
//! async fn print(record: &kcl::Record) -> Result<(), kcl::ProcessorError> {
//!     println!("{} {:?}", record.partition_key, record.data);
//!     Ok(())
//! }
//!
//! #[kcl::main]
//! async fn main() -> Result<(), kcl::runner::RunError> {
//!     kcl::run_from_env(print).await
//! }
//! ```
//!
//! To change more than the variables allow, start from [`Settings::scheduler_builder`] and run
//! with [`shutdown_on_signal`].

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, InitialPosition, RetrievalMode};
use crate::processor::ProcessorFactory;
use crate::scheduler::{BuildError, Scheduler, SchedulerBuilder, SchedulerError};

/// Why [`run_from_env`] could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A required variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable has a value the runner does not understand.
    #[error("environment variable {var}={value:?} is not valid: expected {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// The scheduler's settings are incomplete.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The scheduler stopped with an error.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// The worker's settings, read from the variables in the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// `KCL_STREAM`.
    pub stream: String,
    /// `KCL_APPLICATION`, default the stream name.
    pub application: String,
    /// `KCL_WORKER_ID`, default `<hostname>-<pid>`.
    pub worker_id: String,
    /// `KCL_INITIAL_POSITION`, default `LATEST`.
    pub initial_position: InitialPosition,
    /// `KCL_RETRIEVAL`, default polling.
    pub retrieval: RetrievalMode,
    /// `AWS_ENDPOINT_URL`, if set.
    pub endpoint: Option<String>,
    /// `AWS_REGION`, default `us-east-1`.
    pub region: String,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, RunError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (e.g. a map in a test); empty values count as unset.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use kcl::runner::Settings;
    ///
    /// let vars = HashMap::from([("KCL_STREAM", "orders"), ("KCL_INITIAL_POSITION", "trim_horizon")]);
    /// let settings = Settings::from_vars(|name| vars.get(name).map(|v| v.to_string()))?;
    /// assert_eq!(settings.application, "orders");
    /// assert_eq!(settings.initial_position, kcl::InitialPosition::TrimHorizon);
    /// # Ok::<(), kcl::runner::RunError>(())
    /// ```
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, RunError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let stream = var("KCL_STREAM").ok_or(RunError::Missing("KCL_STREAM"))?;
        let initial_position = match var("KCL_INITIAL_POSITION") {
            None => InitialPosition::Latest,
            Some(value) => match normalized(&value).as_str() {
                "TRIM_HORIZON" => InitialPosition::TrimHorizon,
                "LATEST" => InitialPosition::Latest,
                _ => {
                    return Err(RunError::Invalid {
                        var: "KCL_INITIAL_POSITION",
                        value,
                        expected: "TRIM_HORIZON or LATEST",
                    });
                }
            },
        };
        let retrieval = match var("KCL_RETRIEVAL") {
            None => RetrievalMode::Polling,
            Some(value) => match normalized(&value).replace('_', "").as_str() {
                "POLLING" => RetrievalMode::Polling,
                "FANOUT" => RetrievalMode::fan_out(),
                _ => {
                    return Err(RunError::Invalid {
                        var: "KCL_RETRIEVAL",
                        value,
                        expected: "polling or fanout",
                    });
                }
            },
        };
        Ok(Self {
            application: var("KCL_APPLICATION").unwrap_or_else(|| stream.clone()),
            worker_id: var("KCL_WORKER_ID").unwrap_or_else(|| default_worker_id(&var)),
            stream,
            initial_position,
            retrieval,
            endpoint: var("AWS_ENDPOINT_URL"),
            region: var("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
        })
    }

    /// A scheduler builder with the SDK clients, stream, application, worker id, initial
    /// position and retrieval mode set: add a processor factory, then build. (A later
    /// `.config(...)` replaces the retrieval mode too: set it there again.)
    pub async fn scheduler_builder(&self) -> SchedulerBuilder {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()));
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                    "AKID",
                    "SECRET",
                    None,
                    None,
                    "kcl-runner",
                ));
            }
        }
        let aws = loader.load().await;
        Scheduler::builder()
            .stream(&self.stream)
            .application_name(&self.application)
            .worker_id(&self.worker_id)
            .kinesis_client(aws_sdk_kinesis::Client::new(&aws))
            .dynamodb_client(aws_sdk_dynamodb::Client::new(&aws))
            .initial_position(self.initial_position.clone())
            .config(Config::default().retrieval_mode(self.retrieval.clone()))
    }
}

/// Upper case, `-` as `_`.
fn normalized(value: &str) -> String {
    value.trim().to_ascii_uppercase().replace('-', "_")
}

/// `<hostname>-<pid>`: unique per process on a host, and readable in the lease table.
fn default_worker_id(var: &impl Fn(&str) -> Option<String>) -> String {
    let host = var("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Logs to stderr through `tracing_subscriber`, filtered by `RUST_LOG` (default `info`). Does
/// nothing if a subscriber is already installed.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A token cancelled at the first Ctrl-C (SIGINT) or SIGTERM; give it to [`Scheduler::run`]
/// so the worker checkpoints and releases its leases before returning. Call from within a
/// tokio runtime.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let signal = terminated().await;
        tracing::info!(signal, "shutting down: checkpointing and releasing leases");
        cancel.cancel();
    });
    token
}

/// Waits for SIGINT or SIGTERM and names it.
async fn terminated() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Runs one worker configured by the environment with processors from `factory` until Ctrl-C
/// or SIGTERM, then checkpoints, releases the leases and returns. Sets up logging
/// ([`init_tracing`]) first.
///
/// `factory` is a `#[kcl::processor]` function or any [`ProcessorFactory`], such as
/// `|| MyProcessor::default()`.
pub async fn run_from_env(factory: impl ProcessorFactory) -> Result<(), RunError> {
    init_tracing();
    let settings = Settings::from_env()?;
    tracing::info!(
        stream = %settings.stream,
        application = %settings.application,
        worker_id = %settings.worker_id,
        retrieval = ?settings.retrieval,
        "starting worker"
    );
    let scheduler = settings
        .scheduler_builder()
        .await
        .processor_factory(factory)
        .build()?;
    scheduler.run(shutdown_on_signal()).await?;
    Ok(())
}

/// Sets up logging and runs `main` on a multi-threaded tokio runtime: the body of a
/// [`#[kcl::main]`](macro@crate::main) function.
///
/// # Panics
///
/// If the runtime cannot be created (the process cannot start threads).
pub fn start<F: Future>(main: F) -> F::Output {
    init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
        .block_on(main)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, RunError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_stream() {
        let s = settings(&[("KCL_STREAM", "orders"), ("HOSTNAME", "box")]).expect("valid");
        assert_eq!(s.application, "orders");
        assert_eq!(s.worker_id, format!("box-{}", std::process::id()));
        assert_eq!(s.initial_position, InitialPosition::Latest);
        assert_eq!(s.retrieval, RetrievalMode::Polling);
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn every_variable_is_read() {
        let s = settings(&[
            ("KCL_STREAM", "orders"),
            ("KCL_APPLICATION", "billing"),
            ("KCL_WORKER_ID", "w1"),
            ("KCL_INITIAL_POSITION", "trim-horizon"),
            ("KCL_RETRIEVAL", "fan-out"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4567"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .expect("valid");
        assert_eq!(s.application, "billing");
        assert_eq!(s.worker_id, "w1");
        assert_eq!(s.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(s.retrieval, RetrievalMode::fan_out());
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:4567"));
        assert_eq!(s.region, "eu-west-1");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(matches!(
            settings(&[]),
            Err(RunError::Missing("KCL_STREAM"))
        ));
        assert!(matches!(
            settings(&[("KCL_STREAM", " ")]),
            Err(RunError::Missing("KCL_STREAM"))
        ));
        let err =
            settings(&[("KCL_STREAM", "s"), ("KCL_RETRIEVAL", "push")]).expect_err("unknown mode");
        assert_eq!(
            err.to_string(),
            "environment variable KCL_RETRIEVAL=\"push\" is not valid: expected polling or fanout"
        );
        assert!(matches!(
            settings(&[("KCL_STREAM", "s"), ("KCL_INITIAL_POSITION", "oldest")]),
            Err(RunError::Invalid {
                var: "KCL_INITIAL_POSITION",
                ..
            })
        ));
    }
}
