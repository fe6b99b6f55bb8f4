//! One run: each URL's transfer, with curl's redirects, retries, output
//! and exit codes.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use pipehttp::ListenAddress;
use pipehttp::address::{Endpoint, Scheme};
use pipehttp::client::Body;
use url::Url;

use super::decode::Decoder;
use super::glob::{Expanded, Glob};
use super::output::{HeaderDump, Output, Progress, Uploading};
use super::wire::{self, Log, Tap};
use super::writeout::{self, Info};
use super::{Options, Target};
use crate::exit::{self, Failure};
use crate::spec::{self, Kind};

/// Runs every URL's transfer in turn; the exit code is the last one's.
pub async fn run_all(mut options: Options, urls: Vec<String>) -> ExitCode {
    let mut dump = match HeaderDump::open(options.args.dump_header.as_ref()) {
        Ok(dump) => dump,
        Err(f) => return options.report(&f),
    };
    let mut code = 0;
    'urls: for (index, input) in urls.iter().enumerate() {
        let expanded: Vec<Expanded> = if options.args.globoff {
            vec![Expanded::plain(input)]
        } else {
            match Glob::parse(input) {
                Ok(glob) => glob.expand().collect(),
                Err(e) => {
                    // curl stops at a URL it cannot glob.
                    code = exit::URL_MALFORMAT;
                    options.report(&Failure::new(code, e.message));
                    break 'urls;
                }
            }
        };
        for one in &expanded {
            code = options.transfer_with_retries(index, one, &mut dump).await;
            if code != 0 && options.args.fail_early {
                break 'urls;
            }
        }
    }
    if let (Some(path), Some(jar)) = (&options.args.cookie_jar, &options.jar) {
        let text = jar.netscape();
        let written = if path == "-" {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())
        } else {
            std::fs::write(path, text)
        };
        if let Err(e) = written {
            options.report(&Failure::new(
                exit::WRITE_ERROR,
                format!("cannot write the cookie jar {path}: {e}"),
            ));
        }
    }
    ExitCode::from(code)
}

/// One request's upload, for %{size_upload}.
pub(crate) enum Upload {
    /// HTTP/1: what the connection wrote past the request head (a count).
    Counted(Arc<Mutex<Log>>, u64),
    /// HTTP/2: the body's length.
    Known(u64),
}

impl Upload {
    fn bytes(&self) -> u64 {
        match self {
            Upload::Counted(log, head) => log
                .lock()
                .expect("tap log")
                .written_total
                .saturating_sub(*head),
            Upload::Known(n) => *n,
        }
    }
}

/// What one attempt left behind for the retry decision.
#[derive(Default)]
struct Attempt {
    retry_after: Option<Duration>,
}

impl Options {
    fn report(&self, failure: &Failure) -> ExitCode {
        if self.show_errors {
            failure.report()
        } else {
            ExitCode::from(failure.code)
        }
    }

    /// The file the body of URL number `index` goes to, if not stdout
    /// (`#N` in an -o name is the Nth glob's value), and whether -O named
    /// it (so that -J may name it again).
    fn output_path(
        &self,
        index: usize,
        globbed: &Expanded,
        url: &Url,
    ) -> Result<(Option<std::path::PathBuf>, bool), Failure> {
        let args = &self.args;
        let explicit = args
            .output
            .get(index)
            .map(|p| std::path::PathBuf::from(globbed.fill(&p.to_string_lossy())));
        let remote = explicit.is_none()
            && (args.remote_name_all
                || usize::from(args.remote_name) > index.saturating_sub(args.output.len()));
        let path = if let Some(path) = explicit {
            Some(path)
        } else if remote {
            // The path's last segment as it is in the URL, not decoded
            // (src/tool_operhlp.c), and after a backslash if it has one.
            let name = url.path().rsplit('/').next().unwrap_or_default();
            let name = name.rsplit('\\').next().unwrap_or_default().to_owned();
            if name.is_empty() {
                return Err(Failure::new(
                    exit::WRITE_ERROR,
                    "Remote file name has no length!",
                ));
            }
            Some(std::path::PathBuf::from(name))
        } else {
            None
        };
        let path = match (path, &args.output_dir) {
            (Some(p), Some(dir)) if p.is_relative() && p.as_os_str() != "-" => Some(dir.join(p)),
            (Some(p), _) if p.as_os_str() == "-" => None,
            (p, _) => p,
        };
        Ok((path, remote))
    }

