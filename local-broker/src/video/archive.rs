//! ListFragments: stored fragments by producer or server time, page by page.

use super::api::{self, invalid_argument, millis_to_seconds, seconds_to_millis};
use super::fragments::{Fragment, FragmentStore};
use crate::http::error::ApiResult;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which timestamp a selector compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampKind {
    #[serde(rename = "PRODUCER_TIMESTAMP")]
    Producer,
    #[serde(rename = "SERVER_TIMESTAMP")]
    Server,
}

impl TimestampKind {
    /// Parses a `FragmentSelectorType` (`None` defaults to `default`).
    pub fn parse(text: Option<&str>, default: Option<Self>) -> ApiResult<Self> {
        match (text, default) {
            (Some("PRODUCER_TIMESTAMP"), _) => Ok(Self::Producer),
            (Some("SERVER_TIMESTAMP"), _) => Ok(Self::Server),
            (None, Some(default)) => Ok(default),
            (other, _) => Err(invalid_argument(format!(
                "FragmentSelectorType {} is not PRODUCER_TIMESTAMP or SERVER_TIMESTAMP.",
                other.unwrap_or("null")
            ))),
        }
    }

    /// The fragment's start time of this kind, epoch milliseconds.
    pub fn of(self, fragment: &Fragment) -> i64 {
        match self {
            Self::Producer => fragment.producer_millis,
            Self::Server => fragment.server_millis,
        }
    }
}

/// A resolved fragment selector: fragments whose start is within `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    pub kind: TimestampKind,
    pub start: i64,
    pub end: i64,
}

impl Selection {
    /// Reads a `FragmentSelector` whose range is required.
    pub fn from_selector(
        selector: Option<&api::FragmentSelector>,
        member: &str,
    ) -> ApiResult<Self> {
        let selector =
            selector.ok_or_else(|| invalid_argument(format!("{member} must be specified.")))?;
        let kind = TimestampKind::parse(selector.fragment_selector_type.as_deref(), None)?;
        let range = selector
            .timestamp_range
            .as_ref()
            .ok_or_else(|| invalid_argument("TimestampRange must be specified."))?;
        match (range.start_timestamp, range.end_timestamp) {
            (Some(start), Some(end)) if start <= end => Ok(Self {
                kind,
                start: seconds_to_millis(start),
                end: seconds_to_millis(end),
            }),
            (Some(_), Some(_)) => Err(invalid_argument(
                "StartTimestamp must not be after EndTimestamp.",
            )),
            _ => Err(invalid_argument(
                "TimestampRange needs StartTimestamp and EndTimestamp.",
            )),
        }
    }

    /// Whether the fragment starts within the range.
    pub fn contains(&self, fragment: &Fragment) -> bool {
        (self.start..=self.end).contains(&self.kind.of(fragment))
    }

    /// The selected fragments, in fragment-number order.
    pub fn fragments(&self, store: &FragmentStore) -> Vec<std::sync::Arc<Fragment>> {
        store
            .all()
            .into_iter()
            .filter(|f| self.contains(f))
            .collect()
    }
}

/// What a NextToken carries: the query and where the previous page stopped.
#[derive(Serialize, Deserialize)]
struct Token {
    selection: Selection,
    after: u64,
}

/// One fragment as ListFragments describes it.
pub fn describe(fragment: &Fragment) -> Value {
    json!({
        "FragmentNumber": fragment.number(),
        "FragmentSizeInBytes": fragment.size_bytes,
        "ProducerTimestamp": millis_to_seconds(fragment.producer_millis),
        "ServerTimestamp": millis_to_seconds(fragment.server_millis),
        "FragmentLengthInMilliseconds": fragment.duration_millis,
    })
}

/// ListFragments over one stream's fragments.
pub fn list_fragments(store: &FragmentStore, input: &api::ListFragmentsInput) -> ApiResult<Value> {
    let limit = input.max_results.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid_argument("MaxResults must be between 1 and 1000."));
    }
    let (selection, after) = match &input.next_token {
        Some(token) => {
            let token: Token = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or_else(|| invalid_argument("NextToken is not valid."))?;
            (token.selection, token.after)
        }
        None => (
            Selection::from_selector(input.fragment_selector.as_ref(), "FragmentSelector")?,
            0,
        ),
    };
    let mut matching = store
        .after(after)
        .into_iter()
        .filter(|f| selection.contains(f));
    let page: Vec<_> = matching.by_ref().take(limit as usize).collect();
    let mut out = json!({ "Fragments": page.iter().map(|f| describe(f)).collect::<Vec<_>>() });
    if let (Some(last), Some(_)) = (page.last(), matching.next()) {
        let token = Token {
            selection,
            after: last.sequence,
        };
        let encoded = serde_json::to_vec(&token).map(|bytes| URL_SAFE_NO_PAD.encode(bytes));
        if let Ok(encoded) = encoded {
            out["NextToken"] = encoded.into();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::ingest::tests::video_with_stream;
    use crate::video::ingest::{Session, TimecodeType};
    use crate::video::mkv::tests::MkvBuilder;

    #[test]
    fn pages_cover_the_range_exactly_once() {
        let (video, stream) = video_with_stream(1);
        let mut session = Session::new(video, stream.clone(), TimecodeType::Absolute, 0);
        let mut body = MkvBuilder::new(&[1]);
        for second in 1..=5 {
            body = body.cluster(second * 1000, &[(1, 0), (1, 500)]);
        }
        session.push(&body.bytes);
        session.finish();
        let mut input: api::ListFragmentsInput = api::parse(
            br#"{"MaxResults":2,"FragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":2,"EndTimestamp":4}}}"#,
        )
        .expect("input");
        let mut seen = Vec::new();
        loop {
            let page = list_fragments(&stream.fragments, &input).expect("page");
            for fragment in page["Fragments"].as_array().expect("list") {
                seen.push(fragment["ProducerTimestamp"].as_f64().expect("time"));
                assert_eq!(fragment["FragmentLengthInMilliseconds"], 1000);
            }
            match page.get("NextToken").and_then(Value::as_str) {
                Some(token) => {
                    input.next_token = Some(token.to_owned());
                    input.fragment_selector = None;
                }
                None => break,
            }
        }
        assert_eq!(seen, [2.0, 3.0, 4.0]);
    }
}
