//! Attribute values: the wire form (`{"S": ..}`, `{"N": ..}`, ...), its validation into a typed
//! [`AttributeValue`], equality and ordering as DynamoDB defines them, and item-size accounting.
//!
//! Clients send [`RawValue`]s; nothing deeper in the service sees one. Validation failures are
//! `ValidationException`s with AWS's wording, so a malformed value never reaches storage.

use super::number::Number;
use crate::http::error::{ApiError, ApiResult};
use crate::http::protocol::Blob;
use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

/// An item (or a key, or a map value): attribute name → value.
pub type Item = BTreeMap<String, AttributeValue>;

/// Largest item DynamoDB stores: 400 KB, names and values together.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Deepest nesting of maps and lists DynamoDB accepts.
const MAX_NESTING: usize = 32;

/// A validated attribute value. Sets keep their members in the order the client sent them and
/// never hold duplicates or nothing.
#[derive(Debug, Clone)]
pub enum AttributeValue {
    S(String),
    N(Number),
    B(Bytes),
    Ss(Vec<String>),
    Ns(Vec<Number>),
    Bs(Vec<Bytes>),
    M(Item),
    L(Vec<AttributeValue>),
    Bool(bool),
    Null,
}

/// An attribute value as it arrives: every member optional, checked by [`RawValue::validate`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawValue {
    #[serde(rename = "S")]
    s: Option<String>,
    #[serde(rename = "N")]
    n: Option<String>,
    #[serde(rename = "B")]
    b: Option<Blob>,
    #[serde(rename = "SS")]
    ss: Option<Vec<String>>,
    #[serde(rename = "NS")]
    ns: Option<Vec<String>>,
    #[serde(rename = "BS")]
    bs: Option<Vec<Blob>>,
    #[serde(rename = "M")]
    m: Option<BTreeMap<String, RawValue>>,
    #[serde(rename = "L")]
    l: Option<Vec<RawValue>>,
    #[serde(rename = "NULL")]
    null: Option<bool>,
    #[serde(rename = "BOOL")]
    boolean: Option<bool>,
}

/// A raw item or key as it arrives.
pub type RawItem = BTreeMap<String, RawValue>;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::validation(message)
}

fn parse_number(text: &str) -> ApiResult<Number> {
    Number::parse(text).map_err(|e| invalid(e.to_string()))
}

impl RawValue {
    /// Checks the value the way DynamoDB does and turns it into an [`AttributeValue`].
    pub fn validate(self) -> ApiResult<AttributeValue> {
        self.validate_at(0)
    }

