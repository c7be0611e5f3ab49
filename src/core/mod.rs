//! Pure Kubernetes concepts with no I/O: the resource registry, selectors, quantities, cron schedules,
//! name validation and host:port text.

pub mod cron;
pub mod net;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod validation;
