//! The load itself: one thread per core, one task per connection.

use futures_util::FutureExt;

use super::*;

/// One load thread: a single-threaded runtime running `tasks` connections.
pub(super) fn worker(
    plan: &Arc<Plan>,
    run: &Arc<Run>,
    tasks: usize,
    mut abort: watch::Receiver<bool>,
) -> std::io::Result<Stats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let stats: Shared = Rc::new(RefCell::new(Stats::new()));
    let client = plan.client.as_ref().map(|settings| {
        let mut builder = Client::builder().connect_timeout(settings.connect_timeout);
        if plan.http2 {
            builder = builder.http2_prior_knowledge();
        }
        if let Some(pem) = &settings.cacert {
            builder = builder.add_root_certificate_pem(pem.clone());
        }
        Rc::new(
            builder
                .danger_accept_invalid_certs(settings.insecure)
                .build(),
        )
    });
    local.block_on(&rt, async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (plan, run, stats) = (plan.clone(), run.clone(), stats.clone());
            match &client {
                Some(client) => set.spawn_local(client_loop(plan, run, stats, client.clone())),
                None => set.spawn_local(connection_loop(plan, run, stats)),
            };
        }
        tokio::select! {
            () = async { while set.join_next().await.is_some() {} } => {}
            _ = abort.wait_for(|a| *a) => set.abort_all(),
        }
    });
    drop(local);
    drop(rt);
    Ok(std::mem::replace(&mut *stats.borrow_mut(), Stats::new()))
}

pub(super) type Io = TokioIo<Connection>;
pub(super) type H1Driver = Pin<Box<http1::Connection<Io, Full<Bytes>>>>;
pub(super) type H2Driver = Pin<Box<http2::Connection<Io, Full<Bytes>, TokioExecutor>>>;

/// A connection: where requests go in, the future that drives it, and
/// whether the server said it closes it.
pub(super) struct Conn {
    sender: Sender,
    /// `None` once it finished. An HTTP/1 connection is over then; on
    /// HTTP/2 the streams already sent are still answered (hyper's
    /// connection task carries them), but no new one can start.
    driver: Option<Driver>,
    /// The server said it closes this connection: `Connection: close`, an
    /// HTTP/1.0 response without keep-alive, or an HTTP/2 GOAWAY. No new
    /// request may go on it (RFC 9112, section 9.6; RFC 9113, 6.8).
    closing: bool,
}

/// The two senders are different types with the same methods.
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        match self {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(req).await
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(req).await
            }
        }
    }
}

enum Driver {
    H1(H1Driver),
    H2(H2Driver),
}

impl std::future::Future for Driver {
    type Output = hyper::Result<()>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Driver::H1(driver) => driver.as_mut().poll(cx),
            Driver::H2(driver) => driver.as_mut().poll(cx),
        }
    }
}

/// A request that got no whole response, and whether it may go again on
/// a new connection.
pub(super) struct Unanswered {
    pub(super) fail: Fail,
    again: Again,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Again {
    /// The server may have acted on it, or was not closing in order.
    Never,
    /// It met the close of a connection the server had said it closes: a
    /// request that is idempotent may go again (RFC 9110, section 9.2.2).
    IfIdempotent,
    /// The server never saw it (it was not written), or said it did not
    /// process it (a GOAWAY above its stream, REFUSED_STREAM): any request
    /// may go again (RFC 9113, section 8.7).
    Always,
}

impl Unanswered {
    fn of_hyper(e: &hyper::Error) -> Self {
        let again = if e.is_canceled() || refused_by_http2(e) {
            Again::Always
        } else if matches!(ErrorKind::of_hyper(e), ErrorKind::Closed | ErrorKind::Body) {
            Again::IfIdempotent
        } else {
            Again::Never
        };
        Self {
            fail: Fail::hyper(e),
            again,
        }
    }
}

impl From<Fail> for Unanswered {
    fn from(fail: Fail) -> Self {
        let again = match fail.kind {
            ErrorKind::Closed | ErrorKind::Body => Again::IfIdempotent,
            _ => Again::Never,
        };
        Self { fail, again }
    }
}

/// An HTTP/2 stream the server did not process: above the last stream of
/// a graceful GOAWAY, or reset with REFUSED_STREAM.
fn refused_by_http2(e: &hyper::Error) -> bool {
    let Some(h2) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<h2::Error>()) else {
        return false;
    };
    h2.is_remote()
        && match h2.reason() {
            Some(h2::Reason::NO_ERROR) => h2.is_go_away(),
            Some(h2::Reason::REFUSED_STREAM) => h2.is_reset(),
            _ => false,
        }
}

/// Whether an HTTP/1 response says the connection closes after it.
fn announces_close<B>(res: &http::Response<B>) -> bool {
    let options = || crate::proxy::headers::connection_options(res.headers());
    options().any(|o| o.eq_ignore_ascii_case("close"))
        || (res.version() == http::Version::HTTP_10
            && !options().any(|o| o.eq_ignore_ascii_case("keep-alive")))
}

