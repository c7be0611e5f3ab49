//! Pure Kubernetes concepts with no I/O: the resource registry, selectors, quantities, cron schedules and
//! name validation.

pub mod cron;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod validation;
