//! The server's options: one schema from which the option structs, their
//! defaults, the [`ServerBuilder`](crate::ServerBuilder) setters and the
//! table [`OPTIONS`] come. Config files, environment variables and the
//! command line read options through that table, so each option's name,
//! default, bounds and documentation are written once, in the
//! `options!` invocation below.
//!
//! Adding an option is one row there: the field appears in its struct with
//! its default, `ServerBuilder` gets a setter of the same name, config
//! files get a key (`[limits] NAME` in TOML, `Kestrel:Limits:KestrelName`
//! in JSON and `Kestrel__Limits__KestrelName` in the environment) and the
//! `pipehttp` command gets `--NAME` in kebab-case, with the default in its
//! help. The server then has to use the field.
//!
//! ```
//! let info = pipehttp::options::find("max_request_body_size").unwrap();
//! assert_eq!(info.kestrel_path(), "Kestrel:Limits:MaxRequestBodySize");
//! assert_eq!(info.toml_path(), "limits.max_request_body_size");
//! assert_eq!(info.flag(), "max-request-body-size");
//! assert_eq!(info.default_text(), "30000000");
//! ```

use std::fmt;
use std::time::Duration;

/// Declares the option structs and everything made from their rows.
///
/// Each struct names where it sits in [`ServerOptions`] (`at [limits]`), its
/// TOML table and its section under `Kestrel`. Each row gives the option's
/// name (the builder method and, in kebab-case, the CLI flag), the field,
/// its type and default, its Kestrel key, its [`Kind`] (how values are
/// read and which are allowed), and optionally a default text for help
/// where the default depends on the machine. `section` rows nest a struct.
macro_rules! options {
    (@text) => { None };
    (@text $text:literal) => { Some($text) };
    ($(
        $(#[doc = $sdoc:literal])*
        struct $S:ident at [$($acc:ident).*] toml $toml:literal kestrel $kestrel:literal {
            $(
                $(#[doc = $doc:literal])*
                $name:ident => $f:ident: $T:ty = $default:expr, $kkey:literal, $kind:expr
                    $(, default_text $dtext:literal)? $(, flag $flag:literal)?;
            )*
        }
        $(sections { $($nf:ident: $NT:ty, $ndoc:literal;)* })?
    )*) => {
        $(
            $(#[doc = $sdoc])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            #[non_exhaustive]
            pub struct $S {
                $( $(#[doc = $doc])* pub $f: $T, )*
                $($( #[doc = $ndoc] pub $nf: $NT, )*)?
            }

            impl Default for $S {
                fn default() -> Self {
                    Self {
                        $( $f: $default, )*
                        $($( $nf: <$NT>::default(), )*)?
                    }
                }
            }

            impl Section for $S {
                fn of(o: &ServerOptions) -> &Self {
                    &(*o) $(.$acc)*
                }
                fn of_mut(o: &mut ServerOptions) -> &mut Self {
                    &mut (*o) $(.$acc)*
                }
            }
        )*

        /// Every option, in declaration order.
        pub static OPTIONS: &[OptionInfo] = &[
            $($(
                OptionInfo {
                    name: stringify!($name),
                    toml_section: $toml,
                    toml_key: stringify!($f),
                    kestrel_section: $kestrel,
                    kestrel_key: $kkey,
                    kind: $kind,
                    doc: &[$($doc),*],
                    fixed_default_text: options!(@text $($dtext)?),
                    flag_override: options!(@text $($flag)?),
                    get: |o| OptionValue::to_value(&<$S as Section>::of(o).$f),
                    set: |o, v| <$S as Section>::of_mut(o).$f = OptionValue::from_value(v),
                },
            )*)*
        ];

        impl crate::server::ServerBuilder {
            $($(
                $(#[doc = $doc])*
                pub fn $name(mut self, value: $T) -> Self {
                    <$S as Section>::of_mut(&mut self.options).$f = value;
                    self
                }
            )*)*
        }
    };
}

/// Where a struct of options sits in [`ServerOptions`].
trait Section {
    fn of(o: &ServerOptions) -> &Self;
    fn of_mut(o: &mut ServerOptions) -> &mut Self;
}

const INT_MAX: u64 = i32::MAX as u64;

options! {
    /// Everything a server can be told besides its endpoints: Kestrel's
    /// `KestrelServerOptions` (the `Kestrel` section), with the HTTP
    /// [`Limits`], the transport's [`PipeOptions`] and the
    /// [`EndpointDefaults`].
    ///
    /// ```
    /// let options = pipehttp::ServerOptions::default();
    /// assert!(options.add_server_header);
    /// assert_eq!(options.limits.http2.max_streams_per_connection, 100);
    /// ```
    struct ServerOptions at [] toml "" kestrel "" {
        /// Add `Server: pipehttp` to responses that carry no `Server`
        /// header, as Kestrel adds `Server: Kestrel`.
        add_server_header => add_server_header: bool = true, "AddServerHeader", Kind::BOOL;
        /// How long requests in flight may take to finish once a stop is
        /// asked; connections still open then are closed.
        shutdown_timeout => shutdown_timeout: Duration = crate::server::DEFAULT_SHUTDOWN_TIMEOUT, "", Kind::seconds();
    }
    sections {
        limits: Limits, "HTTP limits.";
        pipes: PipeOptions, "Transport options for pipes and sockets.";
        endpoint_defaults: EndpointDefaults, "What endpoints use unless they say otherwise.";
    }

    /// HTTP limits, Kestrel's `KestrelServerLimits`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let limits = pipehttp::Limits::default();
    /// assert_eq!(limits.max_request_body_size, Some(30_000_000));
    /// assert_eq!(limits.request_headers_timeout, Duration::from_secs(30));
    /// ```
    struct Limits at [limits] toml "limits" kestrel "Limits" {
        /// Largest request body in bytes; `None` for no limit. A request
        /// that declares a larger `Content-Length` gets 413 before its
        /// handler runs; a streamed body that grows past it fails the body
        /// read and the response becomes 413.
        max_request_body_size => max_request_body_size: Option<u64> = Some(30_000_000),
            "MaxRequestBodySize", Kind::bytes(0, u64::MAX).or_unlimited();
        /// Largest request head (request line and headers) in bytes: 431
        /// past it. Also the HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`.
        max_request_headers_total_size => max_request_headers_total_size: usize = 32 * 1024,
            "MaxRequestHeadersTotalSize", Kind::bytes(1, INT_MAX);
        /// Most header fields in a request: 431 past it.
        max_request_header_count => max_request_header_count: usize = 100,
            "MaxRequestHeaderCount", Kind::count(1, INT_MAX);
        /// Longest HTTP/1 request line (method, target and version) in
        /// bytes: 414 past it.
        max_request_line_size => max_request_line_size: usize = 8 * 1024,
            "MaxRequestLineSize", Kind::bytes(1, INT_MAX);
        /// Bytes of a connection read and not yet consumed before reading
        /// pauses, on top of the transport's `max_read_buffer_size` (the
        /// smaller one applies); `None` leaves it to the transport.
        max_request_buffer_size => max_request_buffer_size: Option<u64> = Some(1024 * 1024),
            "MaxRequestBufferSize", Kind::bytes(1, u64::MAX).or_unlimited();
        /// Bytes of a response queued before the handler is held back, on
        /// top of the transport's `max_write_buffer_size` (the smaller one
        /// applies); `None` leaves it to the transport.
        max_response_buffer_size => max_response_buffer_size: Option<u64> = Some(64 * 1024),
            "MaxResponseBufferSize", Kind::bytes(0, u64::MAX).or_unlimited();
        /// How long a client may take to send a request head, from its
        /// first byte; a slower client is disconnected.
        request_headers_timeout => request_headers_timeout: Duration = Duration::from_secs(30),
            "RequestHeadersTimeout", Kind::seconds();
        /// How long a connection may stay idle, with no request in flight,
        /// before the server closes it.
        keep_alive_timeout => keep_alive_timeout: Duration = Duration::from_secs(130),
            "KeepAliveTimeout", Kind::seconds();
        /// Most connections served at once; `None` for no limit. Past it
        /// one more connection is accepted into a waiting room, where its
        /// requests wait for a slot (a successor's takeover request does
        /// not wait); then the server stops accepting, so further clients
        /// wait in the listen queue (Unix) or for a free pipe instance
        /// (Windows) until one closes.
        max_concurrent_connections => max_concurrent_connections: Option<usize> = None,
            "MaxConcurrentConnections", Kind::count(1, u64::MAX).or_unlimited();
        /// Most connections upgraded (101 Switching Protocols, such as
        /// WebSockets) at once; `None` for no limit. An upgrade request past
        /// it gets 503 without reaching the handler. Upgraded connections
        /// do not count against `max_concurrent_connections`.
        max_concurrent_upgraded_connections => max_concurrent_upgraded_connections: Option<usize> = None,
            "MaxConcurrentUpgradedConnections", Kind::count(0, u64::MAX).or_unlimited();
        /// The slowest a client may send a request body, after a grace
        /// period, per HTTP/1 request and per HTTP/2 stream; `None` for no
        /// minimum. Kestrel's default: 240 bytes/s after 5 s.
        min_request_body_data_rate => min_request_body_data_rate: Option<MinDataRate> = Some(MinDataRate::KESTREL_DEFAULT),
            "MinRequestBodyDataRate", Kind::RATE;
        /// The slowest a client may read a response, after a grace period;
        /// `None` for no minimum. Kestrel's default: 240 bytes/s after 5 s.
        min_response_data_rate => min_response_data_rate: Option<MinDataRate> = Some(MinDataRate::KESTREL_DEFAULT),
            "MinResponseDataRate", Kind::RATE;
    }
    sections {
        http2: Http2Limits, "HTTP/2 limits.";
    }

    /// HTTP/2 limits, Kestrel's `Http2Limits`: the settings the server
    /// announces to HTTP/2 clients and its keep-alive pings.
    ///
    /// ```
    /// let http2 = pipehttp::options::Http2Limits::default();
    /// assert_eq!(http2.max_frame_size, 16_384);
    /// assert_eq!(http2.keep_alive_ping_delay, None);
    /// ```
    struct Http2Limits at [limits.http2] toml "limits.http2" kestrel "Limits:Http2" {
        /// Most streams (requests) open at once on one connection.
        http2_max_streams_per_connection => max_streams_per_connection: u32 = 100,
            "MaxStreamsPerConnection", Kind::count(1, INT_MAX);
        /// Size of the HPACK table the server's decoder keeps for a
        /// client's header compression (SETTINGS_HEADER_TABLE_SIZE), in
        /// bytes.
        http2_header_table_size => header_table_size: u32 = 4096,
            "HeaderTableSize", Kind::bytes(0, INT_MAX);
        /// Largest frame payload the server accepts, in bytes.
        http2_max_frame_size => max_frame_size: u32 = 16_384,
            "MaxFrameSize", Kind::bytes(16_384, 16_777_215);
        /// Largest single request header field (name and value), in bytes,
        /// after HPACK decoding: 431 past it.
        http2_max_request_header_field_size => max_request_header_field_size: usize = 32 * 1024,
            "MaxRequestHeaderFieldSize", Kind::bytes(1, INT_MAX);
        /// Request body bytes the server buffers across all streams of a
        /// connection (its connection flow-control window); at most the
        /// read buffer size.
        http2_initial_connection_window_size => initial_connection_window_size: u32 = 1024 * 1024,
            "InitialConnectionWindowSize", Kind::bytes(65_535, INT_MAX);
        /// Request body bytes the server buffers per stream (its stream
        /// flow-control window); at most the read buffer size.
        http2_initial_stream_window_size => initial_stream_window_size: u32 = 768 * 1024,
            "InitialStreamWindowSize", Kind::bytes(65_535, INT_MAX);
        /// After how long without a frame from the client the server sends
        /// a keep-alive ping; `None`: never.
        http2_keep_alive_ping_delay => keep_alive_ping_delay: Option<Duration> = None,
            "KeepAlivePingDelay", Kind::seconds().at_least_one_second().or_unlimited(),
            default_text "unlimited (no pings)";
        /// How long a ping may go unanswered before the connection is closed.
        http2_keep_alive_ping_timeout => keep_alive_ping_timeout: Duration = Duration::from_secs(20),
            "KeepAlivePingTimeout", Kind::seconds();
    }

    /// Transport options for pipes and sockets, Kestrel's
    /// `NamedPipeTransportOptions` (`Kestrel:NamedPipes` in JSON, `[pipes]`
    /// in TOML).
    ///
    /// How the buffer sizes map onto the machinery underneath (with the
    /// smaller of these and [`Limits::max_request_buffer_size`] /
    /// [`Limits::max_response_buffer_size`]):
    /// - `max_read_buffer_size`: on Windows the pipe's in-buffer size; for
    ///   HTTP/2 the most the flow-control windows may be. HTTP/1 reads a
    ///   body only as fast as the handler takes it, holding at most one
    ///   buffer of 128 KiB (or `max_request_headers_total_size`, if
    ///   larger) ahead.
    /// - `max_write_buffer_size`: on Windows the pipe's out-buffer size;
    ///   for HTTP/2 the per-stream send buffer, past which the handler's
    ///   body is not polled. HTTP/1 stops polling a response body once
    ///   that same buffer's worth is queued.
    ///
    /// Unix and TCP kernel socket buffers are left to the kernel, which
    /// sizes them better than a fixed number does.
    ///
    /// ```
    /// let pipes = pipehttp::PipeOptions::default();
    /// assert!(pipes.current_user_only);
    /// assert_eq!(pipes.max_read_buffer_size, 1024 * 1024);
    /// ```
    struct PipeOptions at [pipes] toml "pipes" kestrel "NamedPipes" {
        /// Bytes read from a connection and not yet consumed before reading pauses.
        max_read_buffer_size => max_read_buffer_size: usize = 1024 * 1024,
            "MaxReadBufferSize", Kind::bytes(1, u64::MAX);
        /// Bytes queued for a connection before the handler is held back.
        max_write_buffer_size => max_write_buffer_size: usize = 64 * 1024,
            "MaxWriteBufferSize", Kind::bytes(1, u64::MAX);
        /// Windows: pipe instances waiting for clients at once.
        listener_queue_count => listener_queue_count: usize = default_listener_queue_count(),
            "ListenerQueueCount", Kind::count(1, INT_MAX), default_text "min(cores, 16)";
        /// Only the server's own user may connect. Unix: socket mode 0600
        /// and a peer-credential check on every connection; Windows: a DACL
        /// that grants the current user alone, on every pipe instance.
        current_user_only => current_user_only: bool = true, "CurrentUserOnly", Kind::BOOL;
        /// Unix: the socket file's mode when `current_user_only` is off.
        /// The default, 0o666, lets anyone connect, as on a default Windows
        /// pipe; with `current_user_only` on, only 0o600 is allowed.
        mode => mode: Option<u32> = None, "Mode", Kind::MODE,
            default_text "0666 when current_user_only is off";
        /// Users admitted beside the server's own, with `current_user_only`
        /// on: names or numeric uids on Unix, account names or SIDs on
        /// Windows. Unix: the socket becomes 0666 and the peer check admits
        /// them; Windows: each gets read and write access in every
        /// instance's DACL. The command line takes one per `--allow-user`.
        allow_users => allow_users: Vec<String> = Vec::new(), "AllowUsers", Kind::NAMES,
            flag "allow-user";
        /// Groups whose members are admitted beside the server's own user,
        /// with `current_user_only` on: names or numeric gids on Unix,
        /// account names or SIDs on Windows. Unix: with one group (and no
        /// `allow_users`) the socket file is given to that group with mode
        /// 0660, as dockerd's `root:docker` socket; with more, it is 0666.
        /// Either way a peer is admitted when its group or one of its
        /// supplementary groups is allowed. Windows: as `allow_users`. The
        /// command line takes one per `--allow-group`.
        allow_groups => allow_groups: Vec<String> = Vec::new(), "AllowGroups", Kind::NAMES,
            flag "allow-group";
        /// Windows: the exact security descriptor of every pipe instance,
        /// in SDDL, as Kestrel's `PipeSecurity`; it replaces the descriptor
        /// that `current_user_only` and the allow lists would make. It must
        /// grant the server's own user the right to create instances (`GA`
        /// or `GW`), such as `"D:P(A;;GA;;;OW)(A;;GRGW;;;BU)"`. Unix sockets
        /// have no such descriptor: binding one with it set fails.
        pipe_sddl => pipe_sddl: Option<String> = None, "PipeSddl", Kind::TEXT,
            default_text "none";
    }

    /// What endpoints use unless they say otherwise, Kestrel's
    /// `EndpointDefaults`.
    struct EndpointDefaults at [endpoint_defaults] toml "endpoint_defaults" kestrel "EndpointDefaults" {
        /// The HTTP versions served: HTTP/1.1, HTTP/2 or both.
        protocols => protocols: Protocols = Protocols::Http1AndHttp2, "Protocols", Kind::PROTOCOLS;
        /// The TLS versions an https endpoint accepts.
        ssl_protocols => ssl_protocols: SslProtocols = SslProtocols::DEFAULT, "SslProtocols", Kind::SSL_PROTOCOLS;
        /// Whether an https endpoint asks clients for a certificate.
        client_certificate_mode => client_certificate_mode: ClientCertificateMode = ClientCertificateMode::NoCertificate,
            "ClientCertificateMode", Kind::CLIENT_CERTIFICATE_MODE;
    }
}

impl ServerOptions {
    /// Checks every option against its bounds and the options against each
    /// other. The builder calls it at bind, the config loader after
    /// loading; the message names the option by its schema name.
    ///
    /// ```
    /// let mut options = pipehttp::ServerOptions::default();
    /// options.limits.http2.max_frame_size = 100;
    /// assert_eq!(
    ///     options.validate().unwrap_err(),
    ///     "http2_max_frame_size is 100: expected a number of bytes from 16384 to 16777215",
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        for info in OPTIONS {
            let value = (info.get)(self);
            if !info.kind.allows(&value) {
                return Err(format!(
                    "{} is {}: expected {}",
                    info.name,
                    info.kind.show(&value),
                    info.kind.expected(Syntax::Flag)
                ));
            }
        }
        self.pipes.check_access()?;
        let limits = &self.limits;
        if let Some(buffer) = limits.max_request_buffer_size {
            for (name, size) in [
                ("max_request_line_size", limits.max_request_line_size),
                (
                    "max_request_headers_total_size",
                    limits.max_request_headers_total_size,
                ),
            ] {
                if buffer < size as u64 {
                    return Err(format!(
                        "max_request_buffer_size ({buffer}) must be at least {name} ({size})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Bytes read from a connection and not yet consumed before reading
    /// pauses: the smaller of the transport's and the HTTP limit.
    #[must_use]
    pub fn read_buffer_size(&self) -> usize {
        smaller(
            self.pipes.max_read_buffer_size,
            self.limits.max_request_buffer_size,
        )
    }

    /// Bytes queued for a connection before the handler is held back: the
    /// smaller of the transport's and the HTTP limit (at least 1).
    #[must_use]
    pub fn write_buffer_size(&self) -> usize {
        smaller(
            self.pipes.max_write_buffer_size,
            self.limits.max_response_buffer_size,
        )
        .max(1)
    }
}

fn smaller(transport: usize, limit: Option<u64>) -> usize {
    limit.map_or(transport, |limit| {
        transport.min(usize::try_from(limit).unwrap_or(usize::MAX))
    })
}

impl PipeOptions {
    /// Checks the options against their bounds and each other.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let options = ServerOptions {
            pipes: self.clone(),
            ..ServerOptions::default()
        };
        options.validate()
    }

    /// The socket file mode to apply on Unix, or an error message when the
    /// options contradict each other.
    pub(crate) fn socket_mode(&self) -> Result<u32, String> {
        if !self.current_user_only {
            return match self.mode {
                Some(mode) if mode > 0o777 => Err(format!(
                    "mode {mode:o} is not a permission mode (0000 to 0777)"
                )),
                mode => Ok(mode.unwrap_or(0o666)),
            };
        }
        // One group can be given the file; anything wider needs the file
        // open to all and the peer check to sort the callers.
        let mode = match (self.allow_groups.len(), self.allow_users.is_empty()) {
            (0, true) => 0o600,
            (1, true) => 0o660,
            _ => 0o666,
        };
        match self.mode {
            None => Ok(mode),
            Some(asked) if asked == mode => Ok(mode),
            Some(asked) if mode == 0o600 => Err(format!(
                "mode {asked:04o} needs current_user_only = false (with it on, the socket is 0600)"
            )),
            Some(asked) => Err(format!(
                "mode {asked:04o} contradicts allow_users and allow_groups, which make the socket {mode:04o}: leave mode unset"
            )),
        }
    }

    /// The one group the Unix socket file is given to, if any.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn socket_group(&self) -> Option<&str> {
        match (self.allow_groups.as_slice(), self.allow_users.is_empty()) {
            ([group], true) if self.current_user_only => Some(group),
            _ => None,
        }
    }

    /// How the access options fit together: the allow lists widen
    /// `current_user_only`, and a descriptor replaces them.
    fn check_access(&self) -> Result<(), String> {
        let widened = !self.allow_users.is_empty() || !self.allow_groups.is_empty();
        if widened && !self.current_user_only {
            return Err(
                "allow_users and allow_groups admit callers beside the current user and need current_user_only = true; with it off, anyone who can open the pipe may connect already"
                    .into(),
            );
        }
        for (list, names) in [
            ("allow_users", &self.allow_users),
            ("allow_groups", &self.allow_groups),
        ] {
            if let Some(bad) = names
                .iter()
                .find(|n| n.trim().is_empty() || n.contains('\0'))
            {
                return Err(format!(
                    "{list} holds {bad:?}, which is no user or group name: give a name or a numeric id"
                ));
            }
        }
        if self.pipe_sddl.is_some() && widened {
            return Err(
                "pipe_sddl sets the whole descriptor: grant those accounts in it instead of in allow_users and allow_groups"
                    .into(),
            );
        }
        self.socket_mode().map(drop)
    }
}

fn default_listener_queue_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(16)
}

/// A minimum data rate, Kestrel's `MinDataRate`: after `grace_period`, a
/// transfer slower than `bytes_per_second` on average is cut off.
///
/// ```
/// let rate = pipehttp::options::MinDataRate::new(240, std::time::Duration::from_secs(5));
/// assert_eq!(rate.to_string(), "240:5");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinDataRate {
    /// The slowest average rate allowed once the grace period is over.
    pub bytes_per_second: u64,
    /// How long a transfer may go slower at first (at least 1 s).
    pub grace_period: Duration,
}

impl MinDataRate {
    /// Kestrel's default for both rates: 240 bytes/s after 5 s.
    pub const KESTREL_DEFAULT: MinDataRate = MinDataRate {
        bytes_per_second: 240,
        grace_period: Duration::from_secs(5),
    };

    /// A rate and its grace period.
    #[must_use]
    pub const fn new(bytes_per_second: u64, grace_period: Duration) -> Self {
        Self {
            bytes_per_second,
            grace_period,
        }
    }

    /// How long `bytes` may take at this rate.
    pub(crate) fn time_for(&self, bytes: u64) -> Duration {
        // Whole nanoseconds: bytes * 1e9 / rate, without overflow for any
        // body a server could hold (validation keeps the rate above 0).
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.bytes_per_second.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for MinDataRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.bytes_per_second,
            Seconds(self.grace_period)
        )
    }
}

/// The HTTP versions an endpoint serves, Kestrel's `HttpProtocols`.
///
/// On https they are what ALPN offers; on cleartext, `Http1` answers an
/// HTTP/2 preface with 505 as Kestrel does, and `Http2` speaks only HTTP/2
/// with prior knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocols {
    /// HTTP/1.x only.
    Http1,
    /// HTTP/2 only.
    Http2,
    /// Both (the default).
    #[default]
    Http1AndHttp2,
}

impl Protocols {
    /// Whether HTTP/1.x is served.
    #[must_use]
    pub fn http1(self) -> bool {
        self != Protocols::Http2
    }

    /// Whether HTTP/2 is served.
    #[must_use]
    pub fn http2(self) -> bool {
        self != Protocols::Http1
    }
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocols::Http1 => "Http1",
            Protocols::Http2 => "Http2",
            Protocols::Http1AndHttp2 => "Http1AndHttp2",
        })
    }
}

/// The TLS versions an https endpoint accepts, Kestrel's `SslProtocols`;
/// rustls has TLS 1.2 and 1.3. The default (.NET's `None`: let the
/// system choose) is both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SslProtocols {
    /// TLS 1.2.
    pub tls12: bool,
    /// TLS 1.3.
    pub tls13: bool,
}

impl SslProtocols {
    /// TLS 1.2 and 1.3.
    pub const DEFAULT: SslProtocols = SslProtocols {
        tls12: true,
        tls13: true,
    };
}

impl Default for SslProtocols {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for SslProtocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tls12, self.tls13) {
            (true, true) => f.write_str("Tls12,Tls13"),
            (true, false) => f.write_str("Tls12"),
            (false, true) => f.write_str("Tls13"),
            (false, false) => f.write_str("None"),
        }
    }
}

