//! Pure decisions for a `RedisCluster`. No I/O, no clock, no client: every function takes what
//! was observed and returns what should be. The operator (and the drill's simulation) feed it and
//! carry out the result.
//!
//! - [`plan`](mod@plan): where promotion, demotion and each pod's topology are decided.
//! - [`events`]: the Events recorded on the way, with their typed reasons.
//! - [`conditions`]: condition bookkeeping (`lastTransitionTime` only moves on a status flip).
//! - [`risk`]: what a promotion would lose while the link to the source is down.
//! - [`validate`]: checks the apiserver cannot do (referenced Secrets exist and have a password).

pub mod conditions;
pub mod events;
pub mod history;
pub mod plan;
pub mod risk;
pub mod switchover;
pub mod validate;

pub use events::{EventReason, EventType, PlannedEvent};
pub use plan::{Environment, Extra, FailoverFrom, FormerSource, Plan, PodView, plan, plan_with};
