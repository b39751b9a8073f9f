//! Protection against failing or overloaded dependencies, and against
//! greedy clients: circuit breakers (per upstream, and Redis), upstream
//! rate limits with priorities, the retry budget, and per-client inbound
//! limits. `upstream::Client` composes the outbound ones into its stack;
//! the public listener applies the inbound ones.

pub mod address_limit;
pub mod breaker;
pub mod budget;
pub mod client_limit;
pub mod ratelimit;
pub mod window;

pub use breaker::Breaker;
pub use budget::Budget;
pub use ratelimit::Limiter;
