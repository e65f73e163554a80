//! Settings shared by every service of one broker; defaults live here and nowhere else.

use crate::clock::{Clock, SystemClock};
use crate::http::sigv4::Credentials;
use crate::storage::SyncMode;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Default region used in ARNs.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default account id used in ARNs (the one the AWS docs use in examples).
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

/// AWS ends every SubscribeToShard stream after five minutes.
pub const DEFAULT_SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(300);

/// How often expired record segments are looked for and deleted (with a data directory).
pub const RETENTION_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// What every service needs to know about the broker it runs in.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Region in ARNs.
    pub region: String,
    /// Twelve-digit account id in ARNs.
    pub account_id: String,
    /// How long a stream or table stays CREATING/UPDATING/DELETING before it settles. AWS takes
    /// seconds; tests want zero.
    pub state_transition_delay: Duration,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// How long one SubscribeToShard call streams before the server ends it (AWS: 5 minutes).
    pub subscription_lifetime: Duration,
    /// Credentials that must sign every request; `None` accepts any signature.
    pub auth: Option<Credentials>,
    /// Enforce per-shard throughput limits (ProvisionedThroughputExceededException) like AWS.
    pub enforce_limits: bool,
    /// Where state is kept across restarts; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// When writes reach the disk (only with a data directory).
    pub sync: SyncMode,
    /// Bytes of recently appended record bodies kept in memory across all shards (only with a
    /// data directory; without one every record is in memory).
    pub cache_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            region: DEFAULT_REGION.to_owned(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            state_transition_delay: Duration::ZERO,
            clock: Arc::new(SystemClock),
            subscription_lifetime: DEFAULT_SUBSCRIPTION_LIFETIME,
            auth: None,
            enforce_limits: false,
            data_dir: None,
            sync: SyncMode::Always,
            cache_bytes: crate::storage::DEFAULT_CACHE_BYTES,
        }
    }
}
