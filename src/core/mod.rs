//! Pure Kubernetes concepts with no I/O: the resource registry, selectors and name validation.

pub mod registry;
pub mod selector;
pub mod validation;
