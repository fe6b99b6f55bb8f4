//! The cookie engine of `-b FILE` and `-c FILE`: cookies the server sets
//! are kept and sent back where they match, and written out as a
//! Netscape cookie file in curl's layout. Set-Cookie headers are parsed by
//! the `cookie` crate; which cookie goes where follows RFC 6265 as curl
//! applies it.

use std::time::{SystemTime, UNIX_EPOCH};

use url::Url;

#[derive(Debug, Clone)]
struct Stored {
    /// The domain, without a leading dot.
    domain: String,
    /// Sent to subdomains too (a Domain attribute was given).
    tailmatch: bool,
    path: String,
    secure: bool,
    /// Seconds since the epoch; 0 for a session cookie.
    expires: i64,
    name: String,
    value: String,
    http_only: bool,
    /// Order of arrival: newer cookies have larger numbers.
    created: u64,
}

/// The cookies of one run.
#[derive(Debug, Default)]
pub struct Jar {
    cookies: Vec<Stored>,
    next: u64,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Jar {
    /// Loads a Netscape cookie file (curl's -b FILE); a file that does
    /// not exist is an empty jar, as in curl.
    /// With `junk_session` (curl's -j) cookies without an expiry are left out.
    pub fn load(&mut self, path: &str, junk_session: bool) {
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            // curl starts the engine with no cookies from a file it
            // cannot read (none yet, or a directory).
            Err(_) => return,
        };
        for line in text.lines() {
            let (line, http_only) = match line.strip_prefix("#HttpOnly_") {
                Some(rest) => (rest, true),
                None => (line, false),
            };
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() < 7 {
                continue;
            }
            let domain = fields[0].trim_start_matches('.').to_ascii_lowercase();
            let cookie = Stored {
                tailmatch: fields[1].eq_ignore_ascii_case("TRUE"),
                domain,
                path: fields[2].to_owned(),
                secure: fields[3].eq_ignore_ascii_case("TRUE"),
                expires: fields[4].parse().unwrap_or(0),
                name: fields[5].to_owned(),
                value: fields[6..].join("\t"),
                http_only,
                created: 0,
            };
            if junk_session && cookie.expires == 0 {
                continue;
            }
            self.store(cookie);
        }
    }

    fn store(&mut self, mut cookie: Stored) {
        self.cookies.retain(|c| {
            !(c.name == cookie.name && c.domain == cookie.domain && c.path == cookie.path)
        });
        if cookie.expires != 0 && cookie.expires <= now() {
            return; // an expired cookie deletes its namesake
        }
        self.next += 1;
        cookie.created = self.next;
        self.cookies.push(cookie);
    }

    /// Takes in one Set-Cookie header of a response to `url`.
    pub fn receive(&mut self, url: &Url, header: &[u8]) {
        let Ok(text) = std::str::from_utf8(header) else {
            return;
        };
        let Ok(parsed) = cookie::Cookie::parse(text.to_owned()) else {
            return;
        };
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let (domain, tailmatch) = match parsed.domain() {
            Some(d) if !d.is_empty() => {
                let d = d.trim_start_matches('.').to_ascii_lowercase();
                if !domain_match(&host, &d) {
                    return;
                }
                (d, true)
            }
            _ => (host, false),
        };
        let path = match parsed.path() {
            Some(p) if p.starts_with('/') => p.to_owned(),
            // curl keeps the request path's directory, with its slash.
            _ => {
                let p = url.path();
                p[..=p.rfind('/').unwrap_or(0)].to_owned()
            }
        };
        let expires = if let Some(age) = parsed.max_age() {
            if age.whole_seconds() <= 0 {
                1 // in the past: deletes
            } else {
                now().saturating_add(age.whole_seconds())
            }
        } else if let Some(at) = parsed.expires_datetime() {
            at.unix_timestamp().max(1)
        } else {
            0
        };
        self.store(Stored {
            domain,
            tailmatch,
            path,
            secure: parsed.secure().unwrap_or(false),
            expires,
            name: parsed.name().to_owned(),
            value: parsed.value().to_owned(),
            http_only: parsed.http_only().unwrap_or(false),
            created: 0,
        });
    }

    /// The Cookie header for a request to `url`, if any cookie matches.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let secure_context =
            url.scheme() == "https" || matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]");
        let path = url.path();
        let now = now();
        let mut matching: Vec<&Stored> = self
            .cookies
            .iter()
            .filter(|c| {
                (if c.tailmatch {
                    domain_match(&host, &c.domain)
                } else {
                    host == c.domain
                }) && path_match(path, &c.path)
                    && (!c.secure || secure_context)
                    && (c.expires == 0 || c.expires > now)
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        // curl's order: longer paths, longer domains, longer names first,
        // then the older cookie.
        matching.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(b.domain.len().cmp(&a.domain.len()))
                .then(b.name.len().cmp(&a.name.len()))
                .then(a.created.cmp(&b.created))
        });
        Some(
            matching
                .iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// The jar as a Netscape cookie file, newest cookie first, as curl
    /// writes it.
    pub fn netscape(&self) -> String {
        let mut out = String::from(
            "# Netscape HTTP Cookie File\n\
             # https://curl.se/docs/http-cookies.html\n\
             # This file was generated by pipehttp! Edit at your own risk.\n\n",
        );
        let mut cookies: Vec<&Stored> = self.cookies.iter().collect();
        cookies.sort_by_key(|c| std::cmp::Reverse(c.created));
        let now = now();
        for c in cookies {
            if c.expires != 0 && c.expires <= now {
                continue;
            }
            let flag = |b: bool| if b { "TRUE" } else { "FALSE" };
            out.push_str(&format!(
                "{}{}{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                if c.http_only { "#HttpOnly_" } else { "" },
                if c.tailmatch { "." } else { "" },
                c.domain,
                flag(c.tailmatch),
                c.path,
                flag(c.secure),
                c.expires,
                c.name,
                c.value
            ));
        }
        out
    }
}

fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

fn path_match(request: &str, cookie: &str) -> bool {
    // curl matches on the path without a trailing slash (it writes the
    // path as it was set, or its default directory form with the slash).
    let cookie = match cookie.strip_suffix('/') {
        Some(trimmed) if !trimmed.is_empty() => trimmed,
        _ => cookie,
    };
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}
