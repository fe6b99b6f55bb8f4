//! `-w`/`--write-out`: curl's variables about the finished transfer.

use std::io::Write;
use std::time::Duration;

/// What a transfer leaves for `-w` to print.
#[derive(Debug, Default, Clone)]
pub struct Info {
    pub http_code: u16,
    pub http_version: &'static str,
    pub content_type: Option<String>,
    pub url: String,
    /// The URL's place on the command line, from 0.
    pub urlnum: usize,
    pub url_effective: String,
    pub redirect_url: Option<String>,
    pub referer: Option<String>,
    pub method: String,
    pub scheme: String,
    pub num_redirects: u32,
    pub num_connects: u32,
    pub num_headers: usize,
    pub size_download: u64,
    pub size_upload: u64,
    pub size_header: u64,
    pub size_request: u64,
    pub remote_ip: String,
    pub remote_port: u16,
    pub local_ip: String,
    pub local_port: u16,
    pub time_namelookup: Duration,
    pub time_connect: Duration,
    pub time_appconnect: Duration,
    pub time_pretransfer: Duration,
    pub time_starttransfer: Duration,
    pub time_redirect: Duration,
    pub time_total: Duration,
    pub exitcode: u8,
    pub errormsg: Option<String>,
    pub filename_effective: Option<String>,
    /// The last response's headers, for `%header{name}` and `%{header_json}`.
    pub headers: Vec<(String, String)>,
    pub ssl_verify_result: u32,
}

fn secs(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// A JSON string.
fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn speed(bytes: u64, d: Duration) -> u64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        (bytes as f64 / s) as u64
    } else {
        0
    }
}

impl Info {
    /// A variable's text, or `None` if curl knows no such variable.
    fn variable(&self, name: &str) -> Option<String> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        Some(match name {
            "content_type" => opt(&self.content_type),
            "errormsg" => opt(&self.errormsg),
            "exitcode" => self.exitcode.to_string(),
            "filename_effective" => opt(&self.filename_effective),
            "ftp_entry_path" => String::new(),
            "http_code" | "response_code" => format!("{:03}", self.http_code),
            "http_connect" => "000".into(),
            "http_version" => self.http_version.into(),
            "local_ip" => self.local_ip.clone(),
            "local_port" => self.local_port.to_string(),
            "method" => self.method.clone(),
            "num_connects" => self.num_connects.to_string(),
            "num_headers" => self.num_headers.to_string(),
            "num_redirects" => self.num_redirects.to_string(),
            "proxy_ssl_verify_result" => "0".into(),
            "redirect_url" => opt(&self.redirect_url),
            "referer" => opt(&self.referer),
            "remote_ip" => self.remote_ip.clone(),
            "remote_port" => self.remote_port.to_string(),
            "scheme" => self.scheme.clone(),
            "size_download" => self.size_download.to_string(),
            "size_header" => self.size_header.to_string(),
            "size_request" => self.size_request.to_string(),
            "size_upload" => self.size_upload.to_string(),
            "speed_download" => speed(self.size_download, self.time_total).to_string(),
            "speed_upload" => speed(self.size_upload, self.time_total).to_string(),
            "ssl_verify_result" => self.ssl_verify_result.to_string(),
            "time_appconnect" => secs(self.time_appconnect),
            "time_connect" => secs(self.time_connect),
            "time_namelookup" => secs(self.time_namelookup),
            "time_pretransfer" => secs(self.time_pretransfer),
            "time_redirect" => secs(self.time_redirect),
            "time_starttransfer" => secs(self.time_starttransfer),
            "time_total" => secs(self.time_total),
            "url" => self.url.clone(),
            "url_effective" => self.url_effective.clone(),
            "urlnum" => self.urlnum.to_string(),
            "num_certs" => "0".into(),
            "certs" => String::new(),
            "json" => self.json(),
            "header_json" => self.header_json(),
            _ => return None,
        })
    }

    /// `%{json}`: every variable, in curl's layout (keys sorted, times
    /// with six decimals, curl's version last).
    fn json(&self) -> String {
        let text = |v: &Option<String>| v.as_ref().map_or("null".to_owned(), |s| quote(s));
        let fields: Vec<(&str, String)> = vec![
            ("certs", quote("")),
            ("content_type", text(&self.content_type)),
            ("errormsg", text(&self.errormsg)),
            ("exitcode", self.exitcode.to_string()),
            ("filename_effective", text(&self.filename_effective)),
            ("ftp_entry_path", "null".into()),
            ("http_code", self.http_code.to_string()),
            ("http_connect", "0".into()),
            ("http_version", quote(self.http_version)),
            ("local_ip", quote(&self.local_ip)),
            ("local_port", self.local_port.to_string()),
            ("method", quote(&self.method)),
            ("num_certs", "0".into()),
            ("num_connects", self.num_connects.to_string()),
            ("num_headers", self.num_headers.to_string()),
            ("num_redirects", self.num_redirects.to_string()),
            ("proxy_ssl_verify_result", "0".into()),
            ("redirect_url", text(&self.redirect_url)),
            ("referer", text(&self.referer)),
            ("remote_ip", quote(&self.remote_ip)),
            ("remote_port", self.remote_port.to_string()),
            ("response_code", self.http_code.to_string()),
            ("scheme", quote(&self.scheme)),
            ("size_download", self.size_download.to_string()),
            ("size_header", self.size_header.to_string()),
            ("size_request", self.size_request.to_string()),
            ("size_upload", self.size_upload.to_string()),
            (
                "speed_download",
                speed(self.size_download, self.time_total).to_string(),
            ),
            (
                "speed_upload",
                speed(self.size_upload, self.time_total).to_string(),
            ),
            ("ssl_verify_result", self.ssl_verify_result.to_string()),
            ("time_appconnect", secs(self.time_appconnect)),
            ("time_connect", secs(self.time_connect)),
            ("time_namelookup", secs(self.time_namelookup)),
            ("time_pretransfer", secs(self.time_pretransfer)),
            ("time_redirect", secs(self.time_redirect)),
            ("time_starttransfer", secs(self.time_starttransfer)),
            ("time_total", secs(self.time_total)),
            ("url", quote(&self.url)),
            ("url_effective", quote(&self.url_effective)),
            ("urlnum", self.urlnum.to_string()),
            (
                "curl_version",
                quote(&format!("pipehttp/{}", env!("CARGO_PKG_VERSION"))),
            ),
        ];
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }

    /// `%{header_json}`: the last response's headers by lowercase name, in
    /// the order they came, one per line as curl writes them.
    fn header_json(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        let mut values: Vec<Vec<String>> = Vec::new();
        for (name, value) in &self.headers {
            let name = name.to_ascii_lowercase();
            match names.iter().position(|n| *n == name) {
                Some(i) => values[i].push(quote(value)),
                None => {
                    names.push(name);
                    values.push(vec![quote(value)]);
                }
            }
        }
        let entries: Vec<String> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| format!("{}:[{}]", quote(n), v.join(",")))
            .collect();
        format!("{{{}\n}}", entries.join(",\n"))
    }

    /// `%header{name}`: the first value of that header, as curl gives.
    fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Writes `format` with `info`'s values to stdout (or stderr after
