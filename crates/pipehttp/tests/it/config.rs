//! Config files in both shapes, and the messages their mistakes get.

use std::time::Duration;

use pipehttp::Config;
use pipehttp::config::CertificateConfig;

fn toml_err(text: &str) -> String {
    Config::from_toml_str(text, "app.toml")
        .expect_err("the text should be refused")
        .to_string()
}

fn json_err(text: &str) -> String {
    Config::from_json_str(text, "appsettings.json")
        .expect_err("the text should be refused")
        .to_string()
}

#[test]
fn toml_full_example() {
    let config = Config::from_toml_str(
        r#"
[endpoints.web]
url = "http://127.0.0.1:0"
[endpoints.pipe]
url = "https://pipe:/my-pipe-name"
certificate = { path = "/etc/pipe.pem", key_path = "/etc/pipe.key" }

[certificates.default]
path = "/etc/cert.pem"
key_path = "/etc/key.pem"

[limits]
max_request_body_size = "unlimited"
max_request_headers_total_size = 16384
request_headers_timeout = 2.5
keep_alive_timeout = 60
max_concurrent_connections = 100

[pipes]
max_read_buffer_size = 4194304
max_write_buffer_size = 131072
listener_queue_count = 8
current_user_only = false
mode = "0660"
"#,
        "app.toml",
    )
    .unwrap();

    let names: Vec<_> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["pipe", "web"], "endpoints are sorted by name");
    let urls: Vec<_> = config.urls().iter().map(ToString::to_string).collect();
    assert_eq!(urls, ["https://pipe:/my-pipe-name", "http://127.0.0.1:0"]);
    assert_eq!(
        config.endpoints[0].certificate,
        Some(CertificateConfig::new("/etc/pipe.pem", "/etc/pipe.key"))
    );
    assert_eq!(config.endpoints[1].certificate, None);
    assert_eq!(
        config.default_certificate,
        Some(CertificateConfig::new("/etc/cert.pem", "/etc/key.pem"))
    );

    let l = &config.limits;
    assert_eq!(l.max_request_body_size, None);
    assert_eq!(l.max_request_headers_total_size, 16384);
    assert_eq!(l.request_headers_timeout, Duration::from_millis(2500));
    assert_eq!(l.keep_alive_timeout, Duration::from_secs(60));
    assert_eq!(l.max_concurrent_connections, Some(100));

    let p = &config.pipes;
    assert_eq!(p.max_read_buffer_size, 4_194_304);
    assert_eq!(p.max_write_buffer_size, 131_072);
    assert_eq!(p.listener_queue_count, 8);
    assert!(!p.current_user_only);
    assert_eq!(p.mode, Some(0o660));
}

#[test]
fn toml_mode_as_integer_and_limits_left_out_keep_defaults() {
    let config = Config::from_toml_str(
        "[pipes]\ncurrent_user_only = false\nmode = 0o640\n[limits]\nkeep_alive_timeout = 5\n",
        "app.toml",
    )
    .unwrap();
    assert_eq!(config.pipes.mode, Some(0o640));
    let defaults = pipehttp::Limits::default();
    assert_eq!(config.limits.keep_alive_timeout, Duration::from_secs(5));
    assert_eq!(
        config.limits.max_request_body_size,
        defaults.max_request_body_size
    );
    assert_eq!(
        config.limits.request_headers_timeout,
        defaults.request_headers_timeout
    );
    assert!(config.endpoints.is_empty());
}

