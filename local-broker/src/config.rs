//! Settings shared by every service of one broker; defaults live here and nowhere else.

use crate::clock::{Clock, SystemClock};
use std::sync::Arc;
use std::time::Duration;

/// Default region used in ARNs.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default account id used in ARNs (the one the AWS docs use in examples).
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            region: DEFAULT_REGION.to_owned(),
            account_id: DEFAULT_ACCOUNT_ID.to_owned(),
            state_transition_delay: Duration::ZERO,
            clock: Arc::new(SystemClock),
        }
    }
}
