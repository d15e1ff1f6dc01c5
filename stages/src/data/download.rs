//! Streaming https downloads that survive flaky connections.
//!
//! One call downloads one URL into one file:
//! - the body is streamed to disk (a 2.6 GB STL-10 archive never sits in memory);
//! - a failed attempt (connection reset, body cut short, timeout, 5xx, 408, 429) is retried
//!   with exponential backoff, and the retry **resumes** with `Range: bytes=N-` from the bytes
//!   already on disk. A server that ignores the range (answers 200) or answers a different
//!   range is handled by starting over, never by appending the wrong bytes;
//! - an attempt that received bytes resets the retry count, so a connection that keeps
//!   dropping but keeps making progress finishes, while a dead one gives up after
//!   [`HttpOptions::retries`] attempts;
//! - client errors (404, 403, 401, 410, ...) are final for this URL: retrying will not help,
//!   and the caller moves on to the next source;
//! - [`HttpOptions::timeout`] bounds one attempt (reqwest's blocking client has no separate
//!   read timeout); with resume, a slow large download still completes across attempts.
//!
//! - a body is never larger than the caller's `max_bytes` (the fetch stage's bound on what a
//!   source may write, the same one that bounds unpacking): a server that announces more is
//!   refused before a byte is read, and one that streams past it (no length, or a lying one)
//!   is cut off there and its bytes deleted, so a hostile or broken mirror cannot fill the disk.
//!   Both are final for that URL: the caller moves on to the next source.
//!
//! Progress (bytes so far, total when known, rate) goes to the caller's callback at most four
//! times a second. Integrity is not this module's job: the caller verifies the pin.

use repro_engine::reporter::human_bytes;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use super::DataError;

/// Progress callback: bytes done, total (0 when unknown), message.
pub type ProgressFn<'a> = &'a dyn Fn(u64, u64, &str);

/// Retry and timeout policy for downloads.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Attempts after the first that may fail without progress before giving up.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further retry.
    pub backoff: Duration,
    /// Bound on one attempt (connect + transfer).
    pub timeout: Duration,
    /// Bound on establishing the connection.
    pub connect_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            retries: 4,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Why one attempt failed, and whether another attempt may help.
enum Attempt {
    Retry(String),
    Final(String),
}