#[test]
fn kestrel_json_full_example() {
    let config = Config::from_json_str(
        r#"{
  "Logging": { "LogLevel": { "Default": "Information", "Microsoft.AspNetCore": "Warning" } },
  "AllowedHosts": "*",
  "Kestrel": {
    "Endpoints": {
      "NamedPipeEndpoint": {
        "Url": "https://pipe:/my-pipe-name",
        "Certificate": { "Path": "/etc/pipe.pem", "KeyPath": "/etc/pipe.key" }
      },
      "Tcp": { "Url": "http://localhost:5000" }
    },
    "Certificates": { "Default": { "Path": "/etc/cert.pem", "KeyPath": "/etc/key.pem" } },
    "Limits": {
      "MaxRequestBodySize": null,
      "MaxRequestHeadersTotalSize": 65536,
      "RequestHeadersTimeout": "00:00:10",
      "KeepAliveTimeout": 130,
      "MaxConcurrentConnections": null
    },
    "NamedPipes": {
      "MaxReadBufferSize": 2097152,
      "MaxWriteBufferSize": 65536,
      "ListenerQueueCount": 4,
      "CurrentUserOnly": false,
      "Mode": "0666"
    }
  }
}"#,
        "appsettings.json",
    )
    .unwrap();

    let names: Vec<_> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["NamedPipeEndpoint", "Tcp"]);
    assert_eq!(config.urls()[0].to_string(), "https://pipe:/my-pipe-name");
    assert_eq!(config.urls()[1].to_string(), "http://localhost:5000");
    assert_eq!(
        config.endpoints[0].certificate,
        Some(CertificateConfig::new("/etc/pipe.pem", "/etc/pipe.key"))
    );
    assert_eq!(
        config.default_certificate,
        Some(CertificateConfig::new("/etc/cert.pem", "/etc/key.pem"))
    );
    let l = &config.limits;
    assert_eq!(l.max_request_body_size, None);
    assert_eq!(l.max_request_headers_total_size, 65536);
    assert_eq!(l.request_headers_timeout, Duration::from_secs(10));
    assert_eq!(l.keep_alive_timeout, Duration::from_secs(130));
    assert_eq!(l.max_concurrent_connections, None);
    let p = &config.pipes;
    assert_eq!(p.max_read_buffer_size, 2_097_152);
    assert_eq!(p.max_write_buffer_size, 65536);
    assert_eq!(p.listener_queue_count, 4);
    assert!(!p.current_user_only);
    assert_eq!(p.mode, Some(0o666));
}

