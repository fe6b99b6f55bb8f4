//! Takeover through the library on any OS (on Windows, new pipe instances
//! join the name): requests running across the handover all succeed, and
//! the old server stops by itself once it has drained.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::sample::SampleApp;
use pipehttp::{Client, Server};

/// Serves the sample app on `url` until told to stop or asked to hand over.
async fn serve(url: &str, takeover: bool) -> tokio::task::JoinHandle<pipehttp::Result<()>> {
    let server = Server::builder()
        .listen(url)
        .takeover(takeover)
        .bind()
        .await
        .unwrap();
    tokio::spawn(server.serve_with_shutdown(SampleApp::new(), std::future::pending()))
}

/// Waits until `n` more requests have been served, so each takeover lands
/// while requests are running.
async fn more_served(served: &AtomicUsize, n: usize) {
    let target = served.load(Ordering::Relaxed) + n;
    let deadline = tokio::time::Instant::now() + testkit::READY_TIMEOUT;
    while served.load(Ordering::Relaxed) < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests stopped being served"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_across_two_takeovers_all_succeed_and_old_servers_stop() {
    let url = format!("http://pipe:/{}", testkit::unique_name("lib-takeover"));
    let target = format!("{url}:/test");
    let first = serve(&url, false).await;

    let client = Client::new();
    let running = Arc::new(AtomicBool::new(true));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, target) = (client.clone(), target.clone());
            let (running, served, failed) = (running.clone(), served.clone(), failed.clone());
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let answer = async { client.get(&target).send().await?.text().await };
                    match answer.await {
                        Ok(text) if text == "Hello world!" => {
                            served.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let mut old = first;
    for _ in 0..2 {
        more_served(&served, 200).await;
        let new = serve(&url, true).await;
        tokio::time::timeout(Duration::from_secs(30), old)
            .await
            .expect("the old server never finished draining")
            .unwrap()
            .unwrap();
        old = new;
    }
    more_served(&served, 200).await;
    running.store(false, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    old.abort();
    println!(
        "requests={} failed={} takeovers=2",
        served.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed across takeovers"
    );
}
