//! Applies an [`Update`] to an item.
//!
//! Every `SET` right-hand side is computed from the item as it was before the update, as on AWS,
//! so `SET a = b, b = a` swaps. `REMOVE`s of list elements run last and from the highest index
//! down, so `REMOVE l[0], l[1]` removes the two elements the client meant.

use super::ast::{Path, PathElement, SetOperand, SetValue, Update, UpdateAction};
use super::eval::resolve;
use crate::dynamodb::number::NumberError;
use crate::dynamodb::value::{AttributeValue, Item};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::hash::Hash;

/// Why an update cannot be applied to this item. The caller picks the wording: expression and
/// legacy (`AttributeUpdates`) requests describe a type mismatch differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The parent of a path is missing or is not a map/list as the path says.
    #[error("The document path provided in the update expression is invalid for update")]
    InvalidPath,
    /// An operand has the wrong type for `+`, `-`, `list_append`, `ADD` or `DELETE`.
    #[error("An operand in the update expression has an incorrect data type")]
    OperandType,
    /// A `SET` operand names an attribute the item does not have.
    #[error("The provided expression refers to an attribute that does not exist in the item")]
    MissingAttribute,
    /// Arithmetic left DynamoDB's number range or precision.
    #[error(transparent)]
    Number(#[from] NumberError),
}

/// Applies `update` to `item` in place; on error the item may be partly updated, so callers
/// work on a copy.
pub fn apply(update: &Update, item: &mut Item) -> Result<(), UpdateError> {
    let original = item.clone();
    let mut removals: Vec<&Path> = Vec::new();
    for action in &update.actions {
        match action {
            UpdateAction::Set(path, value) => {
                let value = set_value(&original, value)?;
                set_at(item, path, value)?;
            }
            UpdateAction::Add(path, value) => {
                let new = match (resolve(item, path), value) {
                    (None, value) => value.clone(),
                    (Some(AttributeValue::N(a)), AttributeValue::N(b)) => {
                        AttributeValue::N(a.checked_add(b)?)
                    }
                    (Some(existing), value) => {
                        union(existing, value).ok_or(UpdateError::OperandType)?
                    }
                };
                set_at(item, path, new)?;
            }
            UpdateAction::Delete(path, value) => match resolve(item, path) {
                None => {}
                Some(existing) => match difference(existing, value) {
                    Some(Some(remaining)) => set_at(item, path, remaining)?,
                    Some(None) => remove_at(item, path)?,
                    None => return Err(UpdateError::OperandType),
                },
            },
            UpdateAction::Remove(path) => removals.push(path),
        }
    }
    removals.sort_by(|a, b| compare_paths(b, a));
    for path in removals {
        remove_at(item, path)?;
    }
    Ok(())
}

