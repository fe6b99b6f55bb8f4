//! `tracer`: an app that creates spans and sends them to the agent in
//! batches, through a bounded retry queue; prints what it sent, what was
//! acknowledged and what it dropped.

fn main() -> std::process::ExitCode {
    pipehttp_trace_example::tracer::main()
}