    async fn transfer_with_retries(
        &mut self,
        index: usize,
        globbed: &Expanded,
        dump: &mut HeaderDump,
    ) -> u8 {
        let input = globbed.url.as_str();
        let started = Instant::now();
        let mut info = self.fresh_info(index, input);
        let (target, url) = match self.target(input) {
            Ok(t) => t,
            Err(f) => return self.finish(f.code, Some(f), &mut info),
        };
        let (path, remote) = match self.output_path(index, globbed, &url) {
            Ok(p) => p,
            Err(f) => return self.finish(f.code, Some(f), &mut info),
        };
        if let Some(file) = self.args.etag_save.as_deref().filter(|f| *f != "-") {
            // curl makes the file, empty, before the transfer.
            if let Err(e) = std::fs::File::create(file) {
                let f = Failure::new(
                    exit::WRITE_ERROR,
                    format!("Failed creating file for saving etags: \"{file}\": {e}"),
                );
                return self.finish(f.code, Some(f), &mut info);
            }
        }
        let mut out = Output::new(path, self.args.create_dirs, self.args.no_clobber);
        out.header_named = remote && self.args.remote_header_name;
        self.resume_from = match self.args.continue_at.as_deref() {
            None => 0,
            Some("-") => out.existing_len(),
            Some(offset) => match offset.parse() {
                Ok(n) => n,
                Err(_) => {
                    let f =
                        Failure::usage(format!("-C takes a byte offset or '-', not '{offset}'"));
                    return self.finish(f.code, Some(f), &mut info);
                }
            },
        };
        if self.resume_from > 0 {
            out.append();
        }
        let mut retries_left = self.args.retry;
        let fixed_delay = self
            .args
            .retry_delay
            .filter(|d| *d > 0.0)
            .map(Duration::from_secs_f64);
        let mut backoff = Duration::from_secs(1);
        let max_retry_time = self
            .args
            .retry_max_time
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64);
        loop {
            info = self.fresh_info(index, input);
            let mut attempt = Attempt::default();
            let started_attempt = Instant::now();
            let max_time = self.max_time;
            let work = self.transfer(
                &target,
                url.clone(),
                &mut out,
                dump,
                &mut info,
                &mut attempt,
            );
            let result = match max_time {
                Some(max) => match tokio::time::timeout(max, work).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::new(
                        exit::OPERATION_TIMEDOUT,
                        format!(
                            "Operation timed out after {} milliseconds with {} bytes received",
                            max.as_millis(),
                            info.size_download
                        ),
                    )),
                },
                None => work.await,
            };
            info.time_total = started_attempt.elapsed();
            info.size_upload = std::mem::take(&mut *self.uploads.lock().expect("upload list"))
                .iter()
                .map(Upload::bytes)
                .sum();
            let code = result.as_ref().err().map_or(0, |f| f.code);
            let refused = result.as_ref().err().is_some_and(|f| f.refused);

            if retries_left > 0
                && let Some(why) = self.transient(code, refused, info.http_code, &target)
            {
                let pause = attempt.retry_after.or(fixed_delay).unwrap_or(backoff);
                // curl (src/tool_operate.c) retries while less than
                // --retry-max-time has passed; a Retry-After must also fit.
                let in_time = max_retry_time.is_none_or(|max| {
                    started.elapsed() < max
                        && attempt.retry_after.is_none_or(|after| {
                            Duration::from_secs(started.elapsed().as_secs()) + after <= max
                        })
                });
                if in_time {
                    if !self.args.silent {
                        eprintln!(
                            "Warning: Problem {why}. Will retry in {} seconds. {} retries left.",
                            pause.as_secs(),
                            retries_left
                        );
                    }
                    retries_left -= 1;
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_secs(600));
                    out.rewind();
                    continue;
                }
            }
            if code == 0
                && let Err(f) = out.finish()
            {
                return self.finish(f.code, Some(f), &mut info);
            }
            info.filename_effective = out.name();
            if code == 0 && self.args.remote_time {
                // -R: the file's time is the response's Last-Modified.
                let modified = info
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("last-modified"))
                    .and_then(|(_, v)| httpdate::parse_http_date(v).ok());
                if let Some(time) = modified {
                    out.set_modified(time);
                }
            }
            if code != 0 && self.args.remove_on_error {
                out.remove();
            }
            return self.finish(code, result.err(), &mut info);
        }
    }

    /// What -w knows before a transfer: the URL as given and its number;
    /// curl's version is 0 until a response comes.
    fn fresh_info(&self, index: usize, input: &str) -> Info {
        Info {
            url: input.to_owned(),
            urlnum: index,
            // Until the URL parses, curl shows it as given.
            url_effective: input.to_owned(),
            method: self.spec.method(),
            http_version: "0",
            ..Info::default()
        }
    }

    /// curl's reason to retry, if `code`/`status` is transient.
    fn transient(
        &self,
        code: u8,
        refused: bool,
        status: u16,
        target: &Target,
    ) -> Option<&'static str> {
        if self.args.retry_all_errors && code != 0 {
            return Some("(retrying all errors)");
        }
        match code {
            exit::OPERATION_TIMEDOUT => Some(": timeout"),
            // A pipe client already waited for the server: that wait ran out.
            exit::COULDNT_CONNECT if target.waits_for_server() => Some(": timeout"),
            exit::COULDNT_CONNECT if self.args.retry_connrefused && refused => {
                Some(": connection refused")
            }
            0 | exit::HTTP_RETURNED_ERROR
                if matches!(status, 408 | 429 | 500 | 502 | 503 | 504) =>
            {
                Some(": HTTP error")
            }
            _ => None,
        }
    }

    /// Reports the end of a transfer: the error message, then -w.
    fn finish(&self, code: u8, failure: Option<Failure>, info: &mut Info) -> u8 {
        info.exitcode = code;
        if let Some(f) = &failure {
            info.errormsg = Some(f.message.clone());
            self.report(f);
        }
        if let Some(format) = &self.write_out {
            writeout::write(format, info);
        }
        code
    }

    /// One attempt: the request, any redirects, and the body.
    async fn transfer(
        &mut self,
        target: &Target,
        mut url: Url,
        out: &mut Output,
        dump: &mut HeaderDump,
        info: &mut Info,
        attempt: &mut Attempt,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let mut kind = self.spec.kind;
        let mut referer = self.spec.referer.clone();
        if let (spec::Body::File(path, _), true) = (&self.spec.body, url.path().ends_with('/')) {
            // curl's -T to a directory URL uploads under the file's name.
            if let Some(name) = path.file_name() {
                let joined = format!("{}{}", url.path(), name.to_string_lossy());
                url.set_path(&joined);
            }
        }
        let first = url.clone();
        let mut query_added = false;
        loop {
            if let (Some(query), false) = (&self.spec.query, query_added) {
                // -G: the data goes in the query, after what the URL has
                // (and an '&' unless it ends with one). curl's URL parser
                // writes the added part's percent-escapes in lowercase.
                let query = lowercase_escapes(query);
                let joined = match url.query() {
                    Some(q) if !q.is_empty() && !q.ends_with('&') => format!("{q}&{query}"),
                    Some(q) => format!("{q}{query}"),
                    None => query,
                };
                if joined.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    info.url_effective =
                        format!("{}?{joined}", url.as_str().split('?').next().unwrap_or(""));
                    return Err(Failure::new(
                        exit::URL_MALFORMAT,
                        "the -G data makes a malformed URL: percent-encode spaces",
                    ));
                }
                url.set_query(Some(&joined));
                query_added = true;
            }
            info.url_effective = target.display(&url);
            let other_host = !same_origin(&first, &url);
            let method = match &self.spec.custom_method {
                Some(m) => m.clone(),
                None => match kind {
                    Kind::Get => "GET".into(),
                    Kind::Head => "HEAD".into(),
                    Kind::Post | Kind::PostForm => "POST".into(),
                    Kind::Put => "PUT".into(),
                },
            };
            info.method.clone_from(&method);
            info.referer.clone_from(&referer);
            let hop_started = Instant::now();
            let mut exchange = self
                .exchange(
                    target,
                    &url,
                    &method,
                    kind,
                    referer.as_deref(),
                    other_host,
                    info,
                )
                .await?;
            let status = exchange.status;
            info.http_code = status.as_u16();
            info.time_starttransfer = started.elapsed();
            attempt.retry_after = exchange
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);

            let include = self.args.include || kind == Kind::Head;
            if let Some(file) = &self.args.etag_save {
                save_etags(file, &exchange.heads)?;
            }
            for head in &exchange.heads {
                info.size_header += head.len() as u64;
                // curl hands each header line to -D, then to the output:
                // with `-D - -i` the two copies interleave line by line.
                for line in head.split_inclusive(|b| *b == b'\n') {
                    dump.write(line)?;
                    if include {
                        out.write(line)?;
                    }
                    // curl checks --max-filesize as it reads Content-Length,
                    // the head written so far.
                    if let Some(max) = self.args.max_filesize
                        && content_length(line).is_some_and(|length| length > max)
                    {
                        return Err(Failure::new(
                            exit::FILESIZE_EXCEEDED,
                            "Maximum file size exceeded",
                        ));
                    }
                }
            }
            info.num_headers = exchange.headers.len();
            info.content_type = exchange.header("content-type").map(str::to_owned);
            info.headers.clone_from(&exchange.headers);
            if let Some(jar) = &mut self.jar {
                for (name, value) in &exchange.headers {
                    if name.eq_ignore_ascii_case("set-cookie") {
                        jar.receive(&url, value.as_bytes());
                    }
                }
            }

            let location = if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                // An empty Location is no redirect, for curl.
                exchange
                    .header("location")
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            } else {
                None
            };
            if let Some(location) = location {
                let next = url.join(&curl_encoded(&location)).map_err(|e| {
                    Failure::new(
                        exit::URL_MALFORMAT,
                        format!("the redirect to '{location}' is malformed: {e}"),
                    )
                })?;
                if !self.args.location {
                    info.redirect_url = Some(target.display(&next));
                } else {
                    let max = self.args.max_redirs;
                    if max >= 0 && i64::from(info.num_redirects) >= max {
                        return Err(Failure::new(
                            exit::TOO_MANY_REDIRECTS,
                            format!("Maximum ({max}) redirects followed"),
                        ));
                    }
                    if next.scheme() != "http" && next.scheme() != "https" {
                        return Err(Failure::new(
                            exit::UNSUPPORTED_PROTOCOL,
                            format!("Protocol \"{}\" not supported", next.scheme()),
                        ));
                    }
                    exchange.drain().await;
                    kind = self.kind_after(status.as_u16(), kind);
                    if kind == self.spec.kind && matches!(self.spec.body, spec::Body::Stdin) {
                        // The body goes again, and stdin cannot be read twice.
                        return Err(Failure::new(
                            exit::SEND_FAIL_REWIND,
                            "necessary data rewind wasn't possible",
                        ));
                    }
                    if self.spec.auto_referer {
                        let mut from = url.clone();
                        let _ = from.set_username("");
                        let _ = from.set_password(None);
                        from.set_fragment(None);
                        referer = Some(from.to_string());
                    }
                    url = next;
                    info.num_redirects += 1;
                    info.time_redirect += hop_started.elapsed();
                    continue;
                }
            }

            if out.header_named
                && let Some(name) = exchange
                    .header("content-disposition")
                    .and_then(content_disposition_filename)
            {
                let path = match &self.args.output_dir {
                    Some(dir) => dir.join(name),
                    None => std::path::PathBuf::from(name),
                };
                out.rename(path);
            }
            let fail = self.args.fail || self.args.fail_with_body;
            if self.args.fail && status.as_u16() >= 400 {
                exchange.drain().await;
                return Err(Failure::new(
                    exit::HTTP_RETURNED_ERROR,
                    format!("The requested URL returned error: {}", status.as_u16()),
                ));
            }
            if self.resume_from > 0 && kind == Kind::Get {
                // -C as curl does it (lib/http.c): a 416 is taken as done,
                // an answer from the offset is added, the whole file is
                // fine only if that is exactly what we have.
                let offset = exchange.header("content-range").and_then(|v| {
                    let digits: String = v
                        .trim_start_matches(|c: char| !c.is_ascii_digit())
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    digits.parse::<u64>().ok()
                });
                if status.as_u16() == 416 {
                    exchange.drain().await;
                    return Ok(());
                }
                if offset != Some(self.resume_from) {
                    let length = exchange
                        .header("content-length")
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if length == Some(self.resume_from) {
                        return Ok(());
                    }
                    return Err(Failure::new(
                        exit::RANGE_ERROR,
                        "HTTP server doesn't seem to support byte ranges. Cannot resume.",
                    ));
                }
            }
            if let Some((at, older)) = self.time_cond_at
                && self.spec.range.is_none()
                && self.resume_from == 0
                && exchange.body.is_some()
                && let Some(modified) = exchange
                    .header("last-modified")
                    .and_then(|v| httpdate::parse_http_date(v).ok())
            {
                // A server that ignored -z's condition: curl checks it
                // itself, drops the body and reports 304 (lib/http.c).
                let met = if older { modified < at } else { modified > at };
                if !met {
                    info.http_code = 304;
                    return Ok(());
                }
            }
            if let Some((announced, sender)) = exchange.head_wait.take() {
                // HTTP/1: until the server closes the connection (or -m
                // ends it). HTTP/2: the stream is over.
                if sender.is_some() {
                    let _ = (&mut exchange.task).await;
                }
                return Err(Failure::new(
                    exit::PARTIAL_FILE,
                    format!("transfer closed with {announced} bytes remaining to read"),
                ));
            }
            self.body(&mut exchange, out, info).await?;
            if fail && status.as_u16() >= 400 {
                return Err(Failure::new(
                    exit::HTTP_RETURNED_ERROR,
                    format!("The requested URL returned error: {}", status.as_u16()),
                ));
            }
            return Ok(());
        }
    }

    /// curl's method rules after a redirect (lib/http.c): 301 and 302 turn
    /// a POST into a GET, 303 turns anything but GET and HEAD into one,
    /// unless --post301/302/303 says to keep it; 307 and 308 keep all.
    fn kind_after(&self, status: u16, kind: Kind) -> Kind {
        let post = matches!(kind, Kind::Post | Kind::PostForm);
        let keep = match status {
            301 => !post || self.args.post301,
            302 => !post || self.args.post302,
            303 => matches!(kind, Kind::Get | Kind::Head) || (post && self.args.post303),
            _ => true,
        };
        if keep { kind } else { Kind::Get }
    }

    /// The response body to the output, decoded with --compressed.
    async fn body(
        &self,
        exchange: &mut Exchange,
        out: &mut Output,
        info: &mut Info,
    ) -> Result<(), Failure> {
        if exchange.body.is_none() {
            // No body (HEAD, 204, 304): no encoding to understand either.
            return Ok(());
        }
        let mut decoder = match (self.spec.compressed, exchange.header("content-encoding")) {
            (true, Some(enc)) => {
                Some(Decoder::new(enc).map_err(|e| Failure::new(exit::BAD_CONTENT_ENCODING, e))?)
            }
            _ => None,
        };
        let length = exchange
            .header("content-length")
            .and_then(|v| v.trim().parse().ok());
        let Some(body) = exchange.body.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut progress = Progress::new(self.show_progress && out.name().is_some(), length);
        let bad = |e: std::io::Error| {
            Failure::new(
                exit::BAD_CONTENT_ENCODING,
                format!("Error while processing content unencoding: {e}"),
            )
        };
        loop {
            let frame = match body.frame().await {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    progress.finish();
                    return Err(body_failure(&e, length, info.size_download));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            info.size_download += data.len() as u64;
            progress.advance(data.len());
            if let Some(rate) = self.limit_rate {
                // --limit-rate: wait until the bytes so far fit the rate.
                let due = Duration::from_secs_f64(info.size_download as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            match &mut decoder {
                Some(d) => {
                    let plain = d.write(&data).map_err(bad)?;
                    out.write(&plain)?;
                }
                None => out.write(&data)?,
            }
        }
        progress.finish();
        if let Some(d) = decoder {
            let tail = d.finish().map_err(bad)?;
            out.write(&tail)?;
        }
        Ok(())
    }

    /// Connects, sends one request and reads the response head.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        target: &Target,
        url: &Url,
        method: &str,
        kind: Kind,
        referer: Option<&str>,
        other_host: bool,
        info: &mut Info,
    ) -> Result<Exchange, Failure> {
        let args = &self.args;
        let verbose = args.verbose;
        let started = Instant::now();
        let endpoint = target.endpoint(url)?;
        let https = url.scheme() == "https";
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let mut connector = self
            .client
            .connector(&ListenAddress::new(scheme, endpoint.clone()))?
            .wait_for_server(target.waits_for_server());
        if https
            && !target.target_form
            && let Some(host) = url.host_str()
        {
            // Over a socket the certificate is checked for the URL's
            // host, as curl does, not for the socket.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            connector = connector.tls_server_name(host)?;
        }
        let host = url.host_str().unwrap_or("localhost").to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let place = match &endpoint {
            Endpoint::Pipe(_) | Endpoint::Unix(_) => endpoint
                .path()
                .map(|p| p.to_string_lossy().replace('\0', "@"))
                .unwrap_or_default(),
            Endpoint::Tcp { .. } => String::new(),
        };
        if verbose {
            match &endpoint {
                Endpoint::Tcp { .. } => eprintln!("*   Trying {host}:{port}..."),
                _ => eprintln!("*   Trying {place}:0..."),
            }
        }
        let uri: http::Uri = format!("{}://{}/", url.scheme(), host_header(url))
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("http://localhost/"));
        let stream = tower_service::Service::call(&mut connector, uri).await?;
        info.num_connects += 1;
        // curl knows the scheme once connected, the version once answered.
        info.scheme = url.scheme().to_ascii_uppercase();
        info.time_namelookup = Duration::ZERO;
        info.time_connect = started.elapsed();
        let peer = stream.peer();
        match peer.addr {
            Some(addr) => {
                info.remote_ip = addr.ip().to_string();
                info.remote_port = addr.port();
            }
            None => {
                info.remote_ip.clone_from(&place);
                info.remote_port = port;
            }
        }
        if verbose {
            let shown = if place.is_empty() {
                info.remote_ip.clone()
            } else {
                place.clone()
            };
            eprintln!("* Connected to {host} ({shown}) port {port} (#0)");
        }
        let tls = stream.tls_info();
        if let Some(tls) = &tls {
            info.time_appconnect = started.elapsed();
            if verbose {
                eprintln!(
                    "* SSL connection using {} / {}",
                    tls_version_name(&tls.version),
                    tls.cipher_suite
                );
                match &tls.alpn {
                    Some(p) => eprintln!("* ALPN: server accepted {}", String::from_utf8_lossy(p)),
                    None => eprintln!("* ALPN: server did not agree on a protocol. Uses default."),
                }
            }
        }
        info.time_pretransfer = started.elapsed();
        let h2 = match &tls {
            Some(tls) => tls.alpn.as_deref() == Some(b"h2"),
            None => args.http2_prior_knowledge,
        };

        // The request.
        let cookie = self.cookie_header(url);
        let url_user = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or(""))
            )
        });
        let mut headers = self.spec.headers(
            &host_header(url),
            referer,
            cookie.as_deref(),
            url_user.as_deref(),
        );
        if kind != self.spec.kind && kind == Kind::Get {
            // A redirect turned the request into a GET: no body, and none of
            // the body's headers.
            headers.retain(|(n, _)| {
                !["content-length", "content-type", "transfer-encoding"]
                    .iter()
                    .any(|h| n.eq_ignore_ascii_case(h))
                    || self.spec.user_sets(n)
            });
        }
        let sends_body = kind == self.spec.kind;
        if sends_body
            && !h2
            && !args.http1_0
            && self.spec.expects_continue()
            && !self.spec.user_sets("expect")
        {
            // As curl: the server may answer `100 Continue` first, which
            // -i, -D and %{size_header} show. The body follows at once.
            headers.push(("Expect".into(), "100-continue".into()));
        }
        if let Some((name, value)) = &self.time_cond
            && !self.spec.user_sets(name)
        {
            headers.push((name.clone(), value.clone()));
        }
        if self.resume_from > 0
            && kind == Kind::Get
            && self.spec.range.is_none()
            && !self.spec.user_sets("range")
        {
            headers.push(("Range".into(), format!("bytes={}-", self.resume_from)));
        }
        if other_host && !args.location_trusted {
            // Credentials stay with the host they were given for.
            headers.retain(|(n, _)| {
                !n.eq_ignore_ascii_case("authorization") && !n.eq_ignore_ascii_case("cookie")
                    || cookie.is_some()
                        && n.eq_ignore_ascii_case("cookie")
                        && !self.spec.user_sets("cookie")
            });
        }
        let body = if sends_body {
            self.request_body().await?
        } else {
            Body::empty()
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Failure::usage(format!("'{method}' is not an HTTP method")))?;
        let mut path = match (&target.raw_path, info.num_redirects) {
            // --path-as-is: the first URL's path as typed, dots and all.
            (Some(raw), 0) => raw.clone(),
            _ => url.path().to_owned(),
        };
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        if let Some(request_target) = &args.request_target {
            path.clone_from(request_target);
        }
        let mut map = HeaderMap::new();
        let mut authority = host_header(url);
        for (name, value) in &headers {
            if h2 && name.eq_ignore_ascii_case("host") {
                authority.clone_from(value);
                continue;
            }
            if h2
                && [
                    "connection",
                    "transfer-encoding",
                    "keep-alive",
                    "upgrade",
                    "proxy-connection",
                ]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
            {
                continue;
            }
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Failure::usage(format!("'{name}' is not a valid header name")))?;
            // HTTP/2 forbids spaces at the ends of a value (RFC 9113, 8.2.1).
            let value = if h2 { value.trim_end() } else { value };
            let value = HeaderValue::from_str(value).map_err(|_| {
                Failure::usage(format!("the value of the header {name} is not valid"))
            })?;
            map.append(name, value);
        }
        let request_uri: http::Uri = if h2 {
            format!("{}://{authority}{path}", url.scheme())
        } else {
            path.clone()
        }
        .parse()
        .map_err(|e| Failure::new(exit::URL_MALFORMAT, format!("cannot send {path}: {e}")))?;
        let mut request = http::Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = request_uri;
        *request.headers_mut() = map;
        *request.version_mut() = if h2 {
            Version::HTTP_2
        } else if args.http1_0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };

        let (tap, log) = Tap::new(stream);
        let mut http1_sender = None;
        let (response, task) = if h2 {
            let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(tap)
                .await
                .map_err(|e| send_failure(&e, &log))?;
            // The connection must run for the request to be sent.
            let task = drive(conn);
            (sender.send_request(request).await, task)
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
                .title_case_headers(true)
                .handshake(tap)
                .await
                .map_err(|e| send_failure(&e, &log))?;
            // The connection must run for the request to be sent.
            let task = drive(conn);
            let response = sender.send_request(request).await;
            http1_sender = Some(sender);
            (response, task)
        };
        let written = log.lock().expect("tap log").written.clone();
        let request_head = if h2 {
            render_request(&method, &path, &headers, &authority)
        } else {
            wire::request_head(&written).to_vec()
        };
        if verbose {
            for line in String::from_utf8_lossy(&request_head)
                .split("\r\n")
                .filter(|l| !l.is_empty())
            {
                eprintln!("> {line}");
            }
            eprintln!(">");
        }
        let response = response.map_err(|e| {
            if h2 {
                h2_send_failure(&e, &log)
            } else {
                send_failure(&e, &log)
            }
        })?;
        {
            let head = request_head.len() as u64;
            let body = log
                .lock()
                .expect("tap log")
                .written_total
                .saturating_sub(head);
            // curl counts a small -d body into the request (it goes out
            // with the head), not a streamed one (-T, -F, or past 64 KiB).
            let inline = sends_body
                && !h2
                && self.spec.kind == Kind::Post
                && matches!(self.spec.body, spec::Body::Bytes(_))
                && body < 64 * 1024
                && !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("expect"));
            info.size_request += if inline { head + body } else { head };
            // The upload may go on while the answer comes (an echo does
            // that): it is counted when the attempt ends.
            // Over HTTP/2 the bytes on the wire are frames: the body's own
            // length is what curl counts.
            let upload = if h2 {
                Upload::Known(if sends_body {
                    self.spec.body_len().unwrap_or(0)
                } else {
                    0
                })
            } else {
                Upload::Counted(log.clone(), head)
            };
            self.uploads.lock().expect("upload list").push(upload);
        }

        let (parts, incoming) = response.into_parts();
        // curl reports the version the server answered with.
        info.http_version = match parts.version {
            Version::HTTP_2 => "2",
            // curl's CURL_HTTP_VERSION_1_0 prints as "1".
            Version::HTTP_10 => "1",
            _ => "1.1",
        };
        let heads = if h2 {
            vec![render_h2_head(parts.status, &parts.headers)]
        } else {
            let log = log.lock().expect("tap log");
            let heads: Vec<Bytes> = wire::response_heads(&log.read)
                .into_iter()
                .map(Bytes::copy_from_slice)
                .collect();
            if heads.is_empty() {
                vec![render_h1_head(parts.version, parts.status, &parts.headers)]
            } else {
                heads
            }
        };
        if verbose {
            for head in &heads {
                for line in String::from_utf8_lossy(head)
                    .split("\r\n")
                    .filter(|l| !l.is_empty())
                {
                    eprintln!("< {line}");
                }
                eprintln!("<");
            }
        }
        let final_head = heads.last().cloned().unwrap_or_default();
        let headers = header_lines(&final_head);
        let no_body = method == Method::HEAD
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        // `-X HEAD` without -I: curl still expects the body the head
        // announces, and waits for it until the server closes (18) or -m
        // ends the wait (28). hyper knows better and reads none; the
        // connection is kept open, as curl keeps it, to wait the same.
        let announced = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .filter(|len| *len > 0);
        // Over HTTP/2 the stream has ended already: no sender to keep.
        let head_wait = (method == Method::HEAD
            && kind != Kind::Head
            && !matches!(parts.status.as_u16(), 204 | 304))
        .then_some(announced)
        .flatten()
        .map(|len| (len, http1_sender));
        Ok(Exchange {
            status: parts.status,
            heads,
            headers,
            body: (!no_body).then_some(incoming),
            task,
            log,
            verbose,
            host,
            head_wait,
        })
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(jar) = &self.jar {
            parts.extend(jar.header_for(url));
        }
        parts.extend(self.cookie_strings.iter().cloned());
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    async fn request_body(&self) -> Result<Body, Failure> {
        Ok(match &self.spec.body {
            spec::Body::Empty => Body::empty(),
            spec::Body::Bytes(b) => Body::from(b.clone()),
            spec::Body::File(path, len) => {
                let file = tokio::fs::File::open(path).await.map_err(|e| {
                    Failure::new(
                        exit::READ_ERROR,
                        format!("cannot open {}: {e}", path.display()),
                    )
                })?;
                Body::from_reader(Uploading::new(file, self.show_progress, *len))
            }
            spec::Body::Stdin => Body::from_reader(tokio::io::stdin()),
        })
    }
}

