//! The bench suite's integration tests, in one binary: the recording and
//! report programs run as `scripts/bench.sh` runs them.

mod record_report;
