//! The parsed form of condition, update and projection expressions, with every placeholder
//! already resolved: a path holds real attribute names, an operand holds real values.
//!
//! The legacy parameters (`Expected`, `AttributeUpdates`, `ScanFilter`, ...) are translated into
//! these same trees, so there is one evaluator for both dialects.

use crate::dynamodb::value::AttributeValue;
use std::fmt;

/// One step of a document path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathElement {
    Attribute(String),
    Index(usize),
}

/// A document path such as `a.b[0].c`; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(pub Vec<PathElement>);

impl Path {
    /// A path naming one top-level attribute.
    pub fn attribute(name: impl Into<String>) -> Self {
        Path(vec![PathElement::Attribute(name.into())])
    }

    /// The top-level attribute this path starts at.
    pub fn head(&self) -> &str {
        match self.0.first() {
            Some(PathElement::Attribute(name)) => name,
            _ => "",
        }
    }

    /// True for a single top-level attribute.
    pub fn is_top_level(&self) -> bool {
        self.0.len() == 1
    }
}

/// AWS's spelling in error messages: `[a, b, [0]]`.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, element) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match element {
                PathElement::Attribute(name) => f.write_str(name)?,
                PathElement::Index(index) => write!(f, "[{index}]")?,
            }
        }
        f.write_str("]")
    }
}

/// Something a condition compares: an attribute, a literal, or `size(path)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    Value(AttributeValue),
    Size(Path),
}

/// `=`, `<>`, `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparator {
    /// The comparator with its operands swapped (`:v < a` is `a > :v`).
    pub fn flipped(self) -> Self {
        match self {
            Comparator::Lt => Comparator::Gt,
            Comparator::Le => Comparator::Ge,
            Comparator::Gt => Comparator::Lt,
            Comparator::Ge => Comparator::Le,
            other => other,
        }
    }
}

/// A boolean expression over one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Operand, Comparator, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    AttributeExists(Path),
    AttributeNotExists(Path),
    AttributeType(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

/// The right-hand side of `SET path = ...`.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Operand(SetOperand),
    Plus(SetOperand, SetOperand),
    Minus(SetOperand, SetOperand),
}

/// An operand of a `SET` value.
#[derive(Debug, Clone, PartialEq)]
pub enum SetOperand {
    Path(Path),
    Value(AttributeValue),
    IfNotExists(Path, Box<SetOperand>),
    ListAppend(Box<SetOperand>, Box<SetOperand>),
}

/// One action of an update.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateAction {
    Set(Path, SetValue),
    Remove(Path),
    Add(Path, AttributeValue),
    Delete(Path, AttributeValue),
}

impl UpdateAction {
    /// The path the action writes.
    pub fn path(&self) -> &Path {
        match self {
            UpdateAction::Set(path, _)
            | UpdateAction::Remove(path)
            | UpdateAction::Add(path, _)
            | UpdateAction::Delete(path, _) => path,
        }
    }
}

/// A whole update: its actions in the order written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    pub actions: Vec<UpdateAction>,
}

impl Update {
    /// Whether the update only takes attributes away (`REMOVE` and `DELETE`). DynamoDB does not
    /// create a missing item for such an update: there is nothing to put in it.
    pub fn only_removes(&self) -> bool {
        !self.actions.is_empty()
            && self
                .actions
                .iter()
                .all(|a| matches!(a, UpdateAction::Remove(_) | UpdateAction::Delete(..)))
    }
}
