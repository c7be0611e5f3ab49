//! Pure Kubernetes concepts with no I/O: the resource registry, selectors, quantities and name validation.

pub mod quantity;
pub mod registry;
pub mod selector;
pub mod validation;