    fn validate_at(self, depth: usize) -> ApiResult<AttributeValue> {
        if depth > MAX_NESTING {
            return Err(invalid("Nesting Levels have exceeded supported limits"));
        }
        let present = [
            self.s.is_some(),
            self.n.is_some(),
            self.b.is_some(),
            self.ss.is_some(),
            self.ns.is_some(),
            self.bs.is_some(),
            self.m.is_some(),
            self.l.is_some(),
            self.null.is_some(),
            self.boolean.is_some(),
        ]
        .into_iter()
        .filter(|p| *p)
        .count();
        if present == 0 {
            return Err(invalid(
                "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
            ));
        }
        if present > 1 {
            return Err(invalid(
                "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
            ));
        }
        if let Some(s) = self.s {
            return Ok(AttributeValue::S(s));
        }
        if let Some(n) = self.n {
            return parse_number(&n).map(AttributeValue::N);
        }
        if let Some(b) = self.b {
            return Ok(AttributeValue::B(b.0));
        }
        if let Some(ss) = self.ss {
            if ss.is_empty() {
                return Err(invalid(
                    "One or more parameter values were invalid: An string set  may not be empty",
                ));
            }
            let mut seen = HashSet::new();
            if ss.iter().any(|s| !seen.insert(s.as_str())) {
                return Err(invalid(format!(
                    "One or more parameter values were invalid: Input collection [{}] contains duplicates.",
                    ss.join(", ")
                )));
            }
            return Ok(AttributeValue::Ss(ss));
        }
        if let Some(ns) = self.ns {
            if ns.is_empty() {
                return Err(invalid(
                    "One or more parameter values were invalid: An number set  may not be empty",
                ));
            }
            let numbers = ns
                .iter()
                .map(|n| parse_number(n))
                .collect::<ApiResult<Vec<_>>>()?;
            let mut seen = HashSet::new();
            if numbers.iter().any(|n| !seen.insert(n)) {
                return Err(invalid("Input collection contains duplicates"));
            }
            return Ok(AttributeValue::Ns(numbers));
        }
        if let Some(bs) = self.bs {
            if bs.is_empty() {
                return Err(invalid(
                    "One or more parameter values were invalid: Binary sets should not be empty",
                ));
            }
            let mut seen = HashSet::new();
            if bs.iter().any(|b| !seen.insert(&b.0)) {
                return Err(invalid(
                    "One or more parameter values were invalid: Input collection of type BS contains duplicates.",
                ));
            }
            return Ok(AttributeValue::Bs(bs.into_iter().map(|b| b.0).collect()));
        }
        if let Some(m) = self.m {
            let map = m
                .into_iter()
                .map(|(k, v)| Ok((k, v.validate_at(depth + 1)?)))
                .collect::<ApiResult<Item>>()?;
            return Ok(AttributeValue::M(map));
        }
        if let Some(l) = self.l {
            let list = l
                .into_iter()
                .map(|v| v.validate_at(depth + 1))
                .collect::<ApiResult<Vec<_>>>()?;
            return Ok(AttributeValue::L(list));
        }
        if let Some(null) = self.null {
            if !null {
                return Err(invalid(
                    "One or more parameter values were invalid: Null attribute value types must have the value of true",
                ));
            }
            return Ok(AttributeValue::Null);
        }
        Ok(AttributeValue::Bool(self.boolean.unwrap_or_default()))
    }
}

/// Validates every value of a raw item.
pub fn validate_item(raw: RawItem) -> ApiResult<Item> {
    raw.into_iter()
        .map(|(name, value)| Ok((name, value.validate()?)))
        .collect()
}

