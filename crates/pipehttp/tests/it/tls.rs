//! HTTPS over pipes (and Unix sockets and TCP): certificates from PEM, ALPN
//! for HTTP/2, the client's trust settings, and start-up errors that name
//! the endpoint and the file.

use std::path::Path;

use crate::sample::SampleApp;
use pipehttp::tls::Certificate;
use pipehttp::{Client, Server};
use testkit::fixture_files::write_file;
use tokio::sync::oneshot;

/// A self-signed certificate for localhost: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let names = ["localhost", "127.0.0.1"].map(str::to_owned).to_vec();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

/// Serves the sample app over TLS on `url` until the guard drops.
async fn serve_tls(url: &str, cert: &str, key: &str) -> (oneshot::Sender<()>, String) {
    let server = Server::builder()
        .listen(url)
        .default_certificate(Certificate::from_pem(cert, key))
        .bind()
        .await
        .unwrap();
    let bound = server.local_addresses()[0].address.to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_with_shutdown(SampleApp::new(), async {
        let _ = stopped.await;
    }));
    (stop, bound)
}

fn trusting(ca: &str) -> pipehttp::client::ClientBuilder {
    Client::builder().add_root_certificate_pem(ca.as_bytes().to_vec())
}

/// GETs `target` with `client`: the answer's text, or the error.
async fn text_of(client: Client, target: &str) -> pipehttp::Result<String> {
    client.get(target).send().await?.text().await
}

/// The client offers h2 and http/1.1 by ALPN and the server picks h2; a
/// client that asks for HTTP/2 only gets it too. (HTTP/1.1 over TLS is
/// checked with curl in the CLI's tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pipe_negotiates_http2_by_alpn() {
    let (cert, key) = self_signed();
    let url = format!("https://pipe:/{}", testkit::unique_name("tls"));
    let (_stop, _) = serve_tls(&url, &cert, &key).await;
    let target = format!("{url}:/test");

    for client in [
        trusting(&cert).build(),
        trusting(&cert).http2_prior_knowledge().build(),
    ] {
        let res = client.get(&target).send().await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2, "ALPN did not pick h2");
        assert_eq!(res.text().await.unwrap(), "Hello world!");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_over_tcp_checks_the_name_in_the_url() {
    let (cert, key) = self_signed();
    let (_stop, bound) = serve_tls("https://127.0.0.1:0", &cert, &key).await;
    let text = text_of(trusting(&cert).build(), &format!("{bound}/test")).await;
    assert_eq!(text.unwrap(), "Hello world!");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_over_a_unix_socket() {
    let (cert, key) = self_signed();
    let dir = testkit::tempdir().unwrap();
    let url = format!("https://unix:{}", dir.path().join("tls.sock").display());
    let (_stop, _) = serve_tls(&url, &cert, &key).await;
    let text = text_of(trusting(&cert).build(), &format!("{url}:/test")).await;
    assert_eq!(text.unwrap(), "Hello world!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_naming_the_pipe() {
    let (cert, key) = self_signed();
    let (other_ca, _) = self_signed();
    let name = testkit::unique_name("tls-untrusted");
    let url = format!("https://pipe:/{name}");
    let (_stop, _) = serve_tls(&url, &cert, &key).await;

    let target = format!("{url}:/test");
    let err = text_of(trusting(&other_ca).build(), &target)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(err.is_tls(), "{text}");
    assert!(text.contains(&format!("pipe '{name}'")), "{text}");
    assert!(text.contains("certificate"), "{text}");

    let insecure = Client::builder().danger_accept_invalid_certs(true).build();
    assert_eq!(text_of(insecure, &target).await.unwrap(), "Hello world!");
}

/// Binds an https pipe endpoint with `certificate` and returns the error.
async fn bind_error(certificate: Option<Certificate>) -> (String, String) {
    let url = format!("https://pipe:/{}", testkit::unique_name("tls-bad"));
    let mut builder = Server::builder().listen(url.as_str());
    if let Some(certificate) = certificate {
        builder = builder.default_certificate(certificate);
    }
    let err = builder.bind().await.unwrap_err();
    (url, err.to_string())
}

#[tokio::test]
async fn start_up_errors_name_the_endpoint_and_the_file() {
    let dir = testkit::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    let write = |name: &str, text: &str| write_file(dir.path(), name, text);
    let cert_file = write("cert.pem", &cert);
    let key_file = write("key.pem", &key);
    let other_key_file = write("other-key.pem", &other_key);
    let garbage = write("garbage.pem", "not a certificate");
    let missing = dir.path().join("missing.pem");
    let shown = |p: &Path| p.display().to_string();

    let (url, text) = bind_error(None).await;
    assert!(
        text.starts_with(&format!("{url} needs a certificate")),
        "{text}"
    );

    let (url, text) = bind_error(Some(Certificate::from_pem_files(&missing, &key_file))).await;
    assert!(
        text.starts_with(&url) && text.contains(&shown(&missing)),
        "{text}"
    );

    let (url, text) = bind_error(Some(Certificate::from_pem_files(&garbage, &key_file))).await;
    assert!(
        text.starts_with(&url) && text.contains(&shown(&garbage)),
        "{text}"
    );

    let (url, text) = bind_error(Some(Certificate::from_pem_files(&cert_file, &garbage))).await;
    assert!(
        text.starts_with(&url) && text.contains(&shown(&garbage)),
        "{text}"
    );

    let mismatched = Certificate::from_pem_files(&cert_file, &other_key_file);
    let (url, text) = bind_error(Some(mismatched)).await;
    assert!(
        text.starts_with(&url)
            && text.contains("does not fit")
            && text.contains(&shown(&other_key_file))
            && text.contains(&shown(&cert_file)),
        "{text}"
    );
}
