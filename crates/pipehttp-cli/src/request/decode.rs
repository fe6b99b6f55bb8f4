//! `--compressed`: the response body decoded as its Content-Encoding says,
//! chunk by chunk, with flate2 (gzip, deflate), brotli and zstd.

use std::io::{self, Write};

/// One decoding step; each writes what it decodes into its own buffer.
enum Step {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Step {
    fn new(encoding: &str) -> Result<Option<Self>, String> {
        Ok(Some(match encoding.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Self::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            "deflate" => Self::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            "br" => Self::Brotli(Box::new(brotli::DecompressorWriter::new(
                Vec::new(),
                64 * 1024,
            ))),
            "zstd" => Self::Zstd(
                zstd::stream::write::Decoder::new(Vec::new())
                    .map_err(|e| format!("cannot start a zstd decoder: {e}"))?,
            ),
            "identity" | "none" | "" => return Ok(None),
            other => return Err(format!("Unrecognized content encoding type: {other}")),
        }))
    }

    fn write(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Self::Gzip(d) => decode(d, data, |d| d.get_mut()),
            Self::Deflate(d) => decode(d, data, |d| d.get_mut()),
            Self::Brotli(d) => decode(d, data, |d| d.get_mut()),
            Self::Zstd(d) => decode(d, data, |d| d.get_mut()),
        }
    }

    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Self::Gzip(d) => d.finish(),
            Self::Deflate(d) => d.finish(),
            Self::Brotli(d) => d
                .into_inner()
                .map_err(|_| io::Error::other("the brotli stream is cut short")),
            Self::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
    }
}

/// Writes `data` through decoder `d` and takes what it has decoded so far
/// out of its buffer (which `decoded` finds).
fn decode<D: Write>(
    d: &mut D,
    data: &[u8],
    decoded: impl FnOnce(&mut D) -> &mut Vec<u8>,
) -> io::Result<Vec<u8>> {
    d.write_all(data)?;
    Ok(std::mem::take(decoded(d)))
}

/// The decoders for one body, last encoding first.
pub struct Decoder {
    steps: Vec<Step>,
}

impl Decoder {
    /// The decoder for a Content-Encoding value (`gzip`, `br, gzip`, ...).
    pub fn new(content_encoding: &str) -> Result<Self, String> {
        let mut steps = Vec::new();
        for encoding in content_encoding.split(',').map(str::trim).rev() {
            if let Some(step) = Step::new(encoding)? {
                steps.push(step);
            }
        }
        Ok(Self { steps })
    }

    /// Decodes the next chunk.
    pub fn write(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut data = data.to_vec();
        for step in &mut self.steps {
            data = step.write(&data)?;
        }
        Ok(data)
    }

    /// What is left at the end of the body.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut pending: Option<Vec<u8>> = None;
        for mut step in self.steps {
            if let Some(data) = pending.take() {
                out = step.write(&data)?;
            }
            let mut tail = std::mem::take(&mut out);
            tail.extend(step.finish()?);
            pending = Some(tail);
        }
        Ok(pending.unwrap_or_default())
    }
}