impl AttributeValue {
    /// The wire type tag: `S`, `N`, `B`, `SS`, `NS`, `BS`, `M`, `L`, `BOOL`, `NULL`.
    pub fn type_tag(&self) -> &'static str {
        match self {
            AttributeValue::S(_) => "S",
            AttributeValue::N(_) => "N",
            AttributeValue::B(_) => "B",
            AttributeValue::Ss(_) => "SS",
            AttributeValue::Ns(_) => "NS",
            AttributeValue::Bs(_) => "BS",
            AttributeValue::M(_) => "M",
            AttributeValue::L(_) => "L",
            AttributeValue::Bool(_) => "BOOL",
            AttributeValue::Null => "NULL",
        }
    }

    /// Bytes this value counts for in the 400 KB item limit (the attribute name is extra).
    pub fn size(&self) -> usize {
        match self {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.size(),
            AttributeValue::B(b) => b.len(),
            AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
            AttributeValue::Ns(v) => v.iter().map(Number::size).sum(),
            AttributeValue::Bs(v) => v.iter().map(Bytes::len).sum(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| 1 + k.len() + v.size()).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + v.size()).sum::<usize>(),
            AttributeValue::Bool(_) | AttributeValue::Null => 1,
        }
    }

    /// Ordering for `<`, `<=`, `>`, `>=`, BETWEEN and sort keys: numbers numerically, strings
    /// and binaries by their bytes; `None` when the two are not comparable.
    pub fn compare(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (AttributeValue::S(a), AttributeValue::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (AttributeValue::N(a), AttributeValue::N(b)) => Some(a.cmp(b)),
            (AttributeValue::B(a), AttributeValue::B(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// Equality as DynamoDB's `=` sees it: same type and value; sets compare as sets; maps and
/// lists compare deeply.
impl PartialEq for AttributeValue {
    fn eq(&self, other: &Self) -> bool {
        // Members are unique, so equal lengths plus inclusion is set equality.
        fn same_set<T: Eq + std::hash::Hash>(a: &[T], b: &[T]) -> bool {
            if a.len() != b.len() {
                return false;
            }
            let members: HashSet<&T> = b.iter().collect();
            a.iter().all(|x| members.contains(x))
        }
        match (self, other) {
            (AttributeValue::S(a), AttributeValue::S(b)) => a == b,
            (AttributeValue::N(a), AttributeValue::N(b)) => a == b,
            (AttributeValue::B(a), AttributeValue::B(b)) => a == b,
            (AttributeValue::Ss(a), AttributeValue::Ss(b)) => same_set(a, b),
            (AttributeValue::Ns(a), AttributeValue::Ns(b)) => same_set(a, b),
            (AttributeValue::Bs(a), AttributeValue::Bs(b)) => same_set(a, b),
            (AttributeValue::M(a), AttributeValue::M(b)) => a == b,
            (AttributeValue::L(a), AttributeValue::L(b)) => a == b,
            (AttributeValue::Bool(a), AttributeValue::Bool(b)) => a == b,
            (AttributeValue::Null, AttributeValue::Null) => true,
            _ => false,
        }
    }
}

impl Serialize for AttributeValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            AttributeValue::S(s) => map.serialize_entry("S", s)?,
            AttributeValue::N(n) => map.serialize_entry("N", &n.to_string())?,
            AttributeValue::B(b) => map.serialize_entry("B", &Blob(b.clone()))?,
            AttributeValue::Ss(v) => map.serialize_entry("SS", v)?,
            AttributeValue::Ns(v) => {
                let strings: Vec<String> = v.iter().map(Number::to_string).collect();
                map.serialize_entry("NS", &strings)?
            }
            AttributeValue::Bs(v) => {
                let blobs: Vec<Blob> = v.iter().cloned().map(Blob).collect();
                map.serialize_entry("BS", &blobs)?
            }
            AttributeValue::M(m) => map.serialize_entry("M", m)?,
            AttributeValue::L(l) => map.serialize_entry("L", l)?,
            AttributeValue::Bool(b) => map.serialize_entry("BOOL", b)?,
            AttributeValue::Null => map.serialize_entry("NULL", &true)?,
        }
        map.end()
    }
}

/// Bytes an item counts for against the 400 KB limit: names plus values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + v.size()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawValue {
        serde_json::from_str(json).unwrap()
    }

    fn message(json: &str) -> String {
        raw(json).validate().unwrap_err().message
    }

    #[test]
    fn a_value_needs_exactly_one_type() {
        assert!(message("{}").contains("Supplied AttributeValue is empty"));
        assert!(message(r#"{"S":"a","N":"1"}"#).contains("more than one datatypes"));
    }

    #[test]
    fn empty_and_duplicate_sets_are_invalid() {
        assert!(message(r#"{"SS":[]}"#).contains("may not be empty"));
        assert!(message(r#"{"NS":[]}"#).contains("may not be empty"));
        assert!(message(r#"{"BS":[]}"#).contains("should not be empty"));
        assert!(message(r#"{"SS":["a","a"]}"#).contains("contains duplicates"));
        assert!(message(r#"{"NS":["1","1.0"]}"#).contains("contains duplicates"));
        assert!(message(r#"{"NULL":false}"#).contains("must have the value of true"));
    }

    #[test]
    fn numbers_are_normalised_on_the_way_out() {
        let value = raw(r#"{"M":{"a":{"N":"1.50"},"b":{"NS":["0010","-0"]}}}"#)
            .validate()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            r#"{"M":{"a":{"N":"1.5"},"b":{"NS":["10","0"]}}}"#
        );
    }

    #[test]
    fn sets_compare_without_order() {
        let a = raw(r#"{"SS":["x","y"]}"#).validate().unwrap();
        let b = raw(r#"{"SS":["y","x"]}"#).validate().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn nesting_deeper_than_32_levels_is_refused() {
        let json = format!(
            "{}{{\"S\":\"x\"}}{}",
            "{\"L\":[".repeat(40),
            "]}".repeat(40)
        );
        assert!(message(&json).contains("Nesting Levels"));
    }
}
