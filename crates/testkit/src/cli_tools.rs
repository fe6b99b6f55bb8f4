//! Command-line peers the suites drive the one way (curl), and reading the
//! text such tools print.

use std::process::{Command, Output, Stdio};

/// curl with `args`: silent but for errors, never through a proxy, and
/// bounded in time so that a hang fails the test instead of stalling it.
/// The caller checks the status (see [`curl_ok`]).
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--noproxy",
            "*",
            "--max-time",
            "30",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("this test needs curl on PATH (Debian package curl)")
}

/// [`curl`] that must succeed; its stdout as text.
pub fn curl_ok(args: &[&str]) -> String {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("curl printed UTF-8")
}

/// [`curl_ok`] with `args` once with `--http1.1` and once with `--http2`
/// (which ALPN settles over TLS), asserting that curl spoke that version
/// each time; the two bodies, HTTP/1.1's first.
pub fn curl_over_http1_and_http2(args: &[&str]) -> [String; 2] {
    [("--http1.1", "1.1"), ("--http2", "2")].map(|(flag, version)| {
        let out = curl_ok(&[&[flag, "-w", "\n%{http_version}"][..], args].concat());
        let (body, spoken) = out.rsplit_once('\n').expect("-w adds a line");
        assert_eq!(spoken, version, "curl {flag} {args:?} spoke HTTP/{spoken}");
        body.to_owned()
    })
}

/// nginx answering `200 ANSWER` (nginx variables allowed) to every request
/// on each of `sockets`: a socket file name in nginx's dir and its `listen`
/// parameters (`""`, `"http2"`). `directives` come first in the `http`
/// block; nothing is logged.
#[cfg(unix)]
pub fn nginx_answering(directives: &str, sockets: &[(&str, &str)], answer: &str) -> crate::Nginx {
    crate::Nginx::start(|dir, _| {
        let servers: String = sockets
            .iter()
            .map(|(file, params)| {
                format!(
                    "server {{\n    listen unix:{}/{file} {params};\n    \
                     location / {{ return 200 \"{answer}\"; }}\n}}\n",
                    dir.display()
                )
            })
            .collect();
        format!("access_log off;\n{directives}\n{servers}")
    })
}
