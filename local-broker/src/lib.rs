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
//! | [`storage`] | the data directory: record log, metadata log, sync modes |
//! | [`video`] | Kinesis Video Streams: control plane, PutMedia, GetMedia, clips, HLS |

pub mod clock;
pub mod config;
pub mod dynamodb;
pub mod http;
pub mod kinesis;
pub mod storage;
pub mod tls;
pub mod video;

pub use clock::{Clock, ShiftableClock, SystemClock};
pub use config::BrokerConfig;
pub use http::sigv4::Credentials;
pub use storage::SyncMode;
pub use tls::TlsSettings;

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
    /// The TLS certificate or key could not be loaded or generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The data directory could not be opened or recovered.
    #[error("data directory {dir}: {source}")]
    Storage {
        dir: String,
        #[source]
        source: storage::StorageError,
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
            tls: None,
        }
    }
}

/// Configures and starts a broker.
pub struct LocalBrokerBuilder {
    host: String,
    port: u16,
    config: BrokerConfig,
    tls: Option<TlsSettings>,
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

    /// Requires every request to be SigV4-signed by one of these credentials (default: any
    /// signature is accepted).
    pub fn auth(mut self, credentials: http::sigv4::Credentials) -> Self {
        self.config.auth = Some(credentials);
        self
    }

    /// Enforces AWS's per-shard throughput limits (default off): writes beyond 1 MiB/s or
    /// 1,000 records/s and reads beyond 5 calls/s or 2 MiB/s get
    /// `ProvisionedThroughputExceededException`.
    pub fn enforce_limits(mut self, enforce: bool) -> Self {
        self.config.enforce_limits = enforce;
        self
    }

    /// Keeps streams, records, consumers, tags, policies and DynamoDB tables in `dir`, so they
    /// survive restarts (default: in memory only). See [`storage`] for the layout.
    pub fn data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.data_dir = Some(dir.into());
        self
    }

    /// When writes reach the disk with a data directory (default [`SyncMode::Always`]); see
    /// [`storage`] for what each mode promises.
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.config.sync = mode;
        self
    }

    /// Serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of cleartext HTTP.
    pub fn tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
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
        let services = Arc::new(self.services()?);
        let tls = self.tls.as_ref().map(TlsSettings::load).transpose()?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        if services.storage.is_durable() {
            tokio::spawn(sweep_retention(Arc::clone(&services), shutdown.clone()));
        }
        let storage = services.storage.clone();
        let app = http::router(services);
        let (scheme, certificate_pem) = match &tls {
            Some(tls) => ("https", Some(tls.certificate_pem.clone())),
            None => ("http", None),
        };
        let server = match tls {
            None => tokio::spawn(async move {
                // Cleartext: HTTP/1.1, and HTTP/2 with prior knowledge (h2c), detected per connection.
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(err) = served {
                    tracing::error!(%err, "broker stopped with an error");
                }
            }),
            Some(tls) => tokio::spawn(serve_tls(listener, tls.acceptor, app, stop)),
        };
        tracing::info!(endpoint = %format!("{scheme}://{local_addr}"), "local broker listening");
        Ok(RunningBroker {
            local_addr,
            scheme,
            certificate_pem,
            shutdown,
            server,
            storage,
        })
    }

    /// The services, fresh in memory or recovered from the data directory.
    fn services(&self) -> Result<http::Services, BrokerError> {
        let (kinesis, dynamodb, storage) = match &self.config.data_dir {
            None => (
                kinesis::Kinesis::new(self.config.clone()),
                dynamodb::DynamoDb::new(self.config.clone()),
                storage::Storage::memory(),
            ),
            Some(dir) => {
                let failed = |source| BrokerError::Storage {
                    dir: dir.display().to_string(),
                    source,
                };
                let started = std::time::Instant::now();
                let (storage, mut recovered) =
                    storage::Storage::open(dir, self.config.sync).map_err(failed)?;
                let kinesis =
                    kinesis::Kinesis::restore(self.config.clone(), storage.clone(), &mut recovered)
                        .map_err(failed)?;
                let dynamodb =
                    dynamodb::DynamoDb::restore(self.config.clone(), storage.clone(), &recovered)
                        .map_err(failed)?;
                tracing::info!(
                    dir = %dir.display(),
                    sync = ?self.config.sync,
                    elapsed = ?started.elapsed(),
                    "recovered the data directory"
                );
                (kinesis, dynamodb, storage)
            }
        };
        Ok(http::Services {
            kinesis,
            dynamodb,
            auth: self.config.auth.clone(),
            clock: Arc::clone(&self.config.clock),
            storage,
            video: video::Video::new(
                self.config.clone(),
                if self.tls.is_some() { "https" } else { "http" },
            ),
        })
    }
}

/// Deletes record segments past retention, every [`config::RETENTION_SWEEP_INTERVAL`], so disk
/// use stays bounded under a steady load.
async fn sweep_retention(services: Arc<http::Services>, stop: CancellationToken) {
    let mut every = tokio::time::interval(config::RETENTION_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        match services.kinesis.expire_records() {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired record segments"),
            Err(err) => tracing::warn!(%err, "cannot delete expired record segments"),
        }
    }
}

/// Accepts TLS connections and serves each with HTTP/1.1 or HTTP/2 as ALPN chose, until `stop`;
/// then waits for open connections to finish their requests.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    stop: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

/// A broker serving in the background. Dropping it leaves the server running until the runtime
/// ends; call [`RunningBroker::shutdown`] to stop it gracefully.
pub struct RunningBroker {
    local_addr: SocketAddr,
    scheme: &'static str,
    certificate_pem: Option<String>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    storage: storage::Storage,
}

impl RunningBroker {
    /// The base URL to give SDK clients as `endpoint_url`, e.g. `http://127.0.0.1:40321`
    /// (`https://` when serving TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// The PEM certificate presented when serving TLS, for clients to trust.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets in-flight requests finish, waits for the server, and
    /// flushes the data directory.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(err) = self.server.await {
            tracing::error!(%err, "broker task ended abnormally");
        }
        self.storage.close();
    }
}
