//! Protection against failing dependencies: circuit breakers (upstreams and
//! Redis), and the rate limits and retry budget of the outbound stack.

pub mod breaker;

pub use breaker::Breaker;
