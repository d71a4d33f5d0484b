//! The server's logger: every line to the log file (server.log), through a buffer that a thread
//! of its own writes out, and every line but the access log's to the terminal too.
//!
//! A request thread only formats its line into a thread-local buffer and appends it to the shared
//! buffer under a short lock: no system call, no allocation once the buffers have grown, and the
//! timestamp's calendar part is formatted once per second per thread. The writer thread writes the
//! buffer out every [`FLUSH_INTERVAL`], or as soon as it holds [`WAKE_AT`] bytes. Should the disk
//! fall behind so far that the buffer reaches [`WRITE_SELF_AT`], the thread logging writes it
//! out itself: nothing is dropped, and memory stays bounded. [`log::Log::flush`] writes out
//! everything logged before it; `main` calls it before exiting, so a clean shutdown loses nothing.
//!
//! Lines read `2026-11-29T22:16:34.123456Z [INFO] message` (RFC 3339, UTC, microseconds).
//!
//! Access-log lines ([`log_access`]) skip the `log` facade's formatting: the request's handler
//! writes the line's bytes itself, stamped with the instant it already read to time the request
//! (turned into wall-clock time by an offset each thread reads from the system clock once a
//! second): no clock read of their own.

use std::cell::RefCell;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

/// The log target of the one-line-per-request access log.
pub const ACCESS_LOG: &str = "guidstore_server::access";

/// How long a thread turns instants into wall-clock time with the same offset before it reads
/// the system clock again.
const WALL_CLOCK_REFRESH: Duration = Duration::from_secs(1);

/// The log file of the installed logger ([`init`]), for [`log_access`].
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

/// How often the writer thread writes buffered lines out when fewer than [`WAKE_AT`] bytes wait.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Buffered bytes at which the writer thread is woken at once.
pub const WAKE_AT: usize = 64 * 1024;
/// Buffered bytes at which a logging thread writes the buffer out itself (the writer thread is
/// behind: the disk is slow).
pub const WRITE_SELF_AT: usize = 8 * 1024 * 1024;

/// Installs the server's logger: lines at `level` or above to `path` (appended) and, but for
/// the access log, to stderr.
pub fn init(path: &Path, level: LevelFilter, colors: bool) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let terminal_config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let colors = if colors { ColorChoice::Auto } else { ColorChoice::Never };
    let file = LogFile::start(file)?;
    let shared = Arc::clone(&file.shared);
    let logger =
        ServerLogger { level, file, terminal: TermLogger::new(level, terminal_config, TerminalMode::Stderr, colors) };
    log::set_boxed_logger(Box::new(logger)).map_err(std::io::Error::other)?;
    log::set_max_level(level);
    let _ = INSTALLED.set(shared);
    Ok(())
}

/// Logs one access-log line at `INFO` through the installed logger ([`init`]): `write` appends
/// the message's bytes (no newline), stamped with the wall-clock time of `at`. `false` when
/// [`init`] did not install the logger (the caller then logs through the `log` facade); the
/// caller checks the level first (`log::max_level()`).
pub fn log_access(at: Instant, write: impl FnOnce(&mut Vec<u8>)) -> bool {
    let Some(shared) = INSTALLED.get() else { return false };
    LINE.with_borrow_mut(|line| {
        let now = line.wall_clock_at(at);
        line.begin(now, Level::Info);
        write(&mut line.bytes);
        line.bytes.push(b'\n');
        shared.append(&line.bytes);
    });
    true
}

/// The installed logger: the log file for every line, the terminal for all but the access log.
struct ServerLogger {
    level: LevelFilter,
    file: LogFile,
    terminal: Box<TermLogger>,
}

impl Log for ServerLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        self.file.log(record);
        if record.target() != ACCESS_LOG {
            self.terminal.log(record);
        }
    }

    fn flush(&self) {
        self.file.flush();
        self.terminal.flush();
    }
}