/// Downloads `url` into `dest`, resuming from whatever `dest` already holds; a body larger than
/// `max_bytes` is refused (see the module doc).
pub fn download(
    url: &str,
    dest: &Path,
    opts: &HttpOptions,
    max_bytes: u64,
    label: &str,
    progress: ProgressFn<'_>,
) -> Result<(), DataError> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .user_agent(concat!("repro/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DataError::Source(format!("cannot build an http client: {e}")))?;
    let mut failures = 0u32;
    loop {
        let before = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        let result = attempt(&client, url, dest, max_bytes, label, progress);
        let after = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        match result {
            Ok(()) => return Ok(()),
            Err(Attempt::Final(msg)) => return Err(DataError::Source(msg)),
            Err(Attempt::Retry(msg)) => {
                if after > before {
                    failures = 0;
                } else {
                    failures += 1;
                }
                if failures > opts.retries {
                    return Err(DataError::Source(format!(
                        "{msg} (gave up after {} attempts without progress)",
                        opts.retries + 1
                    )));
                }
                let wait = opts
                    .backoff
                    .saturating_mul(1 << failures.saturating_sub(1).min(10));
                progress(
                    after,
                    0,
                    &format!(
                        "{label}: {msg}; retrying in {:.1}s from byte {after}",
                        wait.as_secs_f64()
                    ),
                );
                std::thread::sleep(wait);
            }
        }
    }
}

fn attempt(
    client: &reqwest::blocking::Client,
    url: &str,
    dest: &Path,
    max_bytes: u64,
    label: &str,
    progress: ProgressFn<'_>,
) -> Result<(), Attempt> {
    let io_final =
        |what: &str, e: std::io::Error| Attempt::Final(format!("{what} `{}`: {e}", dest.display()));
    let mut file = OpenOptions::new()
        .create(true)
        .append(false)
        .read(true)
        .write(true)
        .truncate(false)
        .open(dest)
        .map_err(|e| io_final("cannot open", e))?;
    let have = file
        .metadata()
        .map_err(|e| io_final("cannot stat", e))?
        .len();
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().map_err(|e| {
        let msg = format!("request failed: {}", error_chain(&e));
        // A host name that does not resolve will not resolve a few seconds later either (an
        // offline machine): go to the next source at once instead of backing off.
        if e.is_connect() && msg.contains("dns error") {
            Attempt::Final(msg)
        } else {
            Attempt::Retry(msg)
        }
    })?;
    let status = resp.status();
    let header_u64 = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let length: Option<u64> = header_u64(CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let (start, total) = match status {
        StatusCode::PARTIAL_CONTENT => {
            // `bytes START-END/TOTAL`: append only if the server resumed where we stopped.
            let range = header_u64(CONTENT_RANGE).unwrap_or_default();
            let parsed = parse_content_range(&range);
            match parsed {
                Some((s, t)) if s == have => (have, t.or(length.map(|l| l + have))),
                _ => {
                    file.set_len(0)
                        .map_err(|e| io_final("cannot truncate", e))?;
                    return Err(Attempt::Retry(format!(
                        "server answered range `{range}` to a request from byte {have}; starting over"
                    )));
                }
            }
        }
        StatusCode::OK => {
            file.set_len(0)
                .map_err(|e| io_final("cannot truncate", e))?;
            (0, length)
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            file.set_len(0)
                .map_err(|e| io_final("cannot truncate", e))?;
            return Err(Attempt::Retry(
                "server refused to resume (416); starting over".into(),
            ));
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Err(Attempt::Retry(format!("http {s}")));
        }
        s => return Err(Attempt::Final(format!("http {s}"))),
    };
    let too_large = |what: String| {
        Attempt::Final(format!(
            "{what}, more than `max_bytes` ({}); raise `max_bytes` if this source is right",
            human_bytes(max_bytes)
        ))
    };
    if let Some(t) = total.filter(|&t| t > max_bytes) {
        file.set_len(0)
            .map_err(|e| io_final("cannot truncate", e))?;
        return Err(too_large(format!(
            "the server announces {}",
            human_bytes(t)
        )));
    }
    file.seek(SeekFrom::Start(start))
        .map_err(|e| io_final("cannot seek", e))?;
    let t0 = Instant::now();
    let mut last_report = Instant::now() - Duration::from_secs(1);
    let mut done = start;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.flush().map_err(|e| io_final("cannot write", e))?;
                return Err(Attempt::Retry(format!(
                    "connection dropped after {done} bytes: {e}"
                )));
            }
        };
        if done + n as u64 > max_bytes {
            file.set_len(0)
                .map_err(|e| io_final("cannot truncate", e))?;
            return Err(too_large(format!(
                "the body goes on past {}",
                human_bytes(max_bytes)
            )));
        }
        file.write_all(&buf[..n])
            .map_err(|e| io_final("cannot write", e))?;
        done += n as u64;
        if last_report.elapsed() >= Duration::from_millis(250) {
            last_report = Instant::now();
            let rate = (done - start) as f64 / t0.elapsed().as_secs_f64().max(1e-3);
            let of = total
                .map(|t| format!(" of {}", human_bytes(t)))
                .unwrap_or_default();
            progress(
                done,
                total.unwrap_or(0),
                &format!(
                    "{label}: {}{of} at {}/s",
                    human_bytes(done),
                    human_bytes(rate as u64)
                ),
            );
        }
    }
    file.sync_all().map_err(|e| io_final("cannot sync", e))?;
    if let Some(t) = total {
        if done != t {
            return Err(Attempt::Retry(format!("body ended at byte {done} of {t}")));
        }
    }
    progress(
        done,
        total.unwrap_or(done),
        &format!("{label}: {} done", human_bytes(done)),
    );
    Ok(())
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The error and its sources on one line (reqwest's top-level message alone is vague).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
