//! The properties the fuzz targets check, one public function per target.
//!
//! Each function takes libFuzzer's bytes and panics when pipehttp breaks a
//! promise on them: a panic inside the library, or a parse result that does
//! not survive being written out and parsed again. Inputs that are not
//! UTF-8 are skipped: every entry point takes `&str`.
//!
//! This file is compiled twice: into the fuzz crate (`fuzz/src/lib.rs`) and
//! into `crates/pipehttp/tests/it/fuzz_regressions.rs`, which replays the
//! committed corpora and kept crashes through these same functions. It may
//! use only `std` and `pipehttp`.

use pipehttp::Config;
use pipehttp::address::{Endpoint, ListenAddress, PipeName, RequestTarget, Scheme};

/// Listen addresses: `ListenAddress::from_str`, `parse_list` and
/// `PipeName::new`.
///
/// - nothing panics, and every error has a message;
/// - an address that parses is written out (`Display`) in a form that
///   parses back to the same address, and that form is a fixed point;
/// - `Display` and `path()` work on whatever parsed.
pub fn listen_address(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<ListenAddress>() {
        Ok(address) => check_listen_round_trip(text, &address),
        Err(e) => assert!(
            !e.reason().is_empty(),
            "an error without a reason for {text:?}"
        ),
    }
    if let Ok(list) = ListenAddress::parse_list(text) {
        assert!(!list.is_empty(), "parse_list({text:?}) gave an empty list");
        for address in &list {
            check_listen_round_trip(text, address);
        }
    }
    if let Ok(name) = PipeName::new(text) {
        assert_eq!(name.as_str(), text);
        let _ = Endpoint::Pipe(name).to_string();
    }
}

fn check_listen_round_trip(input: &str, address: &ListenAddress) {
    let written = address.to_string();
    let again: ListenAddress = written.parse().unwrap_or_else(|e| {
        panic!("{input:?} parsed to {address:?}, written as {written:?}, which does not parse: {e}")
    });
    assert_eq!(
        &again, address,
        "{input:?} parsed to {address:?} but its written form {written:?} parses to {again:?}"
    );
    assert_eq!(
        again.to_string(),
        written,
        "the written form is not a fixed point"
    );
    let endpoint = address.endpoint();
    let _ = endpoint.to_string();
    match endpoint {
        Endpoint::Tcp { .. } => assert!(endpoint.path().is_none()),
        Endpoint::Pipe(_) | Endpoint::Unix(_) => assert!(endpoint.path().is_some()),
    }
}

/// Request targets: `RequestTarget::from_str`, and `RequestTarget::new`
/// with the input as the path.
///
/// - nothing panics (`uri()` has an `expect` that `new` must make safe);
/// - a target that parses has a path starting with `/`, and is written out
///   in a form that parses back to the same target;
/// - the URI sent on the wire carries the target's path.
pub fn request_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<RequestTarget>() {
        Ok(target) => {
            assert!(
                target.path_and_query().starts_with('/'),
                "{text:?}: path {:?} does not start with '/'",
                target.path_and_query()
            );
            let written = target.to_string();
            let again: RequestTarget = written.parse().unwrap_or_else(|e| {
                panic!("{text:?} parsed to {target:?}, written as {written:?}, which does not parse: {e}")
            });
            assert_eq!(
                again, target,
                "{text:?} parsed to {target:?} but its written form {written:?} parses to {again:?}"
            );
            check_uri(text, &target);
        }
        Err(e) => assert!(
            !e.reason().is_empty(),
            "an error without a reason for {text:?}"
        ),
    }
    let pipe = Endpoint::Pipe(PipeName::new("fuzz").expect("a valid name"));
    if let Ok(target) = RequestTarget::new(Scheme::Http, pipe, text) {
        check_uri(text, &target);
    }
}

fn check_uri(input: &str, target: &RequestTarget) {
    let uri = target.uri();
    let _ = target.host_header();
    let sent = uri.path_and_query().map_or("/", |p| p.as_str());
    let kept = target.path_and_query();
    assert!(
        kept.starts_with(sent) || sent == "/",
        "{input:?}: the wire URI {uri} lost the path {kept:?}"
    );
}

/// The TOML config loader: `Config::from_toml_str`.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_config(text, Config::from_toml_str(text, "fuzz.toml"));
    }
}

/// The JSON (appsettings) config loader: `Config::from_json_str`.
pub fn config_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_config(text, Config::from_json_str(text, "appsettings.json"));
    }
}

/// Whatever loads keeps the loader's promises: endpoints sorted by name,
/// every URL a listen address that round-trips, durations above zero and
/// the minimums the loader enforces; whatever fails says why.
fn check_config(text: &str, result: pipehttp::Result<Config>) {
    let config = match result {
        Ok(config) => config,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error for {text:?}");
            return;
        }
    };
    // Sorted by name without case, as .NET lists sections.
    let names: Vec<String> = config
        .endpoints
        .iter()
        .map(|e| e.name.to_ascii_lowercase())
        .collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "endpoints not sorted by name, or one twice: {names:?}"
    );
    for url in config.urls() {
        check_listen_round_trip(text, &url);
    }
    // Every option is within the bounds the schema declares, and the
    // options agree with each other.
    if let Err(e) = config.options.validate() {
        panic!("{text:?} loaded options that do not validate: {e}");
    }
    let limits = &config.options.limits;
    assert!(!limits.request_headers_timeout.is_zero());
    assert!(!limits.keep_alive_timeout.is_zero());
    assert!(limits.max_request_headers_total_size >= 1);
    assert!(limits.max_concurrent_connections != Some(0));
    let pipes = &config.options.pipes;
    assert!(pipes.max_read_buffer_size >= 1 && pipes.max_write_buffer_size >= 1);
    assert!(pipes.listener_queue_count >= 1);
    if pipes.current_user_only {
        // The allow lists open the socket to one group (0660) or to all
        // and the peer check (0666); nothing else is accepted.
        let widened = !pipes.allow_users.is_empty() || !pipes.allow_groups.is_empty();
        let allowed: &[u32] = if widened { &[0o660, 0o666] } else { &[0o600] };
        assert!(
            pipes.mode.is_none_or(|mode| allowed.contains(&mode)),
            "{:?}",
            pipes.mode
        );
    } else {
        assert!(pipes.allow_users.is_empty() && pipes.allow_groups.is_empty());
    }
    assert!(
        pipes.pipe_sddl.is_none()
            || (pipes.allow_users.is_empty() && pipes.allow_groups.is_empty())
    );
    if let Some(mode) = pipes.mode {
        assert!(mode <= 0o777, "mode {mode:o}");
    }
}
