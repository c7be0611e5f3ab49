//! Container logs as `kubectl logs` shows them: the runtime writes each container's output in the CRI
//! log format (`<RFC 3339 time> <stream> <P|F> <text>`, P for a partial line), one file per attempt; this
//! reads them back with upstream's options: tailLines, timestamps, sinceSeconds/sinceTime, limitBytes,
//! follow (until the container stops) and previous (the attempt before).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

/// How often a followed log is read again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `kubectl logs` options, from the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since: Option<jiff::Timestamp>,
}

impl LogOptions {
    /// From query pairs; a malformed number is an error naming the parameter.
    pub fn from_query<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        now: jiff::Timestamp,
    ) -> Result<LogOptions, String> {
        let mut options = LogOptions::default();
        for (key, value) in pairs {
            let number =
                |what: &str| value.parse::<i64>().map_err(|_| format!("invalid {what} {value:?}: not a number"));
            match key {
                "follow" => options.follow = value == "true" || value == "1",
                "previous" => options.previous = value == "true" || value == "1",
                "timestamps" => options.timestamps = value == "true" || value == "1",
                "tailLines" => options.tail_lines = Some(number("tailLines")?.max(0) as usize),
                "limitBytes" => options.limit_bytes = Some(number("limitBytes")?.max(1) as usize),
                "sinceSeconds" => {
                    let seconds = number("sinceSeconds")?.max(1);
                    options.since = Some(now - jiff::SignedDuration::from_secs(seconds));
                }
                "sinceTime" => {
                    options.since =
                        Some(value.parse().map_err(|_| format!("invalid sinceTime {value:?}: not RFC 3339"))?);
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry<'a> {
    time: &'a str,
    partial: bool,
    text: &'a str,
}

fn parse(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Entry { time, partial: tag == "P", text })
}

/// Renders whole lines of CRI log text as `kubectl logs` prints them (partial lines joined), keeping
/// what `options` selects. Text after the last newline is not a whole line yet and is left out; a
/// line left in partial pieces is shown as it is (without a newline, as upstream) once the log has
/// `ended` (the container wrote it and stopped), and otherwise waits for its end.
pub fn render(text: &str, options: &LogOptions, ended: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    let mut pending_time: Option<&str> = None;
    for raw in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let Some(entry) = parse(raw.trim_end_matches('\n')) else { continue };
        let time = *pending_time.get_or_insert(entry.time);
        pending.push_str(entry.text);
        if entry.partial {
            continue;
        }
        let keep = options.since.is_none_or(|since| time.parse::<jiff::Timestamp>().is_ok_and(|t| t >= since));
        if keep {
            lines.push(if options.timestamps { format!("{time} {pending}\n") } else { format!("{pending}\n") });
        }
        pending.clear();
        pending_time = None;
    }
    if ended && !pending.is_empty() {
        let time = pending_time.unwrap_or_default();
        lines.push(if options.timestamps { format!("{time} {pending}") } else { pending });
    }
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    lines
}

/// How much of `text` ends with a complete entry (a whole line not marked partial): what a read may
/// consume, leaving a line still being written, or split over partial entries, for the next read.
fn complete_len(text: &str) -> usize {
    let mut position = 0;
    let mut complete = 0;
    for line in text.split_inclusive('\n') {
        position += line.len();
        if line.ends_with('\n') && parse(line.trim_end_matches('\n')).is_some_and(|e| !e.partial) {
            complete = position;
        }
    }
    complete
}

/// The file's bytes from `offset` on.
async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// The log at `path` as a byte stream: what is there now, then (with follow) what is appended while
/// `running` says the container runs.
pub fn stream<F, Fut>(path: PathBuf, options: LogOptions, running: F) -> impl Stream<Item = std::io::Result<Bytes>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    struct State<F> {
        path: PathBuf,
        options: LogOptions,
        running: F,
        offset: u64,
        sent: usize,
        first: bool,
        done: bool,
    }
    let state = State { path, options, running, offset: 0, sent: 0, first: true, done: false };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            let fresh = match read_from(&state.path, state.offset).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) => return Some((Err(error), State { done: true, ..state })),
            };
            // The last read takes every whole line, a trailing partial one included.
            let last = !state.options.follow;
            let consumed = if last { fresh.rfind('\n').map_or(0, |i| i + 1) } else { complete_len(&fresh) };
            let mut options = state.options.clone();
            if !state.first {
                options.tail_lines = None;
            }
            let mut out: Vec<u8> = render(&fresh[..consumed], &options, last).concat().into_bytes();
            state.offset += consumed as u64;
            state.first = false;
            if let Some(limit) = state.options.limit_bytes {
                let room = limit.saturating_sub(state.sent);
                if out.len() >= room {
                    out.truncate(room);
                    state.done = true;
                }
            }
            state.sent += out.len();
            if !state.options.follow {
                state.done = true;
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), state));
            }
            if state.done {
                return None;
            }
            if !(state.running)().await {
                // One last read for what it wrote before stopping.
                state.options.follow = false;
                continue;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n\
2026-01-01T00:00:02Z stderr P tw\n\
2026-01-01T00:00:02.5Z stderr F o\n\
2026-01-01T00:00:03Z stdout F three\n\
2026-01-01T00:00:04Z stdout F unfinis";

    #[test]
    fn partial_lines_are_joined_and_an_unfinished_one_waits() {
        assert_eq!(render(LOG, &LogOptions::default(), false), ["one\n", "two\n", "three\n"]);
    }

    #[test]
    fn tail_timestamps_and_since_select_as_kubectl_asks() {
        let tail = LogOptions { tail_lines: Some(1), timestamps: true, ..Default::default() };
        assert_eq!(render(LOG, &tail, false), ["2026-01-01T00:00:03Z three\n"]);
        let since = LogOptions { since: Some("2026-01-01T00:00:02Z".parse().expect("time")), ..Default::default() };
        assert_eq!(render(LOG, &since, false), ["two\n", "three\n"]);
    }

    #[test]
    fn options_come_from_the_query_with_clear_errors() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let options =
            LogOptions::from_query([("tailLines", "5"), ("follow", "true"), ("sinceSeconds", "60")].into_iter(), now)
                .expect("options");
        assert_eq!(options.tail_lines, Some(5));
        assert!(options.follow);
        assert_eq!(options.since, Some("2026-01-01T00:00:00Z".parse().expect("time")));
        let error = LogOptions::from_query([("tailLines", "x")].into_iter(), now).expect_err("bad number");
        assert_eq!(error, "invalid tailLines \"x\": not a number");
    }

    #[test]
    fn a_read_stops_before_a_line_still_in_partial_pieces() {
        let text = "t stdout F done\nt stdout P half\nt stdout P way\n";
        assert_eq!(complete_len(text), "t stdout F done\n".len());
        assert_eq!(render(text, &LogOptions::default(), true), ["done\n", "halfway"], "shown once the log ended");
    }

    #[tokio::test]
    async fn limit_bytes_cuts_bytes_without_panicking_inside_a_character() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2026-01-01T00:00:01Z stdout F héllo\n").expect("write");
        let options = LogOptions { limit_bytes: Some(2), ..Default::default() };
        let chunks: Vec<Bytes> = stream(path, options, || async { false }).map(|c| c.expect("chunk")).collect().await;
        assert_eq!(chunks.concat(), "hé".as_bytes()[..2].to_vec());
    }

    #[tokio::test]
    async fn a_stream_reads_the_file_and_honours_limit_bytes() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).expect("write");
        let options = LogOptions { limit_bytes: Some(6), ..Default::default() };
        let chunks: Vec<Bytes> = stream(path, options, || async { false }).map(|c| c.expect("chunk")).collect().await;
        assert_eq!(chunks.concat(), b"one\ntw");
    }
}
