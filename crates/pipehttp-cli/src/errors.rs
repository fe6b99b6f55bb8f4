//! Errors as the command line reports them: the library's one-line message
//! with its causes, and the remedy worded in this tool's flags rather than
//! the library's API.

use pipehttp::{Error, Remedy};

/// `err` on one line, for `pipehttp: …` on stderr.
pub fn describe(err: &Error) -> String {
    match err.remedy() {
        Some(remedy) => format!("{:#}: {}", err.without_remedy(), in_flag_terms(remedy)),
        None if err.is_builder() => options_in_flag_terms(&format!("{err:#}")),
        None => format!("{err:#}"),
    }
}

/// A server builder's complaint about its options (`ServerBuilder::mode
/// 0666 needs current_user_only = false`) in the words of the flags that
/// set them (`--mode 0666 needs --current-user-only false`).
fn options_in_flag_terms(text: &str) -> String {
    let Some(text) = text.strip_prefix("ServerBuilder::") else {
        return text.to_owned();
    };
    let mut text = text.to_owned();
    for info in pipehttp::options::OPTIONS {
        let flag = format!("--{}", info.flag());
        text = replace_word(&text, info.name, &flag)
            .replace(&format!("{flag} = "), &format!("{flag} "));
    }
    text
}

/// `text` with `word` replaced where it stands as a whole identifier.
fn replace_word(text: &str, word: &str, by: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(word);
        } else {
            out.push_str(by);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
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
