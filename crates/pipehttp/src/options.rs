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
    /// more connection is accepted into a waiting room, where its requests
    /// wait for a slot (a successor's takeover request does not wait); then
    /// the server stops accepting, so further clients wait in the listen
    /// queue (Unix) or for a free pipe instance (Windows) until one closes.
    pub max_concurrent_connections: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body_size: Some(30_000_000),
            max_request_headers_total_size: 32 * 1024,
            request_headers_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(130),
            max_concurrent_connections: None,
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
    /// With `current_user_only` on, the mode follows from the allow lists
    /// (0o600 without them) and no other is allowed.
    pub mode: Option<u32>,
    /// Users admitted beside the server's own, with `current_user_only` on:
    /// names or numeric uids on Unix, account names or SIDs on Windows.
    /// Unix: the socket becomes 0666 and the peer check admits them;
    /// Windows: each gets read and write access in every instance's DACL.
    pub allow_users: Vec<String>,
    /// Groups whose members are admitted beside the server's own user,
    /// with `current_user_only` on: names or numeric gids on Unix, account
    /// names or SIDs on Windows. Unix: with one group (and no
    /// `allow_users`) the socket file is given to that group with mode
    /// 0660, as dockerd's `root:docker` socket; with more, it is 0666.
    /// Either way a peer is admitted when its group or one of its
    /// supplementary groups is allowed. Windows: as `allow_users`.
    pub allow_groups: Vec<String>,
    /// Windows: the exact security descriptor of every pipe instance, in
    /// SDDL, as Kestrel's `PipeSecurity`; it replaces the descriptor that
    /// `current_user_only` and the allow lists would make. It must grant
    /// the server's own user the right to create instances (`GA` or `GW`),
    /// such as `"D:P(A;;GA;;;OW)(A;;GRGW;;;BU)"`. Unix sockets have no
    /// such descriptor: binding one with it set fails.
    pub pipe_sddl: Option<String>,
}

impl Default for PipeOptions {
    fn default() -> Self {
        Self {
            max_read_buffer_size: 1024 * 1024,
            max_write_buffer_size: 64 * 1024,
            listener_queue_count: default_listener_queue_count(),
            current_user_only: true,
            mode: None,
            allow_users: Vec::new(),
            allow_groups: Vec::new(),
            pipe_sddl: None,
        }
    }
}

impl PipeOptions {
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

    /// Checks the options against each other and their ranges.
    pub(crate) fn validate(&self) -> Result<(), String> {
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
        match &self.pipe_sddl {
            Some(sddl) if sddl.trim().is_empty() => {
                return Err(
                    "pipe_sddl is empty: give a security descriptor such as \"D:P(A;;GA;;;OW)\", or leave it unset"
                        .into(),
                );
            }
            Some(_) if widened => {
                return Err(
                    "pipe_sddl sets the whole descriptor: grant those accounts in it instead of in allow_users and allow_groups"
                        .into(),
                );
            }
            _ => {}
        }
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

    #[test]
    fn allow_lists_set_the_mode_and_group() {
        let mut o = PipeOptions {
            allow_groups: vec!["docker".into()],
            ..PipeOptions::default()
        };
        assert_eq!(
            (o.socket_mode(), o.socket_group()),
            (Ok(0o660), Some("docker"))
        );
        o.mode = Some(0o660);
        assert_eq!(o.socket_mode(), Ok(0o660));
        o.mode = Some(0o666);
        assert!(o.socket_mode().unwrap_err().contains("leave mode unset"));
        o.mode = None;
        o.allow_groups.push("adm".into());
        assert_eq!((o.socket_mode(), o.socket_group()), (Ok(0o666), None));
        o.allow_groups.truncate(1);
        o.allow_users.push("1001".into());
        assert_eq!((o.socket_mode(), o.socket_group()), (Ok(0o666), None));
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn contradictions_are_refused() {
        let off = PipeOptions {
            current_user_only: false,
            allow_users: vec!["alice".into()],
            ..PipeOptions::default()
        };
        assert!(
            off.validate()
                .unwrap_err()
                .contains("current_user_only = true")
        );
        let both = PipeOptions {
            allow_groups: vec!["docker".into()],
            pipe_sddl: Some("D:P(A;;GA;;;SY)".into()),
            ..PipeOptions::default()
        };
        assert!(both.validate().unwrap_err().contains("pipe_sddl"));
        let empty = PipeOptions {
            allow_groups: vec![String::new()],
            ..PipeOptions::default()
        };
        assert!(empty.validate().unwrap_err().contains("allow_groups"));
        let sddl = PipeOptions {
            pipe_sddl: Some(" ".into()),
            ..PipeOptions::default()
        };
        assert!(sddl.validate().unwrap_err().contains("pipe_sddl is empty"));
    }
}