#[test]
fn json_without_kestrel_is_all_defaults() {
    let config = Config::from_json_str(r#"{ "AllowedHosts": "*" }"#, "appsettings.json").unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn timespan_forms() {
    let timeout = |value: &str| {
        let json =
            format!(r#"{{ "Kestrel": {{ "Limits": {{ "RequestHeadersTimeout": {value} }} }} }}"#);
        Config::from_json_str(&json, "appsettings.json")
            .map(|c| c.limits.request_headers_timeout)
            .map_err(|e| e.to_string())
    };
    assert_eq!(timeout("30"), Ok(Duration::from_secs(30)));
    assert_eq!(timeout("0.25"), Ok(Duration::from_millis(250)));
    assert_eq!(timeout(r#""00:00:30""#), Ok(Duration::from_secs(30)));
    assert_eq!(
        timeout(r#""00:01:30.250""#),
        Ok(Duration::from_millis(90_250))
    );
    assert_eq!(timeout(r#""1.00:00:00""#), Ok(Duration::from_secs(86_400)));
    for bad in [
        r#""30""#,
        r#""00:00:61""#,
        r#""soon""#,
        "-1",
        "0",
        r#""00:00:00""#,
    ] {
        let err = timeout(bad).expect_err(bad);
        assert!(
            err.starts_with("appsettings.json: `Kestrel:Limits:RequestHeadersTimeout` is ")
                && err.contains("TimeSpan such as \"00:00:30\""),
            "{bad}: {err}"
        );
    }
}

#[test]
fn unknown_keys_name_the_key_and_the_file() {
    let toml_cases = [
        ("surprise = 1", "`surprise`"),
        ("[limits]\nmax_body = 10", "`limits.max_body`"),
        ("[pipes]\nbuffer = 1", "`pipes.buffer`"),
        (
            "[endpoints.a]\nurl = \"http://pipe:/a\"\nport = 1",
            "`endpoints.a.port`",
        ),
        (
            "[endpoints.a]\nurl = \"http://pipe:/a\"\ncertificate = { path = \"c\", key_path = \"k\", password = \"x\" }",
            "`endpoints.a.certificate.password`",
        ),
        ("[certificates.other]\npath = \"c\"", "`certificates.other`"),
        (
            "[certificates.default]\npath = \"c\"\nkey_path = \"k\"\nsubject = \"x\"",
            "`certificates.default.subject`",
        ),
    ];
    for (text, key) in toml_cases {
        let err = toml_err(text);
        assert!(
            err.starts_with(&format!("app.toml: unknown key {key}: expected one of `")),
            "{text}: {err}"
        );
    }

    let json_cases = [
        (r#"{ "Kestrl": {} }"#, "`Kestrl`"),
        (
            r#"{ "Kestrel": { "EndpointDefaults": {} } }"#,
            "`Kestrel:EndpointDefaults`",
        ),
        (
            r#"{ "Kestrel": { "Limits": { "MaxRequestLineSize": 8192 } } }"#,
            "`Kestrel:Limits:MaxRequestLineSize`",
        ),
        (
            r#"{ "Kestrel": { "NamedPipes": { "PipeSecurity": 1 } } }"#,
            "`Kestrel:NamedPipes:PipeSecurity`",
        ),
        (
            r#"{ "Kestrel": { "Endpoints": { "E": { "Url": "http://pipe:/a", "Protocols": "Http2" } } } }"#,
            "`Kestrel:Endpoints:E:Protocols`",
        ),
        (
            r#"{ "Kestrel": { "Certificates": { "Default": { "Path": "c", "KeyPath": "k", "Password": "x" } } } }"#,
            "`Kestrel:Certificates:Default:Password`",
        ),
    ];
    for (text, key) in json_cases {
        let err = json_err(text);
        assert!(
            err.starts_with(&format!(
                "appsettings.json: unknown key {key}: expected one of `"
            )),
            "{text}: {err}"
        );
    }
}

#[test]
fn a_key_in_the_wrong_case_gets_the_right_spelling() {
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Limits": { "maxRequestBodySize": 10 } } }"#),
        "appsettings.json: unknown key `Kestrel:Limits:maxRequestBodySize`: did you mean `MaxRequestBodySize`? keys are matched exactly"
    );
    assert_eq!(
        json_err(r#"{ "kestrel": {} }"#),
        "appsettings.json: unknown key `kestrel`: did you mean `Kestrel`? keys are matched exactly"
    );
    assert_eq!(
        toml_err("[limits]\nmax-request-body-size = 10"),
        "app.toml: unknown key `limits.max-request-body-size`: did you mean `max_request_body_size`? keys are matched exactly"
    );
}

#[test]
fn bad_values_name_the_key_and_what_to_write() {
    assert_eq!(
        toml_err("[limits]\nmax_request_body_size = \"lots\""),
        "app.toml: `limits.max_request_body_size` is \"lots\": expected a whole number of at least 0, or \"unlimited\""
    );
    assert_eq!(
        toml_err("[limits]\nmax_concurrent_connections = 0"),
        "app.toml: `limits.max_concurrent_connections` is 0: expected a whole number of at least 1, or \"unlimited\""
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Limits": { "MaxRequestBodySize": "unlimited" } } }"#),
        "appsettings.json: `Kestrel:Limits:MaxRequestBodySize` is \"unlimited\": expected a whole number of at least 0, or null"
    );
    assert_eq!(
        toml_err("[pipes]\ncurrent_user_only = \"yes\""),
        "app.toml: `pipes.current_user_only` is \"yes\": expected true or false"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "NamedPipes": { "CurrentUserOnly": false, "Mode": 660 } } }"#),
        "appsettings.json: `Kestrel:NamedPipes:Mode` is 660: expected an octal permission mode in a string, such as \"0660\""
    );
    assert_eq!(
        toml_err("limits = 3"),
        "app.toml: `limits` is 3: expected a table"
    );
    assert_eq!(
        toml_err("[endpoints.a]\ncertificate = { path = \"c\", key_path = \"k\" }"),
        "app.toml: `endpoints.a` has no `url`: add it"
    );
    assert_eq!(
        toml_err("[certificates.default]\npath = \"c\""),
        "app.toml: `certificates.default` has no `key_path`: add it"
    );
}

#[test]
fn mode_needs_current_user_only_off() {
    let err = toml_err("[pipes]\nmode = \"0660\"");
    assert!(
        err.starts_with("app.toml: `pipes`: mode 0660 needs current_user_only = false"),
        "{err}"
    );
    let err = toml_err("[pipes]\ncurrent_user_onyl = false\nmode = \"0660\"");
    assert!(
        err.starts_with("app.toml: unknown key `pipes.current_user_onyl`"),
        "a misspelt key is named before the conflict it causes: {err}"
    );
}

#[test]
fn bad_url_names_the_key_and_quotes_the_address_error() {
    let err = toml_err("[endpoints.pipe]\nurl = \"http://pipe:/a:b\"");
    assert!(
        err.starts_with("app.toml: `endpoints.pipe.url`: invalid address 'http://pipe:/a:b': "),
        "{err}"
    );
    let err = json_err(r#"{ "Kestrel": { "Endpoints": { "E": { "Url": "ftp://x" } } } }"#);
    assert!(
        err.starts_with("appsettings.json: `Kestrel:Endpoints:E:Url`: invalid address 'ftp://x': the scheme 'ftp' is not http or https"),
        "{err}"
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let err = toml_err("[limits]\nmax_request_body_size = = 3\n");
    assert!(err.starts_with("app.toml: line 2, column "), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    let err = json_err("{\n  \"Kestrel\": {,\n}");
    assert!(
        err.starts_with("appsettings.json: line 2, column 15: "),
        "{err}"
    );
    assert!(
        !err.contains(" at line "),
        "the position is given once: {err}"
    );
    assert_eq!(
        json_err("[]"),
        "appsettings.json: the file holds no JSON object: write { \"Kestrel\": { ... } }"
    );
}

#[test]
fn file_extension_picks_the_shape() {
    let dir = std::env::temp_dir().join(format!("pipehttp-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("server.TOML");
    std::fs::write(&toml, "[endpoints.a]\nurl = \"http://pipe:/a\"\n").unwrap();
    let json = dir.join("appsettings.json");
    std::fs::write(
        &json,
        r#"{"Kestrel":{"Endpoints":{"A":{"Url":"http://pipe:/b"}}}}"#,
    )
    .unwrap();
    let yaml = dir.join("server.yaml");
    std::fs::write(&yaml, "").unwrap();

    assert_eq!(
        Config::from_file(&toml).unwrap().urls()[0].to_string(),
        "http://pipe:/a"
    );
    assert_eq!(
        Config::from_file(&json).unwrap().urls()[0].to_string(),
        "http://pipe:/b"
    );
    let err = Config::from_file(&yaml).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: unknown config file type: name it *.toml, or *.json for the appsettings shape",
            yaml.display()
        )
    );
    let missing = dir.join("missing.toml");
    let err = Config::from_file(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn relative_certificate_paths_resolve_against_the_file() {
    let dir = std::env::temp_dir().join(format!("pipehttp-config-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.toml");
    // An absolute path in this OS's own form: `/abs` is not one on Windows.
    let absolute = std::env::temp_dir().join("abs").join("a.key");
    std::fs::write(
        &file,
        format!(
            r#"
[endpoints.a]
url = "https://pipe:/a"
certificate = {{ path = "certs/a.pem", key_path = {absolute:?} }}
[certificates.default]
path = "cert.pem"
key_path = "key.pem"
"#
        ),
    )
    .unwrap();
    let config = Config::from_file(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        config.endpoints[0].certificate,
        Some(CertificateConfig::new(dir.join("certs/a.pem"), absolute))
    );
    assert_eq!(
        config.default_certificate,
        Some(CertificateConfig::new(
            dir.join("cert.pem"),
            dir.join("key.pem")
        ))
    );
}

#[test]
fn strings_keep_relative_paths_as_written() {
    let config = Config::from_toml_str(
        "[certificates.default]\npath = \"cert.pem\"\nkey_path = \"key.pem\"\n",
        "inline",
    )
    .unwrap();
    assert_eq!(
        config.default_certificate,
        Some(CertificateConfig::new("cert.pem", "key.pem"))
    );
}
