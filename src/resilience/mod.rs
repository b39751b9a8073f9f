//! Protection against failing or overloaded dependencies: circuit breakers
//! (per upstream, and Redis), upstream rate limits with priorities, and the
//! retry budget. `upstream::Client` composes them into the outbound stack.

pub mod breaker;
pub mod budget;
pub mod ratelimit;

pub use breaker::Breaker;
pub use budget::Budget;
pub use ratelimit::Limiter;
