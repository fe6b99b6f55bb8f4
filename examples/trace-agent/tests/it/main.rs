//! The trace-agent example's tests, in one binary: the scenario with our
//! own tracer, and the agent against Datadog's own tracers.

mod common;
mod real_tracers;
mod trace_story;