/// A log file written by a thread of its own (see the module documentation).
pub struct LogFile {
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines not yet handed to the file.
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer thread.
    wake: Condvar,
    /// The file, and the buffer swapped with `pending` to write it out. Held while writing, so
    /// chunks reach the file in the order they were buffered.
    out: Mutex<Out>,
    /// Whether a failed write was reported on stderr (once).
    failed: AtomicBool,
}

struct Out {
    file: File,
    spare: Vec<u8>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a buffer is held leaves bytes, not broken invariants.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogFile {
    /// Appends to `file`, starting the writer thread.
    pub fn start(file: File) -> std::io::Result<LogFile> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(2 * WAKE_AT)),
            wake: Condvar::new(),
            out: Mutex::new(Out { file, spare: Vec::with_capacity(2 * WAKE_AT) }),
            failed: AtomicBool::new(false),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new().name("log-writer".to_owned()).spawn(move || {
            loop {
                let pending = lock(&writer.pending);
                let (pending, _) = writer
                    .wake
                    .wait_timeout_while(pending, FLUSH_INTERVAL, |pending| pending.len() < WAKE_AT)
                    .unwrap_or_else(PoisonError::into_inner);
                drop(pending);
                writer.write_out();
            }
        })?;
        Ok(LogFile { shared })
    }

    /// Buffers one line for `record`.
    pub fn log(&self, record: &Record<'_>) {
        LINE.with_borrow_mut(|line| {
            line.format(record);
            self.shared.append(&line.bytes);
        });
    }

    /// Writes every line buffered so far to the file.
    pub fn flush(&self) {
        self.shared.write_out();
    }
}

impl Shared {
    /// Appends whole lines to the buffer, waking the writer thread (or writing out) as needed.
    fn append(&self, lines: &[u8]) {
        let mut pending = lock(&self.pending);
        let before = pending.len();
        pending.extend_from_slice(lines);
        let after = pending.len();
        drop(pending);
        if before < WAKE_AT && after >= WAKE_AT {
            self.wake.notify_one();
        }
        if after >= WRITE_SELF_AT {
            self.write_out();
        }
    }

    fn write_out(&self) {
        let mut out = lock(&self.out);
        let out = &mut *out;
        std::mem::swap(&mut *lock(&self.pending), &mut out.spare);
        if out.spare.is_empty() {
            return;
        }
        if let Err(error) = out.file.write_all(&out.spare)
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            eprintln!("guidstore-server: writing the log file failed (reported once): {error}");
        }
        out.spare.clear();
    }
}

thread_local! {
    static LINE: RefCell<Line> =
        const { RefCell::new(Line { bytes: Vec::new(), second: u64::MAX, date: [0; 19], wall_clock: None }) };
}

/// A thread's line being formatted, the calendar part of its last timestamp, and its offset from
/// instants to wall-clock time.
struct Line {
    bytes: Vec<u8>,
    /// The Unix second `date` shows.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    date: [u8; 19],
    /// An instant and the wall-clock time (since the Unix epoch) read with it.
    wall_clock: Option<(Instant, Duration)>,
}

/// The wall-clock time now, since the Unix epoch.
fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Line {
    fn format(&mut self, record: &Record<'_>) {
        self.begin(unix_now(), record.level());
        let _ = write!(self.bytes, "{}", record.args());
        self.bytes.push(b'\n');
    }

    /// The wall-clock time of `at` (since the Unix epoch), from this thread's offset, read again
    /// from the system clock when it is [`WALL_CLOCK_REFRESH`] old (so a change of the system
    /// clock shows within that).
    fn wall_clock_at(&mut self, at: Instant) -> Duration {
        if let Some((instant, unix)) = self.wall_clock
            && let Some(since) = at.checked_duration_since(instant)
            && since < WALL_CLOCK_REFRESH
        {
            return unix + since;
        }
        let unix = unix_now();
        let instant = Instant::now();
        self.wall_clock = Some((instant, unix));
        unix.saturating_sub(instant.saturating_duration_since(at))
    }

    /// Starts the line: clears it and writes the timestamp of `now` (since the Unix epoch) and
    /// the level.
    fn begin(&mut self, now: Duration, level: Level) {
        if now.as_secs() != self.second {
            self.second = now.as_secs();
            self.date = date_time(self.second);
        }
        self.bytes.clear();
        self.bytes.extend_from_slice(&self.date);
        // Six digits of microseconds, two at a time.
        let micros = now.subsec_micros();
        let [high, middle, low] = [micros / 10_000, micros / 100 % 100, micros % 100].map(two_digits);
        let fraction = [b'.', high[0], high[1], middle[0], middle[1], low[0], low[1], b'Z', b' ', b'['];
        self.bytes.extend_from_slice(&fraction);
        self.bytes.extend_from_slice(level.as_str().as_bytes());
        self.bytes.extend_from_slice(b"] ");
    }
}