/// Whether an https endpoint asks clients for a certificate, Kestrel's
/// `ClientCertificateMode`. A certificate a client sends must chain to the
/// platform's trusted roots, as Kestrel checks it when the application
/// sets no validation callback of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientCertificateMode {
    /// No certificate is asked for.
    #[default]
    NoCertificate,
    /// A certificate is asked for; a client may send none.
    AllowCertificate,
    /// A client must send a trusted certificate.
    RequireCertificate,
}

impl fmt::Display for ClientCertificateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientCertificateMode::NoCertificate => "NoCertificate",
            ClientCertificateMode::AllowCertificate => "AllowCertificate",
            ClientCertificateMode::RequireCertificate => "RequireCertificate",
        })
    }
}

/// One option of the schema.
#[derive(Clone, Copy)]
pub struct OptionInfo {
    /// Its name: the builder method, and in kebab-case the CLI flag.
    pub name: &'static str,
    /// Its TOML table (`limits`), empty for the root.
    pub toml_section: &'static str,
    /// Its key in that table.
    pub toml_key: &'static str,
    /// Its section under `Kestrel` (`Limits:Http2`), empty for the root.
    pub kestrel_section: &'static str,
    /// Its key in that section; empty when the option has no Kestrel key.
    pub kestrel_key: &'static str,
    /// How its values are read, and which are allowed.
    pub kind: Kind,
    /// Its documentation, one entry per line.
    pub doc: &'static [&'static str],
    fixed_default_text: Option<&'static str>,
    /// The flag, where it is not the name in kebab-case (a list option's
    /// flag names one item: `--allow-user` for `allow_users`).
    flag_override: Option<&'static str>,
    get: fn(&ServerOptions) -> Value,
    set: fn(&mut ServerOptions, Value),
}