impl Conn {
    pub(super) async fn open(plan: &Plan) -> Result<Self, Fail> {
        let io = plan
            .connector
            .connect()
            .await
            .map_err(|e| Fail::pipehttp(&e))?;
        let io = TokioIo::new(io);
        let (sender, driver) = if plan.http2 {
            let (sender, driver) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| Fail::handshake(&e))?;
            (Sender::H2(sender), Driver::H2(Box::pin(driver)))
        } else {
            let (sender, driver) = http1::handshake(io)
                .await
                .map_err(|e| Fail::handshake(&e))?;
            (Sender::H1(sender), Driver::H1(Box::pin(driver)))
        };
        Ok(Conn {
            sender,
            driver: Some(driver),
            closing: false,
        })
    }

    /// Whether another request may go on this connection: the server has
    /// not said it closes it, and has not closed it meanwhile (an HTTP/2
    /// GOAWAY, or the end of an idle HTTP/1 connection, waits here unread
    /// until the connection is polled).
    pub(super) fn open_for_more(&mut self) -> bool {
        self.poll_driver_once();
        !self.closing && self.driver.is_some()
    }

    /// Polls the driver once, so that what the server already sent (a
    /// GOAWAY, an end of stream) is known. On HTTP/2 a clean end is a
    /// GOAWAY: the server closes the connection in order. On HTTP/1 hyper
    /// ends cleanly too when it could hand an error to the request, so only
    /// the response's own `Connection` header tells of an announced close.
    fn poll_driver_once(&mut self) {
        if let Some(driver) = &mut self.driver
            && let Some(ended) = driver.now_or_never()
        {
            self.closing |= ended.is_ok() && matches!(self.sender, Sender::H2(_));
            // Dropping it fails every request it still held unsent with
            // "canceled", which says they may go again.
            self.driver = None;
        }
    }

    /// Sends one request and reads the whole response, driving the
    /// connection meanwhile. After an error the connection is unusable.
    pub(super) async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, u64), Unanswered> {
        let http2 = matches!(self.sender, Sender::H2(_));
        let mut announced = false;
        let outcome = {
            let sender = &mut self.sender;
            let announced = &mut announced;
            let exchange = async move {
                let res = sender
                    .send(req)
                    .await
                    .map_err(|e| Unanswered::of_hyper(&e))?;
                *announced = !http2 && announces_close(&res);
                Ok::<_, Unanswered>(read_body(res).await?)
            };
            tokio::pin!(exchange);
            let Some(driver) = &mut self.driver else {
                return exchange.await;
            };
            let mut failed = None;
            let res = tokio::select! {
                biased;
                res = &mut exchange => Some(res),
                ended = driver => {
                    failed = ended.err();
                    None
                }
            };
            match res {
                Some(res) => res,
                None => {
                    // The connection ended. Whatever it still owes this
                    // request is delivered now (HTTP/1) or by hyper's
                    // connection task (HTTP/2), or the request learns that
                    // it never will be.
                    self.closing |= http2 && failed.is_none();
                    self.driver = None;
                    exchange.await.map_err(|unanswered| match failed {
                        // hyper's HTTP/1 connection hands its error to the
                        // request when it can: this one had nowhere to go,
                        // and the request only knows its connection is gone.
                        Some(e) if !http2 => Unanswered::of_hyper(&e),
                        _ => unanswered,
                    })
                }
            }
        };
        self.closing |= announced;
        if outcome.is_err() {
            // An HTTP/2 stream may fail before the driver has seen the
            // GOAWAY that failed it.
            self.poll_driver_once();
        }
        outcome
    }

    /// Whether a request that failed on this connection may go again on
    /// a new one.
    pub(super) fn may_send_again(&self, unanswered: &Unanswered, method: &Method) -> bool {
        match unanswered.again {
            Again::Always => true,
            Again::IfIdempotent => self.closing && method.is_idempotent(),
            Again::Never => false,
        }
    }
}

pub(super) async fn read_body(res: http::Response<Incoming>) -> Result<(StatusCode, u64), Fail> {
    let status = res.status();
    let mut body = res.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Fail {
            kind: ErrorKind::Body,
            message: error_chain(&e),
        })?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
        }
    }
    Ok((status, received))
}

/// Runs `fut` within the plan's per-request timeout, if it has one.
pub(super) async fn timed<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, Fail>>,
) -> Result<T, Fail> {
    match timeout {
        None => fut.await,
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
            Err(Fail {
                kind: ErrorKind::Timeout,
                message: format!("no whole response within {t:?}"),
            })
        }),
    }
}

/// Takes the run's tickets one at a time and records each request's
/// outcome; counts completions and hands them to the shared progress
/// counter in batches, so threads do not fight over one cache line per
/// request.
pub(super) struct Tally<'a> {
    run: &'a Run,
    stats: &'a Shared,
    sent: u64,
    pending: u64,
}