/// A response whose head has arrived.
struct Exchange {
    status: StatusCode,
    /// The heads as received (HTTP/1) or as curl renders them (HTTP/2).
    heads: Vec<Bytes>,
    /// The final head's header lines, names as received.
    headers: Vec<(String, String)>,
    body: Option<Incoming>,
    task: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<Log>>,
    verbose: bool,
    host: String,
    /// `-X HEAD`: the length the head announced, and the request handle
    /// that keeps the connection open while we wait as curl does.
    head_wait: Option<(u64, Option<hyper::client::conn::http1::SendRequest<Body>>)>,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads and drops the rest of the body (a redirect's, say).
    async fn drain(&mut self) {
        if let Some(body) = self.body.as_mut() {
            while let Some(Ok(_)) = body.frame().await {}
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.task.abort();
        if self.verbose {
            eprintln!("* Connection #0 to host {} left intact", self.host);
        }
        let _ = &self.log;
    }
}

/// --etag-save: each `ETag:` line's value and a newline, as curl writes
/// them (src/tool_cb_hdr.c), after what this transfer wrote before.
fn save_etags(file: &str, heads: &[Bytes]) -> Result<(), Failure> {
    use std::io::Write;
    let mut text = String::new();
    for head in heads {
        for (name, value) in header_lines(head) {
            if name.eq_ignore_ascii_case("etag") && !value.is_empty() {
                text.push_str(&value);
                text.push('\n');
            }
        }
    }
    let written = if file == "-" {
        std::io::stdout().write_all(text.as_bytes())
    } else {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
    };
    written.map_err(|e| Failure::new(exit::WRITE_ERROR, format!("cannot write {file}: {e}")))
}

/// The length in a `Content-Length:` header line.
fn content_length(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?;
    let (name, value) = line.split_once(':')?;
    if !name.eq_ignore_ascii_case("content-length") {
        return None;
    }
    value.trim().parse().ok()
}

/// The file name of a Content-Disposition value, as curl's -J reads it
/// (src/tool_cb_hdr.c): the first `filename=` (not `filename*=`), quoted
/// or up to `;`, without any directory; `None` if that leaves nothing.
fn content_disposition_filename(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
        if rest.is_empty() {
            return None;
        }
        if let Some(after) = rest.strip_prefix("filename=") {
            rest = after;
            break;
        }
        rest = &rest[rest.find(';').unwrap_or(rest.len())..];
    }
    let name = match rest.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = &rest[1..];
            &inner[..inner.find(quote).unwrap_or(inner.len())]
        }
        _ => &rest[..rest.find(';').unwrap_or(rest.len())],
    };
    let name = name.rsplit('/').next().unwrap_or_default();
    let name = name.rsplit('\\').next().unwrap_or_default();
    let name = name.split(['\r', '\n']).next().unwrap_or_default();
    (!name.is_empty()).then(|| name.to_owned())
}

