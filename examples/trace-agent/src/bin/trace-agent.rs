//! `trace-agent`: the agent on `http://pipe:/trace-agent` (`--pipe NAME`),
//! journaling every batch before it answers 200.

fn main() -> std::process::ExitCode {
    pipehttp_trace_example::agent::main()
}
