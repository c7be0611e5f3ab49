//! Label and field selectors with upstream Kubernetes semantics and error
//! messages (k8s.io/apimachinery/pkg/labels and pkg/fields, 1.33): parsing
//! of the `labelSelector=` and `fieldSelector=` query parameters, conversion
//! of metav1.LabelSelector objects, and matching. Pure: no I/O, no panics on
//! any input.

mod errtext;
mod field;
mod json;
mod label;
mod lexer;
mod parser;

pub use field::{escape_value, unescape_value, FieldOp, FieldRequirement, FieldSelector};
pub use label::{LabelSelector, Operator, Requirement};

/// A selector the API server rejects. Display is exactly the message a user
/// sees in the 400 BadRequest (upstream's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string, requirement or metav1.LabelSelector object.
    #[error("{0}")]
    Label(String),
    /// A field selector string.
    #[error("{0}")]
    Field(String),
}

#[cfg(test)]
mod tests;
