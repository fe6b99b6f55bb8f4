//! Configuration as ASP.NET Core reads Kestrel's: real appsettings files
//! (under `appsettings/`, each saying what it proves), layering with the
//! environment's file and `Kestrel__` variables, the TOML shape through
//! the same schema, and the messages mistakes get.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipehttp::Config;
use pipehttp::config::CertificateConfig;
use pipehttp::options::{ClientCertificateMode, MinDataRate, Protocols, SslProtocols};
use testkit::fixture_files::{temp_file, write_file};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/appsettings")
        .join(name)
}

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

/// Checks that a refusal is one line that starts with `start`.
fn assert_refusal(err: &str, start: &str) {
    assert!(err.starts_with(start), "expected {start:?}…, got: {err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

fn load(file: &Path, vars: &[(&str, &str)]) -> pipehttp::Result<Config> {
    Config::load_with_env(Some(file), vars.iter().copied())
}

#[test]
fn the_web_template_with_an_endpoint_loads() {
    let config = Config::from_file(&data("web-template.json")).unwrap();
    assert_eq!(config.urls()[0].to_string(), "http://pipe:/my-pipe-name");
    assert_eq!(config.endpoints[0].name, "NamedPipeEndpoint");
    assert_eq!(config.options, pipehttp::ServerOptions::default());
    assert!(config.not_applied.is_empty(), "{:?}", config.not_applied);
}

#[test]
fn a_file_saved_with_a_byte_order_mark_loads() {
    // Visual Studio saves appsettings files with a UTF-8 BOM; .NET reads
    // them, and so does the environment file beside them.
    let dir = testkit::tempdir().unwrap();
    let text = std::fs::read_to_string(data("web-template.json")).unwrap();
    let file = dir.path().join("appsettings.json");
    std::fs::write(&file, format!("\u{feff}{text}")).unwrap();
    let env_file = dir.path().join("appsettings.Development.json");
    let env_text = r#"{ "Kestrel": { "Limits": { "MaxRequestBodySize": 1000 } } }"#;
    std::fs::write(&env_file, format!("\u{feff}{env_text}")).unwrap();
    let config = load(&file, &[("ASPNETCORE_ENVIRONMENT", "Development")]).unwrap();
    assert_eq!(config.urls()[0].to_string(), "http://pipe:/my-pipe-name");
    assert_eq!(config.options.limits.max_request_body_size, Some(1000));
}

#[test]
fn the_hosts_urls_key_gives_the_endpoints_when_kestrel_has_none() {
    // .NET reads the host's `Urls` from appsettings.json too; Kestrel's
    // own endpoints win over it, and the URL variables over both.
    let dir = testkit::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    let urls_of = |text: &str, vars: &[(&str, &str)]| {
        std::fs::write(&file, text).unwrap();
        load(&file, vars).map(|c| c.urls().iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    let only_urls = r#"{ "Logging": { "LogLevel": { "Default": "Information" } },
        "urls": "http://pipe:/a;http://pipe:/b" }"#;
    assert_eq!(
        urls_of(only_urls, &[]).unwrap(),
        ["http://pipe:/a", "http://pipe:/b"]
    );
    assert_eq!(
        urls_of(only_urls, &[("ASPNETCORE_URLS", "http://pipe:/c")]).unwrap(),
        ["http://pipe:/c"]
    );
    let both = r#"{ "Urls": "http://pipe:/a",
        "Kestrel": { "Endpoints": { "E": { "Url": "http://pipe:/k" } } } }"#;
    assert_eq!(urls_of(both, &[]).unwrap(), ["http://pipe:/k"]);
    let err = urls_of(r#"{ "Urls": "pipe:/nope" }"#, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`Urls`") && err.contains("pipe:/nope"),
        "{err}"
    );
}

#[test]
fn a_production_file_binds_every_honoured_key() {
    let config = Config::from_file(&data("production.json")).unwrap();
    let dir = data("");

    let names: Vec<_> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["Grpc", "Https", "Pipe", "Store"],
        "sorted without case"
    );
    let [grpc, https, pipe, store] = &config.endpoints[..] else {
        unreachable!()
    };
    assert_eq!(pipe.url.to_string(), "http://pipe:/orders");
    assert_eq!(pipe.protocols, Some(Protocols::Http1));
    assert_eq!(grpc.protocols, Some(Protocols::Http2));
    assert_eq!(
        https.protocols,
        Some(Protocols::Http1AndHttp2),
        "HTTP/3 dropped"
    );
    assert_eq!(
        https.ssl_protocols,
        Some(SslProtocols {
            tls12: false,
            tls13: true
        })
    );
    assert_eq!(
        https.certificate,
        Some(CertificateConfig::new(dir.join("certs/orders.pfx")).password("s3cret"))
    );
    assert_eq!(store.certificate, None, "a certificate store is not read");
    assert_eq!(
        config.default_certificate,
        Some(
            CertificateConfig::new(dir.join("certs/default.pem"))
                .key_path(dir.join("certs/default.key"))
                .password("k3y")
        )
    );

    let o = &config.options;
    assert!(!o.add_server_header);
    let d = &o.endpoint_defaults;
    assert_eq!(d.protocols, Protocols::Http1AndHttp2);
    assert_eq!(d.ssl_protocols, SslProtocols::DEFAULT);
    assert_eq!(
        d.client_certificate_mode,
        ClientCertificateMode::NoCertificate
    );
    let l = &o.limits;
    assert_eq!(l.max_concurrent_connections, Some(100));
    assert_eq!(l.max_concurrent_upgraded_connections, Some(10));
    assert_eq!(l.max_request_body_size, Some(10_485_760));
    assert_eq!(l.max_request_buffer_size, Some(2_097_152));
    assert_eq!(l.max_response_buffer_size, None);
    assert_eq!(l.max_request_header_count, 64);
    assert_eq!(l.max_request_headers_total_size, 16_384);
    assert_eq!(l.max_request_line_size, 4096);
    assert_eq!(l.keep_alive_timeout, Duration::from_secs(60));
    assert_eq!(l.request_headers_timeout, Duration::from_secs(15));
    assert_eq!(
        l.min_request_body_data_rate,
        Some(MinDataRate::new(100, Duration::from_secs(10)))
    );
    assert_eq!(l.min_response_data_rate, None);
    let h = &l.http2;
    assert_eq!(h.max_streams_per_connection, 50);
    assert_eq!(h.max_frame_size, 32_768);
    assert_eq!(h.header_table_size, 8192);
    assert_eq!(h.max_request_header_field_size, 8192);
    assert_eq!(h.initial_connection_window_size, 262_144);
    assert_eq!(h.initial_stream_window_size, 131_072);
    assert_eq!(h.keep_alive_ping_delay, Some(Duration::from_secs(30)));
    assert_eq!(h.keep_alive_ping_timeout, Duration::from_secs(60));

    // Each key that cannot apply is listed once, with why.
    let listed = config.not_applied.join("\n");
    for key in [
        "Kestrel:AllowSynchronousIO (",
        "Kestrel:Limits:Http3:MaxRequestHeaderFieldSize (HTTP/3 is not served here)",
        "Kestrel:Endpoints:Https:Protocols (HTTP/3 is not served here",
        "Kestrel:Endpoints:Store:Certificate:Subject (certificate stores are not read here",
        "Kestrel:Endpoints:Store:Certificate:AllowInvalid (",
    ] {
        assert_eq!(listed.matches(key).count(), 1, "{key} in:\n{listed}");
    }
    assert!(!listed.contains("MyApp") && !listed.contains("ConnectionStrings"));
}

/// A JSON section named like the TOML reader's private namespace is an
/// application section too: ignored, never taken for an option.
#[test]
fn a_json_section_named_pipehttp_is_the_applications() {
    let config = Config::from_json_str(
        r#"{ "pipehttp": { "tls": { "cert": 1 }, "unknown": [1, 2],
                          "pipes": { "allow_users": ["x"] } },
             "Kestrel": { "Limits": { "MaxRequestBodySize": 10 } } }"#,
        "appsettings.json",
    )
    .expect("an application section is no error");
    assert_eq!(config.options.limits.max_request_body_size, Some(10));
    assert!(config.options.pipes.allow_users.is_empty());
}

