//! `trace-demo`: tracer processes send spans while the agent is SIGKILLed
//! and restarted on the same pipe name; ends with
//! `sent=N acknowledged=N received=N lost=0 duplicates=D`.
//!
//! From the workspace root: `cargo run --release --example trace-demo`.

fn main() -> std::process::ExitCode {
    pipehttp_trace_example::demo::main()
}