impl fmt::Debug for OptionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptionInfo")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OptionInfo {
    /// Its CLI flag without the dashes: the name in kebab-case.
    #[must_use]
    pub fn flag(&self) -> String {
        match self.flag_override {
            Some(flag) => flag.to_owned(),
            None => self.name.replace('_', "-"),
        }
    }

    /// Its full TOML key, `limits.max_request_body_size`.
    #[must_use]
    pub fn toml_path(&self) -> String {
        join(self.toml_section, self.toml_key, '.')
    }

    /// Its full key in .NET configuration, `Kestrel:Limits:MaxRequestBodySize`;
    /// empty when the option has none.
    #[must_use]
    pub fn kestrel_path(&self) -> String {
        if self.kestrel_key.is_empty() {
            return String::new();
        }
        join(
            &join("Kestrel", self.kestrel_section, ':'),
            self.kestrel_key,
            ':',
        )
    }

    /// The first sentence of its documentation, for help lines.
    #[must_use]
    pub fn summary(&self) -> String {
        let text = self
            .doc
            .iter()
            .map(|line| line.trim())
            .collect::<Vec<_>>()
            .join(" ");
        match text.find(". ") {
            Some(end) => text[..end].to_owned(),
            None => text.trim_end_matches('.').to_owned(),
        }
    }

    /// Its default as a flag would spell it.
    #[must_use]
    pub fn default_text(&self) -> String {
        match self.fixed_default_text {
            Some(text) => text.to_owned(),
            None => self.get(&ServerOptions::default()).display(),
        }
    }

    /// Its value in `options`.
    #[must_use]
    pub fn get(&self, options: &ServerOptions) -> Value {
        (self.get)(options)
    }

    /// Sets it in `options`. `value` must be of the option's kind, as
    /// [`parse`](Self::parse) gives it.
    pub fn set(&self, options: &mut ServerOptions, value: Value) {
        debug_assert!(self.kind.allows(&value), "{}: {value:?}", self.name);
        (self.set)(options, value);
    }

    /// Reads a value written in `syntax`, within the option's bounds.
    /// The error says what was expected; a note, for a value that is
    /// accepted but partly cannot apply here (HTTP/3 in `Protocols`).
    pub fn parse(&self, raw: &Raw, syntax: Syntax) -> Result<Parsed, String> {
        self.kind.parse(raw, syntax)
    }
}