/// `%{stderr}`), as curl does after each transfer (src/tool_writeout.c):
/// names in any case, `%{onerror}` ends the output after a success, and
/// what is not a variable or an escape is written as it is.
pub fn write(format: &str, info: &Info) {
    let mut out: Vec<u8> = Vec::new();
    let mut err: Vec<u8> = Vec::new();
    let mut to_stderr = false;
    let bytes = format.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let sink = if to_stderr { &mut err } else { &mut out };
        let next = bytes.get(i + 1).copied();
        match (bytes[i], next) {
            (b'%', Some(b'%')) => {
                sink.push(b'%');
                i += 2;
            }
            (b'%', Some(b'{')) => {
                let Some(len) = format[i + 2..].find('}') else {
                    sink.extend_from_slice(b"%{");
                    i += 2;
                    continue;
                };
                let name = format[i + 2..i + 2 + len].to_ascii_lowercase();
                i += 2 + len + 1;
                match name.as_str() {
                    "onerror" if info.exitcode == 0 => break,
                    "onerror" => {}
                    "stdout" => to_stderr = false,
                    "stderr" => to_stderr = true,
                    _ => match info.variable(&name) {
                        Some(v) => sink.extend_from_slice(v.as_bytes()),
                        None => eprintln!(
                            "pipehttp: unknown --write-out variable: '{}'",
                            &format[i - 1 - len..i - 1]
                        ),
                    },
                }
            }
            (b'%', Some(_)) if format[i + 1..].starts_with("header{") => {
                let start = i + 8;
                match format[start..].find('}') {
                    Some(len) => {
                        sink.extend_from_slice(info.header(&format[start..start + len]).as_bytes());
                        i = start + len + 1;
                    }
                    None => {
                        sink.extend_from_slice(b"%header{");
                        i = start;
                    }
                }
            }
            (b'\\', Some(c)) => {
                match c {
                    b'n' => sink.push(b'\n'),
                    b'r' => sink.push(b'\r'),
                    b't' => sink.push(b'\t'),
                    other => sink.extend_from_slice(&[b'\\', other]),
                }
                i += 2;
            }
            (b'%', Some(c)) => {
                // Not a variable: both characters, as they are.
                sink.extend_from_slice(&[b'%', c]);
                i += 2;
            }
            (c, _) => {
                sink.push(c);
                i += 1;
            }
        }
    }
    let _ = std::io::stdout().write_all(&out);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(&err);
}
