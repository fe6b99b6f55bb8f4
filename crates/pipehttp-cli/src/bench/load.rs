//! The load itself: one thread per core, one task per connection.

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

/// A connection and the future that drives it.
pub(super) enum Conn {
    H1 {
        sender: http1::SendRequest<Full<Bytes>>,
        driver: H1Driver,
    },
    H2 {
        sender: http2::SendRequest<Full<Bytes>>,
        driver: H2Driver,
    },
}

impl Conn {
    pub(super) async fn open(plan: &Plan) -> Result<Self, Fail> {
        let io = plan
            .connector
            .connect()
            .await
            .map_err(|e| Fail::pipehttp(&e))?;
        let io = TokioIo::new(io);
        if plan.http2 {
            let (sender, driver) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| Fail::handshake(&e))?;
            Ok(Conn::H2 {
                sender,
                driver: Box::pin(driver),
            })
        } else {
            let (sender, driver) = http1::handshake(io)
                .await
                .map_err(|e| Fail::handshake(&e))?;
            Ok(Conn::H1 {
                sender,
                driver: Box::pin(driver),
            })
        }
    }

    /// Sends one request and reads the whole response, driving the
    /// connection meanwhile. Any error leaves the connection unusable.
    pub(super) async fn exchange(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, u64), Fail> {
        // The two senders are different types with the same methods.
        macro_rules! exchange {
            ($sender:expr, $driver:expr) => {{
                let exchange = async {
                    $sender.ready().await.map_err(|e| Fail::hyper(&e))?;
                    let res = $sender
                        .send_request(req)
                        .await
                        .map_err(|e| Fail::hyper(&e))?;
                    read_body(res).await
                };
                tokio::select! {
                    biased;
                    res = exchange => res,
                    res = $driver.as_mut() => Err(closed_early(res.err())),
                }
            }};
        }
        match self {
            Conn::H1 { sender, driver } => exchange!(sender, driver),
            Conn::H2 { sender, driver } => exchange!(sender, driver),
        }
    }
}

pub(super) fn closed_early(e: Option<hyper::Error>) -> Fail {
    match e {
        Some(e) => Fail::hyper(&e),
        None => Fail {
            kind: ErrorKind::Closed,
            message: "the server closed the connection before answering".into(),
        },
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

/// Counts completions and hands them to the shared progress counter in
/// batches, so threads do not fight over one cache line per request.
pub(super) struct Tally<'a> {
    pub(super) run: &'a Run,
    pub(super) pending: u64,
}

impl Tally<'_> {
    pub(super) fn one(&mut self) {
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
    let mut tally = Tally {
        run: &run,
        pending: 0,
    };
    let sent = plan.body.len() as u64;
    while run.ticket() {
        let started = Instant::now();
        let outcome = timed(plan.timeout, async {
            if conn.is_none() {
                conn = Some(Conn::open(&plan).await?);
                stats.borrow_mut().connections += 1;
            }
            let c = conn.as_mut().expect("opened above");
            c.exchange(plan.request()).await
        })
        .await;
        let elapsed = started.elapsed();
        if outcome.is_err() || plan.fresh {
            conn = None;
        }
        stats.borrow_mut().record(elapsed, outcome, sent);
        tally.one();
    }
}

/// One connection's worth of requests through [`pipehttp::Client`].
pub(super) async fn client_loop(plan: Arc<Plan>, run: Arc<Run>, stats: Shared, client: Rc<Client>) {
    let mut tally = Tally {
        run: &run,
        pending: 0,
    };
    let sent = plan.body.len() as u64;
    while run.ticket() {
        let started = Instant::now();
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
        stats.borrow_mut().record(started.elapsed(), outcome, sent);
        tally.one();
    }
}
