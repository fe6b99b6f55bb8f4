//! The parts of the `pipehttp` command that other programs of this
//! workspace reuse: the sample app that `pipehttp serve` runs, which the
//! benchmarks and the examples serve too. The library crate, `pipehttp`,
//! is what applications use.

pub mod sample;
