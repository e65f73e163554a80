//! Evaluates conditions against an item, and projects items onto document paths.
//!
//! A missing attribute is simply absent: comparisons with it are false (`<>` is true, as on
//! AWS), functions on it are false, `size` of it has no value.

use super::ast::{Comparator, Condition, Operand, Path, PathElement};
use crate::dynamodb::number::Number;
use crate::dynamodb::value::{AttributeValue, Item};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The value at `path` in `item`, if there is one.
pub fn resolve<'a>(item: &'a Item, path: &Path) -> Option<&'a AttributeValue> {
    let mut elements = path.0.iter();
    let mut current = match elements.next()? {
        PathElement::Attribute(name) => item.get(name)?,
        PathElement::Index(_) => return None,
    };
    for element in elements {
        current = match (element, current) {
            (PathElement::Attribute(name), AttributeValue::M(map)) => map.get(name)?,
            (PathElement::Index(index), AttributeValue::L(list)) => list.get(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// `size(value)`: bytes of a string or binary, members of a set, map or list.
fn size_of(value: &AttributeValue) -> Option<usize> {
    match value {
        AttributeValue::S(s) => Some(s.len()),
        AttributeValue::B(b) => Some(b.len()),
        AttributeValue::Ss(v) => Some(v.len()),
        AttributeValue::Ns(v) => Some(v.len()),
        AttributeValue::Bs(v) => Some(v.len()),
        AttributeValue::M(m) => Some(m.len()),
        AttributeValue::L(l) => Some(l.len()),
        AttributeValue::N(_) | AttributeValue::Bool(_) | AttributeValue::Null => None,
    }
}

fn operand<'a>(item: &'a Item, operand: &'a Operand) -> Option<Cow<'a, AttributeValue>> {
    match operand {
        Operand::Path(path) => resolve(item, path).map(Cow::Borrowed),
        Operand::Value(value) => Some(Cow::Borrowed(value)),
        Operand::Size(path) => {
            let size = size_of(resolve(item, path)?)?;
            Some(Cow::Owned(AttributeValue::N(Number::from(size as u64))))
        }
    }
}

fn compare(
    left: Option<&AttributeValue>,
    comparator: Comparator,
    right: Option<&AttributeValue>,
) -> bool {
    match comparator {
        Comparator::Eq => matches!((left, right), (Some(a), Some(b)) if a == b),
        Comparator::Ne => match (left, right) {
            (Some(a), Some(b)) => a != b,
            (None, None) => false,
            _ => true,
        },
        _ => {
            let (Some(a), Some(b)) = (left, right) else {
                return false;
            };
            let Some(ordering) = a.compare(b) else {
                return false;
            };
            match comparator {
                Comparator::Lt => ordering == Ordering::Less,
                Comparator::Le => ordering != Ordering::Greater,
                Comparator::Gt => ordering == Ordering::Greater,
                Comparator::Ge => ordering != Ordering::Less,
                Comparator::Eq | Comparator::Ne => false,
            }
        }
    }
}

fn begins_with(value: &AttributeValue, prefix: &AttributeValue) -> bool {
    match (value, prefix) {
        (AttributeValue::S(s), AttributeValue::S(p)) => s.starts_with(p.as_str()),
        (AttributeValue::B(b), AttributeValue::B(p)) => b.starts_with(p),
        _ => false,
    }
}

fn contains(haystack: &AttributeValue, needle: &AttributeValue) -> bool {
    match (haystack, needle) {
        (AttributeValue::S(s), AttributeValue::S(n)) => s.contains(n.as_str()),
        (AttributeValue::B(b), AttributeValue::B(n)) => {
            n.is_empty() || b.windows(n.len()).any(|w| w == n.as_ref())
        }
        (AttributeValue::Ss(set), AttributeValue::S(n)) => set.contains(n),
        (AttributeValue::Ns(set), AttributeValue::N(n)) => set.contains(n),
        (AttributeValue::Bs(set), AttributeValue::B(n)) => set.contains(n),
        (AttributeValue::L(list), needle) => list.contains(needle),
        _ => false,
    }
}

/// True when `item` satisfies `condition`. A missing item is an empty one.
pub fn evaluate(condition: &Condition, item: &Item) -> bool {
    match condition {
        Condition::Compare(left, comparator, right) => compare(
            operand(item, left).as_deref(),
            *comparator,
            operand(item, right).as_deref(),
        ),
        Condition::Between(value, low, high) => {
            let (Some(value), Some(low), Some(high)) = (
                operand(item, value),
                operand(item, low),
                operand(item, high),
            ) else {
                return false;
            };
            value.compare(&low).is_some_and(|o| o != Ordering::Less)
                && value.compare(&high).is_some_and(|o| o != Ordering::Greater)
        }
        Condition::In(value, options) => {
            let Some(value) = operand(item, value) else {
                return false;
            };
            options
                .iter()
                .any(|option| operand(item, option).is_some_and(|o| *o == *value))
        }
        Condition::AttributeExists(path) => resolve(item, path).is_some(),
        Condition::AttributeNotExists(path) => resolve(item, path).is_none(),
        Condition::AttributeType(path, type_name) => {
            match (resolve(item, path), operand(item, type_name).as_deref()) {
                (Some(value), Some(AttributeValue::S(name))) => value.type_tag() == name,
                _ => false,
            }
        }
        Condition::BeginsWith(value, prefix) => match (operand(item, value), operand(item, prefix))
        {
            (Some(value), Some(prefix)) => begins_with(&value, &prefix),
            _ => false,
        },
        Condition::Contains(haystack, needle) => {
            match (operand(item, haystack), operand(item, needle)) {
                (Some(haystack), Some(needle)) => contains(&haystack, &needle),
                _ => false,
            }
        }
        Condition::And(a, b) => evaluate(a, item) && evaluate(b, item),
        Condition::Or(a, b) => evaluate(a, item) || evaluate(b, item),
        Condition::Not(inner) => !evaluate(inner, item),
    }
}

/// The parts of `item` named by `paths`, keeping their nesting. List elements picked by index
/// are packed together in index order, as DynamoDB returns them.
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut root: BTreeMap<String, Projected> = BTreeMap::new();
    for path in paths {
        let Some((PathElement::Attribute(head), rest)) = path.0.split_first() else {
            continue;
        };
        let Some(source) = item.get(head) else {
            continue;
        };
        let slot = root.entry(head.clone()).or_insert(Projected::Empty);
        slot.insert(source, rest);
    }
    root.into_iter()
        .filter_map(|(name, projected)| Some((name, projected.into_value()?)))
        .collect()
}

/// A projection under construction: the parts of one value that some path selected.
enum Projected {
    Empty,
    Whole(AttributeValue),
    Map(BTreeMap<String, Projected>),
    List(BTreeMap<usize, Projected>),
}

impl Projected {
    fn insert(&mut self, source: &AttributeValue, rest: &[PathElement]) {
        let Some((first, tail)) = rest.split_first() else {
            *self = Projected::Whole(source.clone());
            return;
        };
        match (first, source) {
            (PathElement::Attribute(name), AttributeValue::M(map)) => {
                let Some(child) = map.get(name) else {
                    return;
                };
                if matches!(self, Projected::Empty) {
                    *self = Projected::Map(BTreeMap::new());
                }
                if let Projected::Map(parts) = self {
                    parts
                        .entry(name.clone())
                        .or_insert(Projected::Empty)
                        .insert(child, tail);
                }
            }
            (PathElement::Index(index), AttributeValue::L(list)) => {
                let Some(child) = list.get(*index) else {
                    return;
                };
                if matches!(self, Projected::Empty) {
                    *self = Projected::List(BTreeMap::new());
                }
                if let Projected::List(parts) = self {
                    parts
                        .entry(*index)
                        .or_insert(Projected::Empty)
                        .insert(child, tail);
                }
            }
            _ => {}
        }
    }

    fn into_value(self) -> Option<AttributeValue> {
        match self {
            Projected::Empty => None,
            Projected::Whole(value) => Some(value),
            Projected::Map(parts) => Some(AttributeValue::M(
                parts
                    .into_iter()
                    .filter_map(|(name, part)| Some((name, part.into_value()?)))
                    .collect(),
            )),
            Projected::List(parts) => Some(AttributeValue::L(
                parts
                    .into_values()
                    .filter_map(Projected::into_value)
                    .collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::expression::{Placeholders, parser};
    use crate::dynamodb::value::RawValue;

    fn item(json: &str) -> Item {
        let raw: BTreeMap<String, RawValue> = serde_json::from_str(json).unwrap();
        crate::dynamodb::value::validate_item(raw).unwrap()
    }

    fn check(source: &str, values: &str, target: &Item) -> bool {
        let values = item(values);
        let mut placeholders = Placeholders::new(None, Some(values));
        let condition = parser::parse_condition(source, &mut placeholders).unwrap();
        evaluate(&condition, target)
    }

    #[test]
    fn comparisons_follow_dynamodb_types() {
        let target = item(r#"{"n":{"N":"10"},"s":{"S":"abc"},"l":{"L":[{"S":"x"},{"N":"2"}]}}"#);
        assert!(check("n > :v", r#"{":v":{"N":"9.5"}}"#, &target));
        assert!(!check("n > :v", r#"{":v":{"S":"9"}}"#, &target));
        assert!(check("s < :v", r#"{":v":{"S":"abd"}}"#, &target));
        assert!(check("nothere <> :v", r#"{":v":{"N":"1"}}"#, &target));
        assert!(!check("nothere = :v", r#"{":v":{"N":"1"}}"#, &target));
        assert!(check(
            "n BETWEEN :a AND :b",
            r#"{":a":{"N":"10"},":b":{"N":"11"}}"#,
            &target
        ));
        assert!(check(
            "n IN (:a, :b)",
            r#"{":a":{"S":"10"},":b":{"N":"10.0"}}"#,
            &target
        ));
        assert!(check("l[1] = :v", r#"{":v":{"N":"2"}}"#, &target));
    }

    #[test]
    fn functions_evaluate() {
        let target = item(
            r#"{"s":{"S":"abc"},"ss":{"SS":["a","b"]},"l":{"L":[{"S":"x"}]},"m":{"M":{"k":{"BOOL":true}}}}"#,
        );
        assert!(check("begins_with(s, :p)", r#"{":p":{"S":"ab"}}"#, &target));
        assert!(check("contains(s, :p)", r#"{":p":{"S":"bc"}}"#, &target));
        assert!(check("contains(ss, :p)", r#"{":p":{"S":"b"}}"#, &target));
        assert!(check("contains(l, :p)", r#"{":p":{"S":"x"}}"#, &target));
        assert!(check(
            "size(ss) = :two AND size(s) = :three",
            r#"{":two":{"N":"2"},":three":{"N":"3"}}"#,
            &target
        ));
        assert!(check(
            "attribute_type(m.k, :t)",
            r#"{":t":{"S":"BOOL"}}"#,
            &target
        ));
        assert!(check(
            "attribute_exists(m.k) AND attribute_not_exists(m.z)",
            "{}",
            &target
        ));
    }

    #[test]
    fn projection_keeps_nesting_and_packs_list_elements() {
        let target = item(
            r#"{"a":{"M":{"b":{"S":"x"},"c":{"S":"y"}}},"l":{"L":[{"S":"0"},{"S":"1"},{"S":"2"}]},"z":{"N":"1"}}"#,
        );
        let paths = vec![
            Path(vec![
                PathElement::Attribute("a".into()),
                PathElement::Attribute("c".into()),
            ]),
            Path(vec![
                PathElement::Attribute("l".into()),
                PathElement::Index(2),
            ]),
            Path(vec![
                PathElement::Attribute("l".into()),
                PathElement::Index(0),
            ]),
            Path::attribute("missing"),
        ];
        let projected = project(&target, &paths);
        assert_eq!(
            serde_json::to_string(&projected).unwrap(),
            r#"{"a":{"M":{"c":{"S":"y"}}},"l":{"L":[{"S":"0"},{"S":"2"}]}}"#
        );
    }
}