impl<'a> Tally<'a> {
    /// Tallies the requests of `plan` (each sends its whole body) into `stats`.
    pub(super) fn new(plan: &Plan, run: &'a Run, stats: &'a Shared) -> Self {
        Self {
            run,
            stats,
            sent: plan.body.len() as u64,
            pending: 0,
        }
    }

    /// The start of the next request, or `None` once the run's tickets are
    /// gone.
    pub(super) fn ticket(&self) -> Option<Instant> {
        self.run.ticket().then(Instant::now)
    }

    /// Records a request that took `elapsed` and ended in `outcome`.
    pub(super) fn record(&mut self, elapsed: Duration, outcome: Result<(StatusCode, u64), Fail>) {
        self.stats.borrow_mut().record(elapsed, outcome, self.sent);
        self.pending += 1;
        if self.pending == PROGRESS_BATCH {
            self.flush();
        }
    }

    pub(super) fn flush(&mut self) {
        self.run.done.fetch_add(self.pending, Ordering::Relaxed);
        self.pending = 0;
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One connection's requests, one after another, over bare connections.
pub(super) async fn connection_loop(plan: Arc<Plan>, run: Arc<Run>, stats: Shared) {
    let mut conn: Option<Conn> = None;
    let mut tally = Tally::new(&plan, &run, &stats);
    while let Some(started) = tally.ticket() {
        let outcome = timed(plan.timeout, send(&plan, &mut conn, &stats)).await;
        // Timed before a connection is dropped: closing is not the request's.
        let elapsed = started.elapsed();
        if outcome.is_err() || plan.fresh {
            conn = None;
        }
        tally.record(elapsed, outcome);
    }
}

/// One request on the task's connection, as a load tool that follows HTTP
/// does it: a connection the server closed, or said it closes, is replaced
/// before the request goes; a request the server left unanswered while
/// closing goes once more on a new connection when it may (see [`Again`]).
/// Both count as reconnects, not as failures; a new connection that fails
/// does count.
async fn send(
    plan: &Plan,
    conn: &mut Option<Conn>,
    stats: &Shared,
) -> Result<(StatusCode, u64), Fail> {
    let mut sent_again = false;
    loop {
        if conn.as_mut().is_some_and(|c| !c.open_for_more()) {
            *conn = None;
            stats.borrow_mut().reconnects += 1;
        }
        let c = match conn {
            Some(c) => c,
            None => {
                let c = Conn::open(plan).await?;
                stats.borrow_mut().connections += 1;
                conn.insert(c)
            }
        };
        match c.exchange(plan.request()).await {
            Ok(answer) => return Ok(answer),
            Err(unanswered) => {
                let again = !sent_again && c.may_send_again(&unanswered, &plan.method);
                *conn = None;
                if !again {
                    return Err(unanswered.fail);
                }
                sent_again = true;
                let mut stats = stats.borrow_mut();
                stats.reconnects += 1;
                stats.retries += 1;
            }
        }
    }
}

/// One connection's worth of requests through [`pipehttp::Client`].
pub(super) async fn client_loop(plan: Arc<Plan>, run: Arc<Run>, stats: Shared, client: Rc<Client>) {
    let mut tally = Tally::new(&plan, &run, &stats);
    while let Some(started) = tally.ticket() {
        let outcome = timed(plan.timeout, async {
            let mut req = client
                .request(plan.method.clone(), plan.target.clone())
                .body(plan.body.clone());
            for (name, value) in &plan.headers {
                if name != HOST {
                    req = req.header(name, value);
                }
            }
            let mut res = req.send().await.map_err(|e| Fail::pipehttp(&e))?;
            let status = res.status();
            let mut received = 0u64;
            while let Some(chunk) = res.chunk().await.map_err(|e| Fail {
                kind: ErrorKind::Body,
                message: format!("{e:#}"),
            })? {
                received += chunk.len() as u64;
            }
            Ok((status, received))
        })
        .await;
        tally.record(started.elapsed(), outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(version: http::Version, connection: &[&str]) -> http::Response<()> {
        let mut res = http::Response::new(());
        *res.version_mut() = version;
        for value in connection {
            res.headers_mut()
                .append(CONNECTION, HeaderValue::from_str(value).unwrap());
        }
        res
    }

    #[test]
    fn which_http1_responses_close_the_connection() {
        use http::Version;
        assert!(!announces_close(&response(Version::HTTP_11, &[])));
        assert!(!announces_close(&response(
            Version::HTTP_11,
            &["keep-alive"]
        )));
        assert!(announces_close(&response(Version::HTTP_11, &["close"])));
        assert!(announces_close(&response(
            Version::HTTP_11,
            &["Upgrade, Close"]
        )));
        assert!(announces_close(&response(
            Version::HTTP_11,
            &["foo", "close"]
        )));
        assert!(announces_close(&response(Version::HTTP_10, &[])));
        assert!(!announces_close(&response(
            Version::HTTP_10,
            &["Keep-Alive"]
        )));
        assert!(announces_close(&response(
            Version::HTTP_10,
            &["keep-alive, close"]
        )));
    }
}
