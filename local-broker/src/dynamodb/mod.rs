//! The DynamoDB slice that KCL lease tables need (AWS JSON 1.0, `DynamoDB_20120810.*`).

use crate::config::BrokerConfig;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Wire;
use bytes::Bytes;

/// The DynamoDB service state.
pub struct DynamoDb {
    #[allow(dead_code)]
    config: BrokerConfig,
}

impl DynamoDb {
    /// An empty service.
    pub fn new(config: BrokerConfig) -> Self {
        Self { config }
    }

    /// Runs one operation.
    pub fn dispatch(&self, operation: &str, _wire: &Wire) -> ApiResult<Bytes> {
        Err(ApiError::unknown_operation(operation))
    }
}
