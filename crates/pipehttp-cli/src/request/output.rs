//! Where the body and the heads go: stdout or a file (created when the
//! first byte comes, as curl does), and a progress bar on a terminal.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use crate::exit::{self, Failure};

/// Bodies larger than this get a progress bar when stderr is a terminal.
const PROGRESS_THRESHOLD: u64 = 1024 * 1024;

/// The body's destination.
pub struct Output {
    path: Option<PathBuf>,
    create_dirs: bool,
    /// --no-clobber: an existing file is kept and NAME.1, NAME.2, ... used.
    no_clobber: bool,
    /// The name came from Content-Disposition (-J): never overwrite.
    exclusive: bool,
    /// -C: the file is continued, not replaced.
    append: bool,
    /// -O -J: the response's Content-Disposition may name the file.
    pub header_named: bool,
    file: Option<File>,
    /// Bytes written so far.
    pub written: u64,
}

impl Output {
    pub fn new(path: Option<PathBuf>, create_dirs: bool, no_clobber: bool) -> Self {
        Self {
            path,
            create_dirs,
            no_clobber,
            exclusive: false,
            append: false,
            header_named: false,
            file: None,
            written: 0,
        }
    }

    /// -J: the file takes the name the server gave, if it is not open yet;
    /// like curl, an existing file of that name is an error, not replaced.
    pub fn rename(&mut self, path: PathBuf) {
        if self.file.is_none() {
            self.path = Some(path);
            self.exclusive = true;
        }
    }

    /// -C: what comes is added to the file's end.
    pub fn append(&mut self) {
        self.append = true;
    }

    /// The size of the file as it is now, for `-C -`.
    pub fn existing_len(&self) -> u64 {
        self.path
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }

    /// -R: the file's modification time.
    pub fn set_modified(&self, time: std::time::SystemTime) {
        if let Some(path) = &self.path
            && let Ok(file) = File::options().write(true).open(path)
        {
            let _ = file.set_modified(time);
        }
    }

    /// The file's name, for %{filename_effective}.
    pub fn name(&self) -> Option<String> {
        self.path.as_ref().map(|p| p.display().to_string())
    }

    fn open(&mut self) -> Result<(), Failure> {
        let (Some(path), None) = (&self.path, &self.file) else {
            return Ok(());
        };
        if self.create_dirs
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                Failure::new(
                    exit::WRITE_ERROR,
                    format!("cannot create {}: {e}", parent.display()),
                )
            })?;
        }
        let cannot = |path: &PathBuf, e: std::io::Error| {
            Failure::new(
                exit::WRITE_ERROR,
                format!("cannot create {}: {e}", path.display()),
            )
        };
        if self.append {
            let file = File::options()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|e| cannot(path, e))?;
            self.file = Some(file);
            return Ok(());
        }
        if !self.no_clobber && !self.exclusive {
            let file = File::create(path).map_err(|e| cannot(path, e))?;
            self.file = Some(file);
            return Ok(());
        }
        // curl's order (src/tool_cb_wrt.c): the name itself, then with
        // --no-clobber NAME.1 to NAME.99.
        let mut candidate = path.clone();
        let mut next = 1;
        loop {
            match File::options()
                .write(true)
                .create_new(true)
                .open(&candidate)
            {
                Ok(file) => {
                    self.file = Some(file);
                    self.path = Some(candidate);
                    return Ok(());
                }
                Err(e)
                    if self.no_clobber
                        && next < 100
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::IsADirectory
                        ) =>
                {
                    let mut name = path.clone().into_os_string();
                    name.push(format!(".{next}"));
                    candidate = PathBuf::from(name);
                    next += 1;
                }
                Err(e) => return Err(cannot(&candidate, e)),
            }
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.open()?;
        let result = match &mut self.file {
            Some(file) => file.write_all(bytes),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
        };
        result.map_err(|e| {
            let name = self.name().unwrap_or_else(|| "stdout".into());
            Failure::new(exit::WRITE_ERROR, format!("cannot write to {name}: {e}"))
        })?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Starts over, for a retry: a file is truncated; what went to stdout
    /// stays there, as with curl.
    pub fn rewind(&mut self) {
        if self.file.take().is_some() {
            self.written = 0;
        }
    }

    /// `--remove-on-error`: the file a failed transfer began is deleted.
    pub fn remove(&mut self) {
        if self.file.take().is_some()
            && let Some(path) = &self.path
        {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Ends a successful transfer: an empty body still makes its file.
    pub fn finish(&mut self) -> Result<(), Failure> {
        self.open()?;
        if let Some(file) = &mut self.file {
            file.flush()
                .map_err(|e| Failure::new(exit::WRITE_ERROR, format!("cannot write: {e}")))?;
        }
        Ok(())
    }
}

/// A progress bar on stderr for large bodies, only when a person watches.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    length: Option<u64>,
    done: u64,
}

impl Progress {
    pub fn new(enabled: bool, length: Option<u64>) -> Self {
        let mut progress = Self {
            bar: None,
            enabled: enabled && std::io::stderr().is_terminal(),
            length,
            done: 0,
        };
        progress.advance(0);
        progress
    }

    pub fn advance(&mut self, n: usize) {
        self.done += n as u64;
        if self.bar.is_none()
            && self.enabled
            && self.length.unwrap_or(self.done) > PROGRESS_THRESHOLD
        {
            let bar = match self.length {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::no_length(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(self.done);
            self.bar = Some(bar);
        } else if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// An upload read through a progress bar.
pub struct Uploading<R> {
    inner: R,
    progress: Progress,
}

impl<R> Uploading<R> {
    pub fn new(inner: R, enabled: bool, length: u64) -> Self {
        Self {
            inner,
            progress: Progress::new(enabled, Some(length)),
        }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Uploading<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &poll {
            let n = buf.filled().len() - before;
            if n == 0 {
                this.progress.finish();
            } else {
                this.progress.advance(n);
            }
        }
        poll
    }
}

/// `-D FILE`: every response head, as received.
pub struct HeaderDump {
    file: Option<File>,
    stdout: bool,
}

impl HeaderDump {
    pub fn open(path: Option<&PathBuf>) -> Result<Self, Failure> {
        Ok(match path {
            None => Self {
                file: None,
                stdout: false,
            },
            Some(p) if p.as_os_str() == "-" => Self {
                file: None,
                stdout: true,
            },
            Some(p) => Self {
                file: Some(File::create(p).map_err(|e| {
                    Failure::new(
                        exit::WRITE_ERROR,
                        format!("cannot create {}: {e}", p.display()),
                    )
                })?),
                stdout: false,
            },
        })
    }

    pub fn write(&mut self, head: &[u8]) -> Result<(), Failure> {
        let result = match (&mut self.file, self.stdout) {
            (Some(file), _) => file.write_all(head),
            (None, true) => {
                let mut out = std::io::stdout().lock();
                out.write_all(head).and_then(|()| out.flush())
            }
            (None, false) => Ok(()),
        };
        result
            .map_err(|e| Failure::new(exit::WRITE_ERROR, format!("cannot write the headers: {e}")))
    }
}