/// A [`Raw`] value read as an option's type.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The value.
    pub value: Value,
    /// What of it cannot apply here, if anything.
    pub note: Option<&'static str>,
}

impl From<Value> for Parsed {
    fn from(value: Value) -> Self {
        Self { value, note: None }
    }
}

fn join(section: &str, key: &str, sep: char) -> String {
    match (section.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (_, true) => section.to_owned(),
        _ => format!("{section}{sep}{key}"),
    }
}

/// The option called `name` (the builder method's name).
#[must_use]
pub fn find(name: &str) -> Option<&'static OptionInfo> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// A value as a source wrote it, before it is read as an option's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// Text: a flag's argument, an environment variable, a string.
    Text(String),
    /// A number as written (JSON), or a TOML integer or float.
    Number(String),
    /// A JSON or TOML boolean.
    Bool(bool),
    /// JSON's `null`.
    Null,
}

impl Raw {
    /// The value as messages quote it.
    #[must_use]
    pub fn show(&self) -> String {
        match self {
            Raw::Text(text) => format!("{text:?}"),
            Raw::Number(number) => number.clone(),
            Raw::Bool(b) => b.to_string(),
            Raw::Null => "null".into(),
        }
    }
}

/// The rules a value is read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// A command-line flag: durations in seconds, `unlimited` for no limit.
    Flag,
    /// A TOML file: numbers, durations in seconds, `"unlimited"`.
    Toml,
    /// .NET configuration (JSON files, environment variables): `null` or
    /// an empty value for no limit, durations as a `TimeSpan`
    /// (`"00:00:30"`) or a JSON number of seconds.
    Dotnet,
}

