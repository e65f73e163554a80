//! A Kinesis-compatible local server for tests and self-hosting.
//!
//! One endpoint serves the Kinesis Data Streams API (AWS JSON 1.1 and CBOR) and the slice of
//! DynamoDB that KCL lease tables need (AWS JSON 1.0), so one `endpoint_url` serves both SDK
//! clients. Embed it in a test, or run the `local-broker` binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), local_broker::BrokerError> {
//! let broker = local_broker::LocalBroker::builder().start().await?;
//! println!("Kinesis and DynamoDB at {}", broker.endpoint());
//! // point aws-sdk-kinesis / aws-sdk-dynamodb at broker.endpoint() ...
//! broker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`http`] | routing by `X-Amz-Target`, wire protocols, AWS error encoding, validation |
//! | [`kinesis`] | streams, shards, records, iterators, resharding |
//! | [`dynamodb`] | tables, items, condition and update expressions |

pub mod clock;
pub mod config;
pub mod dynamodb;
pub mod http;
pub mod kinesis;

pub use clock::{Clock, ShiftableClock, SystemClock};
pub use config::BrokerConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Entry point: `LocalBroker::builder()`.
pub struct LocalBroker;

impl LocalBroker {
    /// A builder listening on `127.0.0.1:0` (an ephemeral port) with in-memory state.
    pub fn builder() -> LocalBrokerBuilder {
        LocalBrokerBuilder {
            host: "127.0.0.1".to_owned(),
            port: 0,
            config: BrokerConfig::default(),
        }
    }
}

/// Configures and starts a broker.
pub struct LocalBrokerBuilder {
    host: String,
    port: u16,
    config: BrokerConfig,
}

impl LocalBrokerBuilder {
    /// Interface to bind (default `127.0.0.1`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Port to bind (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Region used in ARNs (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.config.region = region.into();
        self
    }

    /// Account id used in ARNs (default `000000000000`).
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.config.account_id = account_id.into();
        self
    }

    /// How long resources stay in CREATING/UPDATING/DELETING (default 0).
    pub fn state_transition_delay(mut self, delay: Duration) -> Self {
        self.config.state_transition_delay = delay;
        self
    }

    /// How long a SubscribeToShard stream lasts before the server ends it (default 5 minutes).
    pub fn subscription_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.subscription_lifetime = lifetime;
        self
    }

    /// The time source (default the system clock); tests pass a [`ShiftableClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Binds the socket and starts serving in the background.
    pub async fn start(self) -> Result<RunningBroker, BrokerError> {
        let addr = format!("{}:{}", self.host, self.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?;
        let services = Arc::new(http::Services {
            kinesis: kinesis::Kinesis::new(self.config.clone()),
            dynamodb: dynamodb::DynamoDb::new(self.config.clone()),
        });
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let app = http::router(services);
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!(%err, "broker stopped with an error");
            }
        });
        tracing::info!(endpoint = %format!("http://{local_addr}"), "local broker listening");
        Ok(RunningBroker {
            local_addr,
            shutdown,
            server,
        })
    }
}

/// A broker serving in the background. Dropping it leaves the server running until the runtime
/// ends; call [`RunningBroker::shutdown`] to stop it gracefully.
pub struct RunningBroker {
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

impl RunningBroker {
    /// The base URL to give SDK clients as `endpoint_url`, e.g. `http://127.0.0.1:40321`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits for the server.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(err) = self.server.await {
            tracing::error!(%err, "broker task ended abnormally");
        }
    }
}