#[test]
fn keys_are_matched_without_case() {
    let config = Config::from_json_str(
        r#"{ "kestrel": { "LIMITS": { "maxRequestBodySize": 10 },
             "endpoints": { "a": { "url": "http://pipe:/a", "protocols": "http2" } } } }"#,
        "appsettings.json",
    )
    .unwrap();
    assert_eq!(config.options.limits.max_request_body_size, Some(10));
    assert_eq!(config.endpoints[0].protocols, Some(Protocols::Http2));
    // One key written twice in two cases is .NET's duplicate-key error.
    assert_eq!(
        json_err(
            r#"{ "Kestrel": { "Limits": { "KeepAliveTimeout": 1, "keepalivetimeout": 2 } } }"#
        ),
        "appsettings.json: `Kestrel:Limits:keepalivetimeout` is written twice (keys are compared without case)"
    );
}

#[test]
fn the_environment_file_and_variables_layer_key_by_key() {
    let file = data("layered/appsettings.json");
    let summary = |config: &Config| {
        let urls: Vec<String> = config
            .endpoints
            .iter()
            .map(|e| format!("{}={}", e.name, e.url))
            .collect();
        let l = &config.options.limits;
        (
            urls,
            l.max_request_body_size,
            l.max_request_header_count,
            l.keep_alive_timeout.as_secs(),
        )
    };

    // Production by default: there is no appsettings.Production.json.
    let base = load(&file, &[]).unwrap();
    assert_eq!(
        summary(&base),
        (
            vec![
                "Pipe=http://pipe:/base-pipe".to_owned(),
                "Tcp=http://127.0.0.1:0".to_owned()
            ],
            Some(1000),
            50,
            40
        )
    );

    // Development replaces one URL and one limit; the rest stays.
    let dev = load(&file, &[("ASPNETCORE_ENVIRONMENT", "Development")]).unwrap();
    assert_eq!(
        summary(&dev),
        (
            vec![
                "Pipe=http://pipe:/dev-pipe".to_owned(),
                "Tcp=http://127.0.0.1:0".to_owned()
            ],
            Some(2000),
            50,
            40
        )
    );

    // ASPNETCORE_ENVIRONMENT wins over DOTNET_ENVIRONMENT, which names
    // the environment on its own.
    let both = [
        ("DOTNET_ENVIRONMENT", "Staging"),
        ("ASPNETCORE_ENVIRONMENT", "Development"),
    ];
    assert_eq!(summary(&load(&file, &both).unwrap()).1, Some(2000));
    let staging = load(&file, &[("DOTNET_ENVIRONMENT", "Staging")]).unwrap();
    assert_eq!(summary(&staging).1, Some(3000));

    // Variables go over both files, one key each; `__` is `:` and the
    // case is .NET's (none). An empty value is "no limit".
    let vars = [
        ("ASPNETCORE_ENVIRONMENT", "Development"),
        ("Kestrel__Endpoints__Tcp__Url", "http://pipe:/from-env"),
        ("KESTREL__LIMITS__MAXREQUESTHEADERCOUNT", "7"),
        ("Kestrel__Limits__MaxRequestBodySize", ""),
        ("Kestrel__Endpoints__Extra__Url", "http://pipe:/extra"),
        ("Kestrel__Endpoints__Extra__Protocols", "Http1"),
    ];
    let layered = load(&file, &vars).unwrap();
    assert_eq!(
        summary(&layered),
        (
            vec![
                "Extra=http://pipe:/extra".to_owned(),
                "Pipe=http://pipe:/dev-pipe".to_owned(),
                "Tcp=http://pipe:/from-env".to_owned()
            ],
            None,
            7,
            40
        )
    );
    assert_eq!(layered.endpoints[0].protocols, Some(Protocols::Http1));

    // A URL list replaces the endpoints, highest first.
    let urls = load(
        &file,
        &[
            ("DOTNET_URLS", "http://pipe:/dotnet"),
            (
                "ASPNETCORE_URLS",
                "http://pipe:/aspnetcore;http://pipe:/second",
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        summary(&urls).0,
        ["env-1=http://pipe:/aspnetcore", "env-2=http://pipe:/second"]
    );
}

#[test]
fn variables_apply_to_a_toml_file_too() {
    let (_dir, file) = temp_file(
        "pipehttp.toml",
        "[limits]\nmax_request_body_size = 5\nkeep_alive_timeout = 9\n",
    );
    let config = load(&file, &[("Kestrel__Limits__KeepAliveTimeout", "00:00:03")]).unwrap();
    assert_eq!(config.options.limits.max_request_body_size, Some(5));
    assert_eq!(
        config.options.limits.keep_alive_timeout,
        Duration::from_secs(3)
    );
}

#[test]
fn toml_and_json_read_through_the_same_schema() {
    let toml = Config::from_toml_str(
        r#"
add_server_header = false
[endpoints.pipe]
url = "https://pipe:/p"
protocols = "Http1"
ssl_protocols = ["Tls12"]
client_certificate_mode = "RequireCertificate"
certificate = { path = "/c/p.pfx", password = "pw" }
[endpoint_defaults]
protocols = "Http2"
[certificates.default]
path = "/c/cert.pem"
key_path = "/c/key.pem"
[limits]
max_request_body_size = "unlimited"
max_request_header_count = 20
request_headers_timeout = 2.5
min_request_body_data_rate = { bytes_per_second = 50, grace_period = 2 }
min_response_data_rate = "unlimited"
[limits.http2]
max_frame_size = 20000
keep_alive_ping_delay = 15
[pipes]
max_read_buffer_size = 4194304
current_user_only = false
mode = 0o660
"#,
        "app.toml",
    )
    .unwrap();
    let json = Config::from_json_str(
        r#"{ "Kestrel": {
  "AddServerHeader": "False",
  "Endpoints": { "pipe": { "Url": "https://pipe:/p", "Protocols": "Http1", "SslProtocols": ["Tls12"],
      "ClientCertificateMode": "RequireCertificate",
      "Certificate": { "Path": "/c/p.pfx", "Password": "pw" } } },
  "EndpointDefaults": { "Protocols": "Http2" },
  "Certificates": { "Default": { "Path": "/c/cert.pem", "KeyPath": "/c/key.pem" } },
  "Limits": { "MaxRequestBodySize": null, "MaxRequestHeaderCount": "20",
    "RequestHeadersTimeout": "00:00:02.5",
    "MinRequestBodyDataRate": { "BytesPerSecond": 50, "GracePeriod": "00:00:02" },
    "MinResponseDataRate": null,
    "Http2": { "MaxFrameSize": 20000, "KeepAlivePingDelay": 15 } },
  "NamedPipes": { "MaxReadBufferSize": 4194304, "CurrentUserOnly": false, "Mode": "0660" } } }"#,
        "appsettings.json",
    )
    .unwrap();
    assert_eq!(toml, json);
    assert_eq!(
        toml.options.limits.request_headers_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(toml.options.pipes.mode, Some(0o660));
}

#[test]
fn timespan_forms() {
    let timeout = |value: &str| {
        let json =
            format!(r#"{{ "Kestrel": {{ "Limits": {{ "RequestHeadersTimeout": {value} }} }} }}"#);
        Config::from_json_str(&json, "appsettings.json")
            .map(|c| c.options.limits.request_headers_timeout)
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
        r#""00:00:61""#,
        r#""soon""#,
        "-1",
        "0",
        r#""00:00:00""#,
        "null",
    ] {
        let err = timeout(bad).expect_err(bad);
        assert!(
            err.starts_with("appsettings.json: `Kestrel:Limits:RequestHeadersTimeout` is ")
                && err.contains("TimeSpan such as \"00:00:30\""),
            "{bad}: {err}"
        );
    }
    // .NET reads "30" as 30 days: refused, saying so.
    let err = timeout(r#""30""#).unwrap_err();
    assert!(err.contains("as days"), "{err}");
}

#[test]
fn a_key_that_is_not_kestrels_names_the_closest_real_one() {
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Limits": { "MaxRequestBodySise": 10 } } }"#),
        "appsettings.json: unknown key `Kestrel:Limits:MaxRequestBodySise`: not one of Kestrel's; \
         did you mean `Kestrel:Limits:MaxRequestBodySize`?"
    );
    assert_eq!(
        json_err(
            r#"{ "Kestrel": { "Endpoints": { "Web": { "Url": "http://pipe:/a", "Protocol": "Http1" } } } }"#
        ),
        "appsettings.json: unknown key `Kestrel:Endpoints:Web:Protocol`: not one of Kestrel's; \
         did you mean `Kestrel:Endpoints:Web:Protocols`?"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Endpoint": { "P": { "Url": "http://pipe:/a" } } } }"#),
        "appsettings.json: unknown key `Kestrel:Endpoint:P:Url`: not one of Kestrel's; \
         did you mean `Kestrel:Endpoints:P:Url`?"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Limit": { "KeepAliveTimeout": 10 } } }"#),
        "appsettings.json: unknown key `Kestrel:Limit:KeepAliveTimeout`: not one of Kestrel's; \
         did you mean `Kestrel:Limits:KeepAliveTimeout`?"
    );
    // From a variable: the variable is named, and the key as .NET writes it.
    let err = Config::load_with_env(None, [("Kestrel__Limits__MaxRequestBodySise", "1")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "Kestrel__Limits__MaxRequestBodySise: unknown key `Kestrel:Limits:MaxRequestBodySise`: \
         not one of Kestrel's; did you mean `Kestrel:Limits:MaxRequestBodySize`?"
    );
    // Outside Kestrel nothing is ours, so nothing is unknown.
    assert!(
        Config::from_json_str(
            r#"{ "Kestrl": { "Limits": 3 }, "MyApp": [1, 2] }"#,
            "a.json"
        )
        .is_ok()
    );
}

#[test]
fn toml_keys_are_matched_exactly() {
    assert_eq!(
        toml_err("[limits]\nmax-request-body-size = 10"),
        "app.toml: unknown key `limits.max-request-body-size`: did you mean `limits.max_request_body_size`?"
    );
    assert_eq!(
        toml_err("[pipes]\nbuffer = 1"),
        "app.toml: unknown key `pipes.buffer`: expected one of `pipes.max_read_buffer_size`, \
         `pipes.max_write_buffer_size`, `pipes.listener_queue_count`, `pipes.current_user_only`, `pipes.mode`, \
         `pipes.allow_users`, `pipes.allow_groups`, `pipes.pipe_sddl`"
    );
    for (text, key) in [
        ("surprise = 1", "`surprise`"),
        (
            "[endpoints.a]\nurl = \"http://pipe:/a\"\nport = 1",
            "`endpoints.a.port`",
        ),
        (
            "[certificates.default]\npath = \"c\"\nsubject = \"x\"",
            "`certificates.default.subject`",
        ),
    ] {
        let err = toml_err(text);
        assert!(
            err.starts_with(&format!("app.toml: unknown key {key}")),
            "{text}: {err}"
        );
    }
}

#[test]
fn bad_values_name_the_key_and_what_to_write() {
    assert_eq!(
        toml_err("[limits]\nmax_request_body_size = \"lots\""),
        "app.toml: `limits.max_request_body_size` is \"lots\": expected a number of bytes of at least 0, or \"unlimited\""
    );
    assert_eq!(
        toml_err("[limits]\nmax_concurrent_connections = 0"),
        "app.toml: `limits.max_concurrent_connections` is 0: expected a whole number of at least 1, or \"unlimited\""
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Limits": { "MaxRequestBodySize": "unlimited" } } }"#),
        "appsettings.json: `Kestrel:Limits:MaxRequestBodySize` is \"unlimited\": expected a number of bytes of at least 0, or null"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Limits": { "Http2": { "MaxFrameSize": 100 } } } }"#),
        "appsettings.json: `Kestrel:Limits:Http2:MaxFrameSize` is 100: expected a number of bytes from 16384 to 16777215"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "EndpointDefaults": { "Protocols": "Http4" } } }"#),
        "appsettings.json: `Kestrel:EndpointDefaults:Protocols` is \"Http4\": expected Http1, Http2 or Http1AndHttp2"
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
        json_err(r#"{ "Kestrel": { "Limits": 3 } }"#),
        "appsettings.json: `Kestrel:Limits` is 3: expected an object"
    );
    assert_eq!(
        toml_err("[endpoints.a]\ncertificate = { path = \"c\", key_path = \"k\" }"),
        "app.toml: `endpoints.a` has no `url`: add it"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Endpoints": { "E": { "Protocols": "Http1" } } } }"#),
        "appsettings.json: `Kestrel:Endpoints:E` has no `Url`: add it"
    );
    assert_eq!(
        json_err(r#"{ "Kestrel": { "Certificates": { "Default": { "KeyPath": "k" } } } }"#),
        "appsettings.json: `Kestrel:Certificates:Default` has no `Path`: add it"
    );
}

#[test]
fn options_that_contradict_each_other_are_refused_naming_the_source() {
    assert_refusal(
        &toml_err("[pipes]\nmode = \"0660\""),
        "app.toml: `pipes.mode`: mode 0660 needs current_user_only = false",
    );
    let err = json_err(r#"{ "Kestrel": { "Limits": { "MaxRequestBufferSize": 100 } } }"#);
    assert_eq!(
        err,
        "appsettings.json: `Kestrel:Limits:MaxRequestBufferSize`: max_request_buffer_size (100) \
         must be at least max_request_line_size (8192)"
    );
}

#[test]
fn bad_url_names_the_key_and_quotes_the_address_error() {
    assert_refusal(
        &toml_err("[endpoints.pipe]\nurl = \"http://pipe:/a:b\""),
        "app.toml: `endpoints.pipe.url`: invalid address 'http://pipe:/a:b': ",
    );
    assert_refusal(
        &json_err(r#"{ "Kestrel": { "Endpoints": { "E": { "Url": "ftp://x" } } } }"#),
        "appsettings.json: `Kestrel:Endpoints:E:Url`: invalid address 'ftp://x': the scheme 'ftp' is not http or https",
    );
}

#[test]
fn syntax_errors_name_the_line() {
    assert_refusal(
        &toml_err("[limits]\nmax_request_body_size = = 3\n"),
        "app.toml: line 2, column ",
    );
    assert_refusal(
        &json_err("{\n  \"Kestrel\": {,\n}"),
        "appsettings.json: line 2, column ",
    );
    // Beyond comments and trailing commas, JSON stays JSON, as in .NET.
    assert_refusal(
        &json_err("{ 'Kestrel': {} }"),
        "appsettings.json: line 1, column ",
    );
    assert_eq!(
        json_err("[]"),
        "appsettings.json: the file holds no JSON object: write { \"Kestrel\": { ... } }"
    );
}

#[test]
fn file_extension_picks_the_shape() {
    let (dir, toml) = temp_file("server.TOML", "[endpoints.a]\nurl = \"http://pipe:/a\"\n");
    let yaml = write_file(dir.path(), "server.yaml", "");
    assert_eq!(
        Config::from_file(&toml).unwrap().urls()[0].to_string(),
        "http://pipe:/a"
    );
    assert_eq!(
        Config::from_file(&yaml).unwrap_err().to_string(),
        format!(
            "{}: unknown config file type: name it *.toml, or *.json for the appsettings shape",
            yaml.display()
        )
    );
    let missing = dir.path().join("missing.json");
    let err = Config::load_with_env(Some(&missing), Vec::<(String, String)>::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn relative_certificate_paths_resolve_against_their_file() {
    // An absolute path in this OS's own form: `/abs` is not one on Windows.
    let absolute = std::env::temp_dir().join("abs").join("a.key");
    let (dir, file) = temp_file(
        "app.toml",
        format!(
            "[endpoints.a]\nurl = \"https://pipe:/a\"\n\
             certificate = {{ path = \"certs/a.pem\", key_path = {absolute:?} }}\n"
        ),
    );
    // A variable's relative path stays relative: .NET resolves it against
    // the content root, the working directory.
    let config = load(&file, &[("Kestrel__Certificates__Default__Path", "d.pfx")]).unwrap();
    assert_eq!(
        config.endpoints[0].certificate,
        Some(CertificateConfig::new(dir.path().join("certs/a.pem")).key_path(absolute))
    );
    assert_eq!(
        config.default_certificate,
        Some(CertificateConfig::new("d.pfx"))
    );
}

/// `Limits:MaxConcurrentUpgradedConnections` from a file, honoured by the
/// server: with 1, a second upgrade (Python's raw socket as the client)
/// gets 503 while the first lives, and the slot comes back when it closes.
#[cfg(unix)]
#[test]
fn max_concurrent_upgraded_connections_from_the_file_is_honoured() {
    use bytes::Bytes;
    use http::{Request, Response, StatusCode, header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let name = testkit::unique_name("upgrades");
    let config = Config::from_json_str(
        &format!(
            r#"{{ "Kestrel": {{ "Endpoints": {{ "Pipe": {{ "Url": "http://pipe:/{name}" }} }},
                  "Limits": {{ "MaxConcurrentUpgradedConnections": 1 }} }} }}"#
        ),
        "appsettings.json",
    )
    .unwrap();
    // Answers every request with 101 and echoes on the upgraded stream.
    let app = tower::service_fn(|mut req: Request<pipehttp::RequestBody>| async move {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = hyper_util::rt::TokioIo::new(upgraded);
                let mut buf = [0u8; 64];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut res = Response::new(http_body_util::Empty::<Bytes>::new());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        res.headers_mut()
            .insert(header::CONNECTION, "upgrade".parse().unwrap());
        res.headers_mut()
            .insert(header::UPGRADE, "echo".parse().unwrap());
        Ok::<_, std::convert::Infallible>(res)
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(pipehttp::Server::builder().config(&config).bind())
        .unwrap();
    let path = server.local_addresses()[0].path.clone().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(server.serve_with_shutdown(app, async {
        let _ = stopped.await;
    }));

    const CLIENT: &str = r#"
import socket, sys, time
path = sys.argv[1]
def upgrade():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(path)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return s, (data.split(b" ")[1].decode() if data else "closed")
first, a = upgrade()
first.sendall(b"ping")
echo = first.recv(4).decode()
second, b = upgrade()
second.close()
first.close()
# The slot comes back once the server drops the first upgraded connection.
for _ in range(400):
    third, c = upgrade()
    third.close()
    if c == "101":
        break
    time.sleep(0.05)
print(a, echo, b, c)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", CLIENT])
        .arg(&path)
        .output()
        .expect("this test needs python3 on PATH (CI installs it)");
    let _ = stop.send(());
    runtime.block_on(task).unwrap().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "101 ping 503 101",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
