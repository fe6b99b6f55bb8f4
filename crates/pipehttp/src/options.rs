//! The server's options, with Kestrel's defaults. The same names are used by
//! the builder methods, the CLI flags (kebab-case) and the config files.

use std::time::Duration;

/// HTTP limits, Kestrel's `KestrelServerLimits`.
///
/// ```
/// use std::time::Duration;
/// let limits = pipehttp::Limits::default();
/// assert_eq!(limits.max_request_body_size, Some(30_000_000));
/// assert_eq!(limits.request_headers_timeout, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body in bytes; `None` for no limit. A request that
    /// declares a larger `Content-Length` gets 413 before its handler runs;
    /// a streamed body that grows past it fails the body read and the
    /// response becomes 413.
    pub max_request_body_size: Option<u64>,
    /// Largest request head (request line and headers) in bytes: 431 past it.
    /// Also the HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_request_headers_total_size: usize,
    /// How long a client may take to send a request head, from its first
    /// byte; a slower client is disconnected.
    pub request_headers_timeout: Duration,
    /// How long a connection may stay idle, with no request in flight,
    /// before the server closes it.
    pub keep_alive_timeout: Duration,
    /// Most connections served at once; `None` for no limit. Past it one
    /// more connection waits inside the server for a slot, and further
    /// clients wait in the listen queue (Unix) or for a free pipe instance
    /// (Windows); each is served, in the order it came, as a slot frees.
    pub max_concurrent_connections: Option<usize>,
    /// Kestrel's `MinRequestBodyDataRate`: the slowest a client may send a
    /// request body while the handler waits for it, after a grace period
    /// (240 bytes/s after 5 s by default; `None` for no minimum). A slower
    /// body fails the handler's read, and the request is answered with 408
    /// (HTTP/1 then closes). HTTP/1 bodies and HTTP/2 streams are timed one
    /// by one, and only while the handler waits for data.
    pub min_request_body_data_rate: Option<MinDataRate>,
    /// Kestrel's `MinResponseDataRate`: the slowest a client may take a
    /// response while the server waits to send more (240 bytes/s after 5 s
    /// by default; `None` for no minimum). Each piece of a response body
    /// must be taken within the grace period, or within its size at this
    /// rate if that is longer; a connection that falls behind is closed.
    pub min_response_data_rate: Option<MinDataRate>,
}

/// A minimum data rate: Kestrel's `MinDataRate`.
///
/// ```
/// let rate = pipehttp::MinDataRate::new(240, std::time::Duration::from_secs(5));
/// assert_eq!(rate.bytes_per_second(), 240);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinDataRate {
    bytes_per_second: u64,
    grace_period: Duration,
}

impl MinDataRate {
    /// At least `bytes_per_second` (at least 1), after `grace_period`.
    #[must_use]
    pub fn new(bytes_per_second: u64, grace_period: Duration) -> Self {
        Self {
            bytes_per_second: bytes_per_second.max(1),
            grace_period,
        }
    }

    /// The minimum rate.
    #[must_use]
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// How long a transfer may go below the rate at first.
    #[must_use]
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// How long `bytes` may take at this rate.
    pub(crate) fn time_for(&self, bytes: u64) -> Duration {
        // Whole nanoseconds: bytes * 1e9 / rate, without overflow for any
        // body a server could hold.
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.bytes_per_second);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Default for MinDataRate {
    /// Kestrel's default: 240 bytes/s after a 5 s grace period.
    fn default() -> Self {
        Self::new(240, Duration::from_secs(5))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body_size: Some(30_000_000),
            max_request_headers_total_size: 32 * 1024,
            request_headers_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(130),
            max_concurrent_connections: None,
            min_request_body_data_rate: Some(MinDataRate::default()),
            min_response_data_rate: Some(MinDataRate::default()),
        }
    }
}

/// Transport options for pipes and sockets, Kestrel's `NamedPipeTransportOptions`.
///
/// How the buffer sizes map onto the machinery underneath:
/// - `max_read_buffer_size`: on Windows the pipe's in-buffer size; for
///   HTTP/2 the connection and stream flow-control windows. HTTP/1 reads a
///   body only as fast as the handler takes it, holding at most one buffer
///   of 128 KiB (or `max_request_headers_total_size`, if larger) ahead.
/// - `max_write_buffer_size`: on Windows the pipe's out-buffer size; for
///   HTTP/2 the per-stream send buffer, past which the handler's body is
///   not polled. HTTP/1 stops polling a response body once that same
///   buffer's worth is queued.
///
/// Unix and TCP kernel socket buffers are left to the kernel, which sizes
/// them better than a fixed number does.
///
/// ```
/// let pipes = pipehttp::PipeOptions::default();
/// assert!(pipes.current_user_only);
/// assert_eq!(pipes.max_read_buffer_size, 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipeOptions {
    /// Bytes read from a connection and not yet consumed before reading pauses.
    pub max_read_buffer_size: usize,
    /// Bytes queued for a connection before the handler is held back.
    pub max_write_buffer_size: usize,
    /// Windows: pipe instances waiting for clients at once.
    pub listener_queue_count: usize,
    /// Only the server's own user may connect. Unix: socket mode 0600 and a
    /// peer-credential check on every connection; Windows: a DACL that
    /// grants the current user alone, on every pipe instance.
    pub current_user_only: bool,
    /// Unix: the socket file's mode when `current_user_only` is off
    /// (default 0o666, anyone may connect, as on a default Windows pipe).
    /// With `current_user_only` on, only 0o600 is allowed.
    pub mode: Option<u32>,
}

impl Default for PipeOptions {
    fn default() -> Self {
        Self {
            max_read_buffer_size: 1024 * 1024,
            max_write_buffer_size: 64 * 1024,
            listener_queue_count: default_listener_queue_count(),
            current_user_only: true,
            mode: None,
        }
    }
}

impl PipeOptions {
    /// The socket file mode to apply on Unix, or an error message when the
    /// options contradict each other.
    pub(crate) fn socket_mode(&self) -> Result<u32, String> {
        match (self.current_user_only, self.mode) {
            (true, None | Some(0o600)) => Ok(0o600),
            (true, Some(mode)) => Err(format!(
                "mode {mode:04o} needs current_user_only = false (with it on, the socket is 0600)"
            )),
            (false, Some(mode)) if mode > 0o777 => Err(format!(
                "mode {mode:o} is not a permission mode (0000 to 0777)"
            )),
            (false, mode) => Ok(mode.unwrap_or(0o666)),
        }
    }

    /// Checks the options against each other and their ranges.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.socket_mode()?;
        if self.listener_queue_count == 0 {
            return Err("listener_queue_count must be at least 1".into());
        }
        if self.max_read_buffer_size == 0 || self.max_write_buffer_size == 0 {
            return Err("buffer sizes must be at least 1 byte".into());
        }
        Ok(())
    }
}

fn default_listener_queue_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(16)
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
}