impl Syntax {
    fn unlimited(self) -> &'static str {
        match self {
            Syntax::Flag => "unlimited",
            Syntax::Toml => "\"unlimited\"",
            Syntax::Dotnet => "null",
        }
    }
}

/// An option's value, of its kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// No limit (or, for `mode`, not set).
    None,
    /// A count or a size.
    Count(u64),
    /// A duration.
    Duration(Duration),
    /// A switch.
    Bool(bool),
    /// A minimum data rate.
    Rate(MinDataRate),
    /// HTTP versions.
    Protocols(Protocols),
    /// TLS versions.
    SslProtocols(SslProtocols),
    /// Client certificates.
    ClientCertificateMode(ClientCertificateMode),
    /// Names (of users, of groups).
    Names(Vec<String>),
    /// Text given as it is (a security descriptor).
    Text(String),
}

impl Value {
    /// The value as a flag would spell it.
    #[must_use]
    pub fn display(&self) -> String {
        match self {
            Value::None => "unlimited".into(),
            Value::Count(n) => n.to_string(),
            Value::Duration(d) => Seconds(*d).to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Rate(r) => r.to_string(),
            Value::Protocols(p) => p.to_string(),
            Value::SslProtocols(p) => p.to_string(),
            Value::ClientCertificateMode(m) => m.to_string(),
            Value::Names(names) if names.is_empty() => "none".into(),
            Value::Names(names) => names.join(","),
            Value::Text(text) => text.clone(),
        }
    }
}

/// A duration in seconds, without a trailing `.0`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}", self.0.as_secs())
        } else {
            write!(f, "{}", self.0.as_secs_f64())
        }
    }
}

/// The Rust types options have, and how they convert to and from [`Value`].
trait OptionValue {
    fn to_value(&self) -> Value;
    fn from_value(value: Value) -> Self;
}

macro_rules! count_value {
    ($($t:ty),*) => {$(
        impl OptionValue for $t {
            fn to_value(&self) -> Value {
                Value::Count(u64::try_from(*self).unwrap_or(u64::MAX))
            }
            fn from_value(value: Value) -> Self {
                match value {
                    Value::Count(n) => <$t>::try_from(n).unwrap_or(<$t>::MAX),
                    other => unreachable!("not a count: {other:?}"),
                }
            }
        }
    )*};
}
count_value!(u32, u64, usize);

macro_rules! plain_value {
    ($($t:ty => $variant:ident),*) => {$(
        impl OptionValue for $t {
            fn to_value(&self) -> Value {
                // `Clone::clone` rather than a copy: the lists and texts
                // are not `Copy`.
                Value::$variant(Clone::clone(self))
            }
            fn from_value(value: Value) -> Self {
                match value {
                    Value::$variant(v) => v,
                    other => unreachable!("not a {}: {other:?}", stringify!($variant)),
                }
            }
        }
    )*};
}
plain_value!(
    Duration => Duration,
    bool => Bool,
    MinDataRate => Rate,
    Protocols => Protocols,
    SslProtocols => SslProtocols,
    ClientCertificateMode => ClientCertificateMode,
    Vec<String> => Names,
    String => Text
);