fn compare_paths(a: &Path, b: &Path) -> Ordering {
    for (x, y) in a.0.iter().zip(&b.0) {
        let ordering = match (x, y) {
            (PathElement::Attribute(x), PathElement::Attribute(y)) => x.cmp(y),
            (PathElement::Index(x), PathElement::Index(y)) => x.cmp(y),
            (PathElement::Attribute(_), PathElement::Index(_)) => Ordering::Less,
            (PathElement::Index(_), PathElement::Attribute(_)) => Ordering::Greater,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.0.len().cmp(&b.0.len())
}

fn set_value(item: &Item, value: &SetValue) -> Result<AttributeValue, UpdateError> {
    match value {
        SetValue::Operand(operand) => set_operand(item, operand),
        SetValue::Plus(a, b) | SetValue::Minus(a, b) => {
            let (AttributeValue::N(a), AttributeValue::N(b)) =
                (set_operand(item, a)?, set_operand(item, b)?)
            else {
                return Err(UpdateError::OperandType);
            };
            let result = if matches!(value, SetValue::Plus(..)) {
                a.checked_add(&b)?
            } else {
                a.checked_sub(&b)?
            };
            Ok(AttributeValue::N(result))
        }
    }
}

fn set_operand(item: &Item, operand: &SetOperand) -> Result<AttributeValue, UpdateError> {
    match operand {
        SetOperand::Path(path) => resolve(item, path)
            .cloned()
            .ok_or(UpdateError::MissingAttribute),
        SetOperand::Value(value) => Ok(value.clone()),
        SetOperand::IfNotExists(path, default) => match resolve(item, path) {
            Some(value) => Ok(value.clone()),
            None => set_operand(item, default),
        },
        SetOperand::ListAppend(a, b) => {
            let (AttributeValue::L(mut a), AttributeValue::L(b)) =
                (set_operand(item, a)?, set_operand(item, b)?)
            else {
                return Err(UpdateError::OperandType);
            };
            a.extend(b);
            Ok(AttributeValue::L(a))
        }
    }
}

/// Set union keeping existing members first; `None` when the types differ.
fn union(existing: &AttributeValue, added: &AttributeValue) -> Option<AttributeValue> {
    fn merge<T: Clone + Eq + Hash>(a: &[T], b: &[T]) -> Vec<T> {
        let present: HashSet<&T> = a.iter().collect();
        let mut out = a.to_vec();
        out.extend(b.iter().filter(|x| !present.contains(x)).cloned());
        out
    }
    match (existing, added) {
        (AttributeValue::Ss(a), AttributeValue::Ss(b)) => Some(AttributeValue::Ss(merge(a, b))),
        (AttributeValue::Ns(a), AttributeValue::Ns(b)) => Some(AttributeValue::Ns(merge(a, b))),
        (AttributeValue::Bs(a), AttributeValue::Bs(b)) => Some(AttributeValue::Bs(merge(a, b))),
        _ => None,
    }
}

/// Set difference: `Some(Some(rest))`, `Some(None)` when nothing is left, `None` when the types
/// differ.
fn difference(
    existing: &AttributeValue,
    removed: &AttributeValue,
) -> Option<Option<AttributeValue>> {
    fn minus<T: Clone + Eq + Hash>(a: &[T], b: &[T]) -> Vec<T> {
        let removed: HashSet<&T> = b.iter().collect();
        a.iter().filter(|x| !removed.contains(x)).cloned().collect()
    }
    let rest = match (existing, removed) {
        (AttributeValue::Ss(a), AttributeValue::Ss(b)) => {
            let rest = minus(a, b);
            (!rest.is_empty()).then_some(AttributeValue::Ss(rest))
        }
        (AttributeValue::Ns(a), AttributeValue::Ns(b)) => {
            let rest = minus(a, b);
            (!rest.is_empty()).then_some(AttributeValue::Ns(rest))
        }
        (AttributeValue::Bs(a), AttributeValue::Bs(b)) => {
            let rest = minus(a, b);
            (!rest.is_empty()).then_some(AttributeValue::Bs(rest))
        }
        _ => return None,
    };
    Some(rest)
}

fn resolve_mut<'a>(item: &'a mut Item, elements: &[PathElement]) -> Option<&'a mut AttributeValue> {
    let (first, rest) = elements.split_first()?;
    let PathElement::Attribute(name) = first else {
        return None;
    };
    let mut current = item.get_mut(name)?;
    for element in rest {
        current = match (element, current) {
            (PathElement::Attribute(name), AttributeValue::M(map)) => map.get_mut(name)?,
            (PathElement::Index(index), AttributeValue::L(list)) => list.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Writes `value` at `path`. The parent must exist; a list index past the end appends.
fn set_at(item: &mut Item, path: &Path, value: AttributeValue) -> Result<(), UpdateError> {
    let Some((last, parents)) = path.0.split_last() else {
        return Err(UpdateError::InvalidPath);
    };
    if parents.is_empty() {
        let PathElement::Attribute(name) = last else {
            return Err(UpdateError::InvalidPath);
        };
        item.insert(name.clone(), value);
        return Ok(());
    }
    match (last, resolve_mut(item, parents)) {
        (PathElement::Attribute(name), Some(AttributeValue::M(map))) => {
            map.insert(name.clone(), value);
            Ok(())
        }
        (PathElement::Index(index), Some(AttributeValue::L(list))) => {
            match list.get_mut(*index) {
                Some(slot) => *slot = value,
                None => list.push(value),
            }
            Ok(())
        }
        _ => Err(UpdateError::InvalidPath),
    }
}

/// Removes whatever is at `path`; removing something absent is fine, a missing parent is not.
fn remove_at(item: &mut Item, path: &Path) -> Result<(), UpdateError> {
    let Some((last, parents)) = path.0.split_last() else {
        return Err(UpdateError::InvalidPath);
    };
    if parents.is_empty() {
        if let PathElement::Attribute(name) = last {
            item.remove(name);
        }
        return Ok(());
    }
    match (last, resolve_mut(item, parents)) {
        (PathElement::Attribute(name), Some(AttributeValue::M(map))) => {
            map.remove(name);
            Ok(())
        }
        (PathElement::Index(index), Some(AttributeValue::L(list))) => {
            if *index < list.len() {
                list.remove(*index);
            }
            Ok(())
        }
        _ => Err(UpdateError::InvalidPath),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::expression::{Placeholders, parser};
    use crate::dynamodb::value::{RawValue, validate_item};
    use std::collections::BTreeMap;

    fn item(json: &str) -> Item {
        let raw: BTreeMap<String, RawValue> = serde_json::from_str(json).unwrap();
        validate_item(raw).unwrap()
    }

    fn run(source: &str, values: &str, target: &str) -> Result<String, UpdateError> {
        let mut placeholders = Placeholders::new(None, Some(item(values)));
        let update = parser::parse_update(source, &mut placeholders).unwrap();
        let mut target = item(target);
        apply(&update, &mut target)?;
        Ok(serde_json::to_string(&target).unwrap())
    }

    #[test]
    fn arithmetic_and_if_not_exists() {
        assert_eq!(
            run(
                "SET c = if_not_exists(c, :zero) + :one",
                r#"{":zero":{"N":"0"},":one":{"N":"1"}}"#,
                "{}"
            )
            .unwrap(),
            r#"{"c":{"N":"1"}}"#
        );
        assert_eq!(
            run(
                "SET c = c - :x",
                r#"{":x":{"N":"0.5"}}"#,
                r#"{"c":{"N":"2"}}"#
            )
            .unwrap(),
            r#"{"c":{"N":"1.5"}}"#
        );
        assert_eq!(
            run("SET c = nothere + :x", r#"{":x":{"N":"1"}}"#, "{}").unwrap_err(),
            UpdateError::MissingAttribute
        );
        assert_eq!(
            run(
                "SET c = s + :x",
                r#"{":x":{"N":"1"}}"#,
                r#"{"s":{"S":"a"}}"#
            )
            .unwrap_err(),
            UpdateError::OperandType
        );
    }

    #[test]
    fn set_right_hand_sides_see_the_original_item() {
        assert_eq!(
            run("SET a = b, b = a", "{}", r#"{"a":{"N":"1"},"b":{"N":"2"}}"#).unwrap(),
            r#"{"a":{"N":"2"},"b":{"N":"1"}}"#
        );
    }

    #[test]
    fn add_and_delete_work_on_numbers_and_sets() {
        let values = r#"{":n":{"N":"5"},":s":{"SS":["b","c"]}}"#;
        assert_eq!(
            run(
                "ADD n :n, s :s",
                values,
                r#"{"n":{"N":"1"},"s":{"SS":["a","b"]}}"#
            )
            .unwrap(),
            r#"{"n":{"N":"6"},"s":{"SS":["a","b","c"]}}"#
        );
        assert_eq!(
            run("DELETE s :s", values, r#"{"s":{"SS":["b"]}}"#).unwrap(),
            "{}"
        );
        assert_eq!(
            run("ADD s :n", values, r#"{"s":{"SS":["b"]}}"#).unwrap_err(),
            UpdateError::OperandType
        );
    }

    #[test]
    fn nested_paths_and_list_removal_use_original_indexes() {
        let values = r#"{":v":{"S":"new"},":l":{"L":[{"N":"9"}]}}"#;
        let target = r#"{"m":{"M":{"l":{"L":[{"N":"0"},{"N":"1"},{"N":"2"},{"N":"3"}]}}}}"#;
        assert_eq!(
            run("REMOVE m.l[0], m.l[2] SET m.x = :v", values, target).unwrap(),
            r#"{"m":{"M":{"l":{"L":[{"N":"1"},{"N":"3"}]},"x":{"S":"new"}}}}"#
        );
        assert_eq!(
            run("SET m.l[10] = :v", values, target).unwrap(),
            r#"{"m":{"M":{"l":{"L":[{"N":"0"},{"N":"1"},{"N":"2"},{"N":"3"},{"S":"new"}]}}}}"#
        );
        assert_eq!(
            run(
                "SET m.l = list_append(:l, m.l)",
                values,
                r#"{"m":{"M":{"l":{"L":[]}}}}"#
            )
            .unwrap(),
            r#"{"m":{"M":{"l":{"L":[{"N":"9"}]}}}}"#
        );
        assert_eq!(
            run("SET nope.x = :v", values, target).unwrap_err(),
            UpdateError::InvalidPath
        );
    }
}
