//! Container logs in the CRI format the kubelet reads (`<RFC3339Nano> <stream> <P|F> <line>`),
//! and the kubelet's rendering for `/containerLogs` (pkg/kubelet/kuberuntime/logs): tail on
//! the file's lines, `since` on timestamps, stream filter, optional timestamp prefix, byte
//! limit.

use chrono::{DateTime, SecondsFormat, Utc};

/// containerd splits longer lines into partial (`P`) entries of this size.
pub const MAX_ENTRY: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Go's `time.RFC3339Nano`: nanoseconds with trailing zeros trimmed, `Z` for UTC.
pub fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // "2024-01-01T00:00:00.120000000Z" -> "2024-01-01T00:00:00.12Z"
    let Some(body) = s.strip_suffix('Z') else {
        return s;
    };
    match body.split_once('.') {
        Some((whole, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{whole}Z")
            } else {
                format!("{whole}.{frac}Z")
            }
        }
        None => s,
    }
}

/// One log entry, as written to the file.
pub fn encode(time: DateTime<Utc>, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{} {} {} ",
        rfc3339_nano(time),
        stream.as_str(),
        if partial { "P" } else { "F" }
    )
    .into_bytes();
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Splits a stream of bytes into log entries: complete lines (without their newline) as `F`,
/// overlong ones in `P` pieces. Keeps the unfinished tail for the next chunk.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; returns (partial, content) entries ready to be written.
    pub fn push(&mut self, data: &[u8]) -> Vec<(bool, Vec<u8>)> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n')
                && nl <= MAX_ENTRY
            {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                out.push((false, line[..line.len() - 1].to_vec()));
                continue;
            }
            if self.pending.len() > MAX_ENTRY {
                let piece: Vec<u8> = self.pending.drain(..MAX_ENTRY).collect();
                out.push((true, piece));
                continue;
            }
            break;
        }
        out
    }

    /// End of stream: what remains is a last (unterminated) line.
    pub fn finish(&mut self) -> Option<(bool, Vec<u8>)> {
        (!self.pending.is_empty()).then(|| (false, std::mem::take(&mut self.pending)))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    pub partial: bool,
    pub content: Vec<u8>,
}

pub fn parse_line(line: &[u8]) -> Option<Entry> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(Entry {
        time,
        stream,
        partial,
        content,
    })
}

/// The `/containerLogs` query options the kubelet honours.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<usize>,
    pub timestamps: bool,
    /// None: both streams.
    pub stream: Option<Stream>,
}

/// Renders log entries for a client, keeping state across calls (for `follow`): whether the
/// previous entry ended a line (timestamps prefix only line starts) and the bytes left.
pub struct Renderer {
    opts: LogOptions,
    at_line_start: bool,
    written: usize,
}

impl Renderer {
    pub fn new(opts: LogOptions) -> Renderer {
        Renderer {
            opts,
            at_line_start: true,
            written: 0,
        }
    }

    /// Whether the byte limit is used up (the stream should end).
    pub fn done(&self) -> bool {
        self.opts.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// The client's bytes for the raw file lines in `lines`.
    pub fn render(&mut self, lines: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            if self.done() {
                break;
            }
            let Some(e) = parse_line(line) else { continue };
            if self.opts.since.is_some_and(|s| e.time < s) {
                continue;
            }
            if self.opts.stream.is_some_and(|s| s != e.stream) {
                continue;
            }
            let mut piece = Vec::new();
            if self.opts.timestamps && self.at_line_start {
                piece.extend_from_slice(rfc3339_nano(e.time).as_bytes());
                piece.push(b' ');
            }
            piece.extend_from_slice(&e.content);
            if !e.partial {
                piece.push(b'\n');
            }
            self.at_line_start = !e.partial;
            if let Some(limit) = self.opts.limit_bytes {
                piece.truncate(limit - self.written);
            }
            self.written += piece.len();
            out.extend_from_slice(&piece);
        }
        out
    }
}

/// The raw lines of a log file's content, the last `tail` of them if asked.
pub fn split_lines(content: &[u8], tail: Option<usize>) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = content
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l.ends_with(b"\n"))
        .collect();
    if let Some(t) = tail {
        let skip = lines.len().saturating_sub(t);
        lines.drain(..skip);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, nanos).unwrap()
    }

    #[test]
    fn timestamps_like_go() {
        assert_eq!(rfc3339_nano(t(0)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_nano(t(120_000_000)), "2023-11-14T22:13:20.12Z");
        assert_eq!(
            rfc3339_nano(t(123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn entries_round_trip() {
        let line = encode(t(5), Stream::Stderr, false, b"hello world");
        assert_eq!(
            line,
            b"2023-11-14T22:13:20.000000005Z stderr F hello world\n"
        );
        let e = parse_line(&line).unwrap();
        assert_eq!(e.time, t(5));
        assert_eq!(e.stream, Stream::Stderr);
        assert!(!e.partial);
        assert_eq!(e.content, b"hello world");
        let empty = parse_line(&encode(t(0), Stream::Stdout, false, b"")).unwrap();
        assert_eq!(empty.content, b"");
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn splitter_makes_full_and_partial_entries() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), vec![(false, b"a".to_vec())]);
        assert_eq!(
            s.push(b"c\n\n"),
            vec![(false, b"bc".to_vec()), (false, vec![])]
        );
        let long = vec![b'x'; MAX_ENTRY + 10];
        let out = s.push(&long);
        assert_eq!(out.len(), 1);
        assert!(out[0].0 && out[0].1.len() == MAX_ENTRY);
        assert_eq!(s.push(b"\n"), vec![(false, vec![b'x'; 10])]);
        s.push(b"tail");
        assert_eq!(s.finish(), Some((false, b"tail".to_vec())));
        assert_eq!(s.finish(), None);
    }

    fn log() -> Vec<u8> {
        let mut l = Vec::new();
        l.extend(encode(t(1), Stream::Stdout, false, b"one"));
        l.extend(encode(t(2), Stream::Stderr, false, b"two"));
        l.extend(encode(t(3), Stream::Stdout, true, b"thr"));
        l.extend(encode(t(4), Stream::Stdout, false, b"ee"));
        l.extend(b"2023-11-14T22:13:20Z stdout F unfinished-without-newline");
        l
    }

    #[test]
    fn renders_with_options() {
        let content = log();
        let all = split_lines(&content, None);
        assert_eq!(
            all.len(),
            4,
            "an unterminated last line is not yet an entry"
        );
        let mut r = Renderer::new(LogOptions::default());
        assert_eq!(r.render(&all), b"one\ntwo\nthree\n");

        let mut r = Renderer::new(LogOptions {
            stream: Some(Stream::Stdout),
            timestamps: true,
            ..Default::default()
        });
        assert_eq!(
            String::from_utf8(r.render(&all)).unwrap(),
            "2023-11-14T22:13:20.000000001Z one\n2023-11-14T22:13:20.000000003Z three\n"
        );

        let tail = split_lines(&content, Some(2));
        let mut r = Renderer::new(LogOptions::default());
        assert_eq!(r.render(&tail), b"three\n");

        let mut r = Renderer::new(LogOptions {
            since: Some(t(2)),
            ..Default::default()
        });
        assert_eq!(r.render(&all), b"two\nthree\n");

        let mut r = Renderer::new(LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        });
        assert_eq!(r.render(&all), b"one\ntw");
        assert!(r.done());
        assert_eq!(r.render(&all), b"");
    }
}