impl<T: OptionValue> OptionValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::None, T::to_value)
    }
    fn from_value(value: Value) -> Self {
        match value {
            Value::None => None,
            value => Some(T::from_value(value)),
        }
    }
}

/// What values an option takes, and how each syntax writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A whole number within bounds; `bytes` says whether it is a size.
    Count {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// Whether it counts bytes (for messages and value names).
        bytes: bool,
        /// Whether "no limit" is allowed.
        unlimited: bool,
    },
    /// A duration greater than zero (at least `min`).
    Seconds {
        /// Smallest allowed.
        min: Duration,
        /// Whether "no limit" is allowed.
        unlimited: bool,
    },
    /// `true` or `false`.
    Bool,
    /// An octal permission mode, 0000 to 0777.
    Mode,
    /// A [`MinDataRate`], or no minimum.
    Rate,
    /// [`Protocols`].
    Protocols,
    /// [`SslProtocols`].
    SslProtocols,
    /// [`ClientCertificateMode`].
    ClientCertificateMode,
    /// Names: a list in config files, one per flag.
    Names,
    /// Text, non-empty; or not set.
    Text,
}

impl Kind {
    const BOOL: Kind = Kind::Bool;
    const MODE: Kind = Kind::Mode;
    const RATE: Kind = Kind::Rate;
    const PROTOCOLS: Kind = Kind::Protocols;
    const SSL_PROTOCOLS: Kind = Kind::SslProtocols;
    const CLIENT_CERTIFICATE_MODE: Kind = Kind::ClientCertificateMode;
    const NAMES: Kind = Kind::Names;
    const TEXT: Kind = Kind::Text;

    const fn bytes(min: u64, max: u64) -> Kind {
        Kind::Count {
            min,
            max,
            bytes: true,
            unlimited: false,
        }
    }

    const fn count(min: u64, max: u64) -> Kind {
        Kind::Count {
            min,
            max,
            bytes: false,
            unlimited: false,
        }
    }

    const fn seconds() -> Kind {
        Kind::Seconds {
            min: Duration::from_nanos(1),
            unlimited: false,
        }
    }

    const fn at_least_one_second(self) -> Kind {
        match self {
            Kind::Seconds { unlimited, .. } => Kind::Seconds {
                min: Duration::from_secs(1),
                unlimited,
            },
            other => other,
        }
    }

    const fn or_unlimited(self) -> Kind {
        match self {
            Kind::Count {
                min, max, bytes, ..
            } => Kind::Count {
                min,
                max,
                bytes,
                unlimited: true,
            },
            Kind::Seconds { min, .. } => Kind::Seconds {
                min,
                unlimited: true,
            },
            other => other,
        }
    }

    /// `value` as a flag would spell it: modes in octal.
    #[must_use]
    pub fn show(self, value: &Value) -> String {
        match (self, value) {
            (Kind::Mode, Value::Count(m)) => format!("{m:04o}"),
            _ => value.display(),
        }
    }

    /// Whether "no limit" is a value of this kind.
    #[must_use]
    pub fn allows_unlimited(self) -> bool {
        matches!(
            self,
            Kind::Count {
                unlimited: true,
                ..
            } | Kind::Seconds {
                unlimited: true,
                ..
            } | Kind::Rate
        )
    }

    /// The value's placeholder in help: `BYTES|unlimited`, `SECS`, ….
    #[must_use]
    pub fn value_name(self) -> String {
        let base = match self {
            Kind::Count { bytes: true, .. } => "BYTES",
            Kind::Count { .. } => "N",
            Kind::Seconds { .. } => "SECS",
            Kind::Bool => "true|false",
            Kind::Mode => "OCTAL",
            Kind::Rate => "BYTES_PER_SEC:GRACE_SECS",
            Kind::Protocols => "Http1|Http2|Http1AndHttp2",
            Kind::SslProtocols => "Tls12,Tls13",
            Kind::ClientCertificateMode => "NoCertificate|AllowCertificate|RequireCertificate",
            Kind::Names => "NAME",
            Kind::Text => "TEXT",
        };
        if self.allows_unlimited() {
            format!("{base}|unlimited")
        } else {
            base.to_owned()
        }
    }

    /// What a value must look like, in `syntax`, for messages.
    #[must_use]
    pub fn expected(self, syntax: Syntax) -> String {
        let base = match self {
            Kind::Count {
                min, max, bytes, ..
            } => {
                let what = if bytes {
                    "a number of bytes"
                } else {
                    "a whole number"
                };
                if max > INT_MAX {
                    format!("{what} of at least {min}")
                } else {
                    format!("{what} from {min} to {max}")
                }
            }
            Kind::Seconds { min, .. } => {
                let least = if min >= Duration::from_secs(1) {
                    "of at least 1"
                } else {
                    "greater than 0"
                };
                match syntax {
                    Syntax::Dotnet => format!(
                        "a TimeSpan such as \"00:00:30\" or a JSON number of seconds, {least} second(s)"
                    ),
                    _ => format!("a number of seconds {least}"),
                }
            }
            Kind::Bool => "true or false".into(),
            Kind::Mode => match syntax {
                Syntax::Flag => "an octal permission mode such as 0660".into(),
                Syntax::Toml => "an octal permission mode such as \"0660\" or 0o660".into(),
                // JSON has no octal numbers, and a decimal 660 would be read wrongly.
                Syntax::Dotnet => "an octal permission mode in a string, such as \"0660\"".into(),
            },
            Kind::Rate => match syntax {
                Syntax::Flag => "BYTES_PER_SEC:GRACE_SECS such as 240:5".into(),
                Syntax::Toml => "a table { bytes_per_second = 240, grace_period = 5 }".into(),
                Syntax::Dotnet => {
                    "an object { \"BytesPerSecond\": 240, \"GracePeriod\": \"00:00:05\" }".into()
                }
            },
            Kind::Protocols => "Http1, Http2 or Http1AndHttp2".into(),
            Kind::SslProtocols => "Tls12, Tls13, both (\"Tls12,Tls13\") or None".into(),
            Kind::ClientCertificateMode => {
                "NoCertificate, AllowCertificate or RequireCertificate".into()
            }
            Kind::Names => match syntax {
                Syntax::Flag => "a name or numeric id".into(),
                Syntax::Toml => {
                    "an array of names or numeric ids, such as [\"alice\", 1001]".into()
                }
                Syntax::Dotnet => {
                    "an array of names or numeric ids, such as [\"alice\", \"1001\"]".into()
                }
            },
            Kind::Text => "a non-empty string".into(),
        };
        if self.allows_unlimited() {
            format!("{base}, or {}", syntax.unlimited())
        } else {
            base
        }
    }

