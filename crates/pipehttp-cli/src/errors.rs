//! Errors as the command line reports them: the library's one-line message
//! with its causes, and the remedy worded in this tool's flags rather than
//! the library's API.

use pipehttp::{Error, Remedy};

/// `err` on one line, for `pipehttp: …` on stderr.
pub fn describe(err: &Error) -> String {
    match err.remedy() {
        Some(remedy) => format!("{:#}: {}", err.without_remedy(), in_flag_terms(remedy)),
        None => format!("{err:#}"),
    }
}

fn in_flag_terms(remedy: Remedy) -> String {
    match remedy {
        Remedy::TakeOver => "stop it, take it over with --takeover, or choose another name".into(),
        Remedy::GiveCertificate => {
            "give it one with --cert and --key, or a Certificate in the config file".into()
        }
        Remedy::TrustServerCa => {
            "trust its CA with --cacert FILE, or use -k (--insecure) for development".into()
        }
        Remedy::RaiseConnectTimeout => "retry later, or raise --connect-timeout".into(),
        Remedy::RaiseTimeout => "retry, or raise --max-time".into(),
        Remedy::AllowServerUser => {
            "if that user is trusted, allow it with --allow-server-user USER".into()
        }
        // A remedy newer than this tool: the library's words still help.
        other => other.to_string(),
    }
}