/// A Location as curl encodes it before following it (lib/urlapi.c,
/// urlencode_str): a space is `%20` before the query and `+` in it, bytes
/// past ASCII are escaped in lowercase hex, the rest stays as it is.
fn curl_encoded(location: &str) -> String {
    let mut out = String::new();
    let mut in_query = false;
    for b in location.bytes() {
        match b {
            b' ' if in_query => out.push('+'),
            b' ' => out.push_str("%20"),
            b'?' => {
                in_query = true;
                out.push('?');
            }
            b if b >= 0x80 => out.push_str(&format!("%{b:02x}")),
            b => out.push(char::from(b)),
        }
    }
    out
}

/// `%3D` as `%3d`: how curl's URL parser stores a query it is given.
fn lowercase_escapes(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let mut i = 0;
    while i + 2 < out.len() {
        if out[i] == b'%' && out[i + 1].is_ascii_hexdigit() && out[i + 2].is_ascii_hexdigit() {
            out[i + 1] = out[i + 1].to_ascii_lowercase();
            out[i + 2] = out[i + 2].to_ascii_lowercase();
            i += 3;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// Whether two URLs have the same scheme, host and port (credentials stay
/// within one).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The Host header for a URL: its host, and the port when not the default.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or("localhost");
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn tls_version_name(version: &str) -> String {
    match version {
        "TLSv1_3" => "TLSv1.3".into(),
        "TLSv1_2" => "TLSv1.2".into(),
        other => other.replace('_', "."),
    }
}

/// A request head as curl shows an HTTP/2 request in -v.
fn render_request(
    method: &Method,
    path: &str,
    headers: &[(String, String)],
    authority: &str,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/2\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// An HTTP/2 response head as curl renders it: `HTTP/2 200 ` and the
/// headers lowercase, as they came.
fn render_h2_head(status: StatusCode, headers: &HeaderMap) -> Bytes {
    let head = format!("HTTP/2 {} \r\n", status.as_u16()).into_bytes();
    with_headers(head, headers)
}

/// A fallback for an HTTP/1 head the tap could not see whole.
fn render_h1_head(version: Version, status: StatusCode, headers: &HeaderMap) -> Bytes {
    let v = if version == Version::HTTP_10 {
        "1.0"
    } else {
        "1.1"
    };
    let head = format!(
        "HTTP/{v} {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    with_headers(head, headers)
}

/// A status line followed by the header lines and the blank line.
fn with_headers(mut head: Vec<u8>, headers: &HeaderMap) -> Bytes {
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

/// The header lines of a head, after its status line.
fn header_lines(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// curl's code for a request that got no response head.
fn send_failure(e: &hyper::Error, log: &Arc<Mutex<Log>>) -> Failure {
    let read = log.lock().expect("tap log").read_total;
    if e.is_timeout() {
        return Failure::new(exit::OPERATION_TIMEDOUT, format!("{e}"));
    }
    if read == 0 && (e.is_incomplete_message() || e.is_closed() || e.is_canceled()) {
        return Failure::new(exit::GOT_NOTHING, "Empty reply from server");
    }
    if e.is_parse() || e.is_parse_status() {
        // curl 7.88 says 1 for a reply that is not HTTP/1.x (it refuses
        // HTTP/0.9), and 8 for a malformed one.
        let code = if e.is_parse_version_h2() || e.to_string().contains("version") {
            exit::UNSUPPORTED_PROTOCOL
        } else {
            exit::WEIRD_SERVER_REPLY
        };
        return Failure::new(code, format!("the server's reply is not HTTP: {e}"));
    }
    if let Some(h2) = find_h2(e) {
        return Failure::new(exit::HTTP2, format!("HTTP/2 stream error: {h2}"));
    }
    if read == 0 {
        Failure::new(
            exit::SEND_ERROR,
            format!("Failure when sending data to the peer: {e}"),
        )
    } else {
        Failure::new(
            exit::RECV_ERROR,
            format!("Failure when receiving data from the peer: {e}"),
        )
    }
}

/// curl's code when HTTP/2 with prior knowledge meets a server that does
/// not speak it (its first bytes are no SETTINGS frame, or none came):
/// 55 if the server had closed before our request was written, 52 if it
/// answered nothing curl could read.
fn h2_send_failure(e: &hyper::Error, log: &Arc<Mutex<Log>>) -> Failure {
    let (speaks_h2, write_failed) = {
        let log = log.lock().expect("tap log");
        // A frame header's fourth byte is its type; SETTINGS is 4.
        (log.read.get(3) == Some(&4), log.write_failed)
    };
    if speaks_h2 || e.is_timeout() {
        return send_failure(e, log);
    }
    if write_failed {
        Failure::new(exit::SEND_ERROR, "Send failure: Broken pipe")
    } else {
        Failure::new(exit::GOT_NOTHING, "Empty reply from server")
    }
}

fn find_h2(e: &hyper::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        let text = err.to_string();
        if std::any::type_name_of_val(err).contains("h2") || text.contains("stream error") {
            return Some(text);
        }
        source = err.source();
    }
    None
}

/// curl's code for a body that broke off.
fn body_failure(e: &hyper::Error, length: Option<u64>, received: u64) -> Failure {
    // hyper reports a body cut short as an UnexpectedEof io error.
    let mut eof = false;
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        eof |= err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof);
        source = err.source();
    }
    if eof || e.is_incomplete_message() || e.is_closed() {
        let remaining = length.map_or(String::new(), |l| {
            format!(
                " with {} bytes remaining to read",
                l.saturating_sub(received)
            )
        });
        return Failure::new(exit::PARTIAL_FILE, format!("transfer closed{remaining}"));
    }
    if e.is_timeout() {
        return Failure::new(exit::OPERATION_TIMEDOUT, format!("{e}"));
    }
    Failure::new(
        exit::RECV_ERROR,
        format!("Failure when receiving data from the peer: {e}"),
    )
}

/// Runs a connection's I/O in the background until it ends; what ended it
/// shows in the request's own result.
fn drive<C: Future + Send + 'static>(conn: C) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = conn.await;
    })
}