    /// Whether `value` is of this kind and within its bounds.
    #[must_use]
    pub fn allows(self, value: &Value) -> bool {
        match (self, value) {
            (kind, Value::None) => {
                kind.allows_unlimited() || kind == Kind::Mode || kind == Kind::Text
            }
            (Kind::Count { min, max, .. }, Value::Count(n)) => (min..=max).contains(n),
            (Kind::Seconds { min, .. }, Value::Duration(d)) => *d >= min,
            (Kind::Mode, Value::Count(m)) => *m <= 0o777,
            (Kind::Rate, Value::Rate(r)) => {
                r.bytes_per_second >= 1 && r.grace_period >= Duration::from_secs(1)
            }
            (Kind::Bool, Value::Bool(_))
            | (Kind::Protocols, Value::Protocols(_))
            | (Kind::ClientCertificateMode, Value::ClientCertificateMode(_)) => true,
            (Kind::SslProtocols, Value::SslProtocols(p)) => p.tls12 || p.tls13,
            (Kind::Names, Value::Names(names)) => names.iter().all(|n| !n.trim().is_empty()),
            (Kind::Text, Value::Text(text)) => !text.trim().is_empty(),
            _ => false,
        }
    }

    /// Reads `raw` by the rules of `syntax`. Rates are read from their
    /// parts by the config loader; here a rate is only `BYTES:SECS` text
    /// or "no minimum".
    pub fn parse(self, raw: &Raw, syntax: Syntax) -> Result<Parsed, String> {
        let fail = || format!("{}: expected {}", raw.show(), self.expected(syntax));
        if self.allows_unlimited() && is_unlimited(raw, syntax) {
            return Ok(Value::None.into());
        }
        let parsed: Option<Parsed> = match self {
            Kind::Count { .. } => count(raw, syntax).map(|n| Value::Count(n).into()),
            Kind::Seconds { .. } => match duration(raw, syntax) {
                Ok(d) => d.map(|d| Value::Duration(d).into()),
                Err(hint) => return Err(format!("{}; {hint}", fail())),
            },
            Kind::Bool => boolean(raw, syntax).map(|b| Value::Bool(b).into()),
            Kind::Mode => mode(raw, syntax).map(|m| Value::Count(m.into()).into()),
            Kind::Rate => text(raw, syntax)
                .and_then(rate_text)
                .map(|r| Value::Rate(r).into()),
            Kind::Protocols => text(raw, syntax).and_then(protocols),
            Kind::SslProtocols => text(raw, syntax).and_then(|t| ssl_protocols(t.split(','))),
            Kind::ClientCertificateMode => text(raw, syntax).and_then(client_certificate_mode),
            // One name, or several joined by `,` (the config loader joins a
            // list's items so); numbers are names too (uids, gids).
            Kind::Names => match (raw, syntax) {
                // TOML has arrays for lists (read item by item).
                (_, Syntax::Toml) => None,
                (Raw::Text(t) | Raw::Number(t), _) => {
                    Some(Value::Names(t.split(',').map(|n| n.trim().to_owned()).collect()).into())
                }
                _ => None,
            },
            Kind::Text => match raw {
                Raw::Text(t) => Some(Value::Text(t.trim().to_owned()).into()),
                _ => None,
            },
        };
        match parsed {
            Some(parsed) if self.allows(&parsed.value) => Ok(parsed),
            _ => Err(fail()),
        }
    }
}

fn is_unlimited(raw: &Raw, syntax: Syntax) -> bool {
    match (syntax, raw) {
        (Syntax::Dotnet, Raw::Null) => true,
        (Syntax::Dotnet, Raw::Text(t)) => t.trim().is_empty() || t == TIMESPAN_MAX,
        (Syntax::Flag | Syntax::Toml, Raw::Text(t)) => t.eq_ignore_ascii_case("unlimited"),
        _ => false,
    }
}

/// .NET's `TimeSpan.MaxValue`, which Kestrel uses for "never".
const TIMESPAN_MAX: &str = "10675199.02:48:05.4775807";

/// Text a value of a named kind may be written as: any text, and in .NET
/// configuration a number too (enums may be given by value).
fn text(raw: &Raw, syntax: Syntax) -> Option<&str> {
    match (raw, syntax) {
        (Raw::Text(t), _) | (Raw::Number(t), Syntax::Dotnet) => Some(t.trim()),
        _ => None,
    }
}

fn count(raw: &Raw, syntax: Syntax) -> Option<u64> {
    match (raw, syntax) {
        (Raw::Number(n), _) => n.parse().ok(),
        // .NET's binder parses numbers from strings; a flag is text.
        (Raw::Text(t), Syntax::Dotnet | Syntax::Flag) => t.trim().parse().ok(),
        _ => None,
    }
}

/// `Ok(None)`: not a duration; `Err`: a hint for a likely mistake.
fn duration(raw: &Raw, syntax: Syntax) -> Result<Option<Duration>, &'static str> {
    let seconds = |text: &str| {
        text.trim()
            .parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    };
    Ok(match (raw, syntax) {
        (Raw::Number(n), _) => seconds(n),
        (Raw::Text(t), Syntax::Flag) => seconds(t),
        (Raw::Text(t), Syntax::Dotnet) => match parse_timespan(t.trim()) {
            Some(d) => Some(d),
            None if seconds(t).is_some() => {
                return Err(
                    ".NET reads a bare number in a string as days: write \"00:00:30\" for 30 seconds",
                );
            }
            None => None,
        },
        _ => None,
    })
}

fn boolean(raw: &Raw, syntax: Syntax) -> Option<bool> {
    match (raw, syntax) {
        (Raw::Bool(b), _) => Some(*b),
        // bool.Parse: "true" or "false" in any case.
        (Raw::Text(t), Syntax::Dotnet | Syntax::Flag) => {
            match t.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }
        }
        _ => None,
    }
}

fn mode(raw: &Raw, syntax: Syntax) -> Option<u32> {
    match (raw, syntax) {
        (Raw::Number(n), Syntax::Toml) => n.parse().ok().filter(|m| *m <= 0o777),
        (Raw::Text(t), _) => parse_octal(t),
        _ => None,
    }
}

fn parse_octal(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| matches!(b, b'0'..=b'7')) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// `BYTES_PER_SEC[:GRACE_SECS]`, the grace period 5 s when left out.
fn rate_text(text: &str) -> Option<MinDataRate> {
    let (rate, grace) = text.split_once(':').unwrap_or((text, "5"));
    Some(MinDataRate {
        bytes_per_second: rate.trim().parse().ok()?,
        grace_period: Duration::try_from_secs_f64(grace.trim().parse().ok()?).ok()?,
    })
}

/// .NET's enum names without case, `-` or `_` (so `http1-and-http2` works
/// on a command line too).
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

const HTTP3_NOTE: &str = "HTTP/3 is not served here; HTTP/1.1 and HTTP/2 are";

