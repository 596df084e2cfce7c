//! Pure decisions for a `RedisCluster`. No I/O, no clock, no client: every function takes what
//! was observed and returns what should be. The operator (and the drill's simulation) feed it and
//! carry out the result.
//!
//! - [`plan`]: where promotion, demotion and each pod's topology are decided.
//! - [`conditions`]: condition bookkeeping (`lastTransitionTime` only moves on a status flip).
//! - [`validate`]: checks the apiserver cannot do (referenced Secrets exist and have a password).

pub mod conditions;
pub mod plan;
pub mod validate;

pub use plan::{Environment, EventType, Plan, PlannedEvent, PodView, plan};