/// The two last decimal digits of `value`, as ASCII.
fn two_digits(value: u32) -> [u8; 2] {
    let value = value % 100;
    [b'0' + (value / 10) as u8, b'0' + (value % 10) as u8]
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix second, by the days-to-civil algorithm of Howard Hinnant's
/// `chrono`-compatible date algorithms (proleptic Gregorian calendar).
fn date_time(unix_seconds: u64) -> [u8; 19] {
    let days = unix_seconds / 86_400;
    let in_day = unix_seconds % 86_400;
    // Shifted to start on 0000-03-01, so that the leap day is the last day of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    let fields: [(usize, u64, u32); 6] = [
        (0, year, 4),
        (5, month, 2),
        (8, day, 2),
        (11, in_day / 3_600, 2),
        (14, in_day / 60 % 60, 2),
        (17, in_day % 60, 2),
    ];
    for (start, value, width) in fields {
        let mut value = value;
        for position in (start..start + width as usize).rev() {
            if let Some(slot) = out.get_mut(position) {
                *slot = b'0' + (value % 10) as u8;
            }
            value /= 10;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc_3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00"),
            (951_782_399, "2000-02-28T23:59:59"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_700_000_000, "2023-11-14T22:13:20"),
            (4_107_542_400, "2100-03-01T00:00:00"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(std::str::from_utf8(&date_time(seconds)).unwrap(), expected, "{seconds}");
        }
    }

    #[test]
    fn timestamps_have_six_digits_of_microseconds() {
        let mut line = Line { bytes: Vec::new(), second: u64::MAX, date: [0; 19], wall_clock: None };
        for (nanos, expected) in [
            (0, "1970-01-01T00:00:01.000000Z [INFO] "),
            (1_000, "1970-01-01T00:00:01.000001Z [INFO] "),
            (123_456_789, "1970-01-01T00:00:01.123456Z [INFO] "),
            (999_999_999, "1970-01-01T00:00:01.999999Z [INFO] "),
            (10_203_000, "1970-01-01T00:00:01.010203Z [INFO] "),
        ] {
            line.begin(Duration::new(1, nanos), Level::Info);
            assert_eq!(std::str::from_utf8(&line.bytes).unwrap(), expected, "{nanos}");
        }
    }

    #[test]
    fn every_line_reaches_the_file_in_order_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.log");
        std::fs::write(&path, "earlier line\n").unwrap();
        let file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let log = Arc::new(LogFile::start(file).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        log.log(
                            &Record::builder()
                                .args(format_args!("thread {thread} line {i}"))
                                .level(log::Level::Info)
                                .target(ACCESS_LOG)
                                .build(),
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("earlier line"));
        let mut next = [0; 4];
        for line in lines {
            let (stamp, message) = line.split_once(" [INFO] ").unwrap_or_else(|| panic!("{line:?}"));
            assert_eq!(
                (stamp.len(), stamp.as_bytes()[10], stamp.as_bytes()[19], stamp.ends_with('Z')),
                (27, b'T', b'.', true)
            );
            let (thread, i) = message.strip_prefix("thread ").unwrap().split_once(" line ").unwrap();
            let thread: usize = thread.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[thread], "{line}");
            next[thread] += 1;
        }
        assert_eq!(next, [20_000; 4]);
    }
}