/// `HttpProtocols`: a flags enum (Http1 = 1, Http2 = 2, Http3 = 4), given
/// by names, a `,` list of them, or a number.
fn protocols(text: &str) -> Option<Parsed> {
    let mut bits = 0u8;
    for part in text.split(',') {
        bits |= match normalise(part).as_str() {
            "none" | "0" => 0,
            "http1" | "1" => 1,
            "http2" | "2" => 2,
            "http1andhttp2" | "3" => 3,
            "http3" | "4" => 4,
            "http1andhttp2andhttp3" | "7" => 7,
            _ => return None,
        };
    }
    let value = match bits & 3 {
        1 => Protocols::Http1,
        2 => Protocols::Http2,
        3 => Protocols::Http1AndHttp2,
        _ => return None,
    };
    Some(Parsed {
        value: Value::Protocols(value),
        note: (bits & 4 != 0).then_some(HTTP3_NOTE),
    })
}

const OLD_TLS_NOTE: &str = "SSL 2/3, TLS 1.0 and 1.1 are not offered here; TLS 1.2 and 1.3 are";

/// `SslProtocols`: names or a list of them; `None` and `Default` are the
/// system's choice. Versions rustls does not have are dropped with a note
/// as long as one it has is left.
pub(crate) fn ssl_protocols<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Parsed> {
    let mut p = SslProtocols {
        tls12: false,
        tls13: false,
    };
    let mut default = false;
    let mut old = false;
    for name in names {
        match normalise(name).as_str() {
            "none" | "default" | "0" => default = true,
            "tls12" | "3072" => p.tls12 = true,
            "tls13" | "12288" => p.tls13 = true,
            "ssl2" | "ssl3" | "tls" | "tls11" | "12" | "48" | "192" | "768" => old = true,
            _ => return None,
        }
    }
    if !p.tls12 && !p.tls13 {
        if old && !default {
            return None;
        }
        p = SslProtocols::DEFAULT;
    }
    Some(Parsed {
        value: Value::SslProtocols(p),
        note: old.then_some(OLD_TLS_NOTE),
    })
}

const DELAY_NOTE: &str =
    "DelayCertificate (renegotiation) is not possible here: read as AllowCertificate";

fn client_certificate_mode(text: &str) -> Option<Parsed> {
    let (mode, note) = match normalise(text).as_str() {
        "nocertificate" | "0" => (ClientCertificateMode::NoCertificate, None),
        "allowcertificate" | "1" => (ClientCertificateMode::AllowCertificate, None),
        "requirecertificate" | "2" => (ClientCertificateMode::RequireCertificate, None),
        "delaycertificate" | "3" => (ClientCertificateMode::AllowCertificate, Some(DELAY_NOTE)),
        _ => return None,
    };
    Some(Parsed {
        value: Value::ClientCertificateMode(mode),
        note,
    })
}

/// .NET's `TimeSpan` text: `[-][d.]hh:mm[:ss[.fffffff]]`, or a whole
/// number of days `d`, which callers refuse as a likely mistake. Negative
/// spans are refused too: no option takes one.
pub(crate) fn parse_timespan(text: &str) -> Option<Duration> {
    fn number(digits: &str, max: u64) -> Option<u64> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|n| *n <= max)
    }
    let (head, rest) = text.split_once(':')?;
    let (days, hours) = head.split_once('.').unwrap_or(("0", head));
    let (minutes, seconds) = rest.split_once(':').unwrap_or((rest, "0"));
    let (seconds, nanos) = match seconds.split_once('.') {
        Some((seconds, fraction)) if (1..=7).contains(&fraction.len()) => {
            // Padded on the right to nanoseconds: ".5" is 500_000_000.
            let nanos = number(&format!("{fraction:0<9}"), 999_999_999)?;
            (seconds, u32::try_from(nanos).ok()?)
        }
        Some(_) => return None,
        None => (seconds, 0),
    };
    // TimeSpan.MaxValue is about 10.7 million days.
    let secs = number(days, 10_675_199)? * 86_400
        + number(hours, 23)? * 3_600
        + number(minutes, 59)? * 60
        + number(seconds, 59)?;
    Some(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_rules() {
        let mut o = PipeOptions::default();
        assert_eq!(o.socket_mode(), Ok(0o600));
        o.mode = Some(0o660);
        assert!(o.socket_mode().unwrap_err().contains("current_user_only"));
        o.current_user_only = false;
        assert_eq!(o.socket_mode(), Ok(0o660));
        o.mode = None;
        assert_eq!(o.socket_mode(), Ok(0o666));
        o.mode = Some(0o1777);
        assert!(o.socket_mode().is_err());
    }

    #[test]
    fn names_are_unique_and_defaults_valid() {
        let mut names: Vec<_> = OPTIONS.iter().map(|o| o.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OPTIONS.len());
        ServerOptions::default().validate().unwrap();
        for info in OPTIONS {
            assert!(!info.summary().is_empty(), "{}", info.name);
            assert!(
                info.kind.allows(&info.get(&ServerOptions::default())),
                "{}",
                info.name
            );
        }
    }

    #[test]
    fn timespans() {
        let secs = |s| parse_timespan(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("00:00:30"), Some(30.0));
        assert_eq!(secs("00:02:10"), Some(130.0));
        assert_eq!(secs("00:30"), Some(1800.0));
        assert_eq!(secs("00:00:01.5"), Some(1.5));
        assert_eq!(secs("00:00:00.0000001"), Some(1e-7));
        assert_eq!(secs("1.02:03:04"), Some(93_784.0));
        for bad in [
            "30",
            "",
            ":",
            "00:00:60",
            "24:00:00",
            "-00:00:30",
            "00:00:30.",
            "0:0:1.12345678",
            "a:b:c",
            "00:00:30:00",
        ] {
            assert_eq!(parse_timespan(bad), None, "{bad}");
        }
    }

    #[test]
    fn enums() {
        let p = |t: &str| protocols(t).map(|p| (p.value, p.note.is_some()));
        // (text, what it means, whether a note says what is not served)
        for (text, want, noted) in [
            ("Http1", Protocols::Http1, false),
            ("http1-and-http2", Protocols::Http1AndHttp2, false),
            ("Http1, Http2", Protocols::Http1AndHttp2, false),
            ("Http1AndHttp2AndHttp3", Protocols::Http1AndHttp2, true),
        ] {
            assert_eq!(p(text), Some((Value::Protocols(want), noted)), "{text}");
        }
        assert_eq!(p("Http3"), None);
        let s = |t: &str| ssl_protocols(t.split(',')).map(|p| (p.value, p.note.is_some()));
        let only12 = SslProtocols {
            tls12: true,
            tls13: false,
        };
        assert_eq!(s("Tls12"), Some((Value::SslProtocols(only12), false)));
        assert_eq!(
            s("None"),
            Some((Value::SslProtocols(SslProtocols::DEFAULT), false))
        );
        assert_eq!(s("Tls11,Tls12"), Some((Value::SslProtocols(only12), true)));
        assert_eq!(s("Tls11"), None);
        assert_eq!(s("Tls14"), None);
    }
}
