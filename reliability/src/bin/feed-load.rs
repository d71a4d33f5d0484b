//! `feed-load`: the load client of `bench/feed.sh` — writers and change-feed subscribers against
//! running guidstore-servers (loopback only).
//!
//! ```text
//! feed-load run --write-url http://127.0.0.1:8080 --subscribe-url http://127.0.0.1:8081 \
//!     --writers 16 --subscribers 100 --seconds 5 [--latency]
//! feed-load hold --subscribe-url http://127.0.0.1:8080 --subscribers 1000 --seconds 10
//! ```
//!
//! `run`: `--writers` threads POST `/guid` on keep-alive connections for `--seconds` while
//! `--subscribers` Server-Sent-Event streams of `/events` (each on its own thread) count the
//! events they receive. It prints one line, `RESULT posts_per_s events_per_s_total
//! events_per_s_per_subscriber p50_ms p99_ms`: with `--latency`, the time from each POST's
//! acknowledgement to its event's arrival at the first subscriber (same process, same clock;
//! `-` without). Every subscriber must receive every acknowledged write's event (checked at the
//! end, within 30 s), else it fails.
//!
//! `hold`: opens `--subscribers` event streams, waits until the server has answered each with
//! its headers, holds them idle for `--seconds`, then prints `HELD N` (the caller measures the
//! server's memory and CPU meanwhile: it prints `READY` once all are open).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use guidstore_testkit::http::Connection;

#[derive(Debug, Parser)]
#[command(args_override_self = true)] // a later --seconds replaces an earlier one
struct Args {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Writers and counting subscribers.
    Run {
        /// The server the writers POST to (http://127.0.0.1:PORT).
        #[arg(long)]
        write_url: String,
        /// The server the subscribers stream from [default: --write-url].
        #[arg(long)]
        subscribe_url: Option<String>,
        #[arg(long, default_value_t = 16)]
        writers: usize,
        #[arg(long, default_value_t = 1)]
        subscribers: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Measure acknowledgement-to-event latency at the first subscriber.
        #[arg(long)]
        latency: bool,
    },
    /// Idle subscribers, held open.
    Hold {
        #[arg(long)]
        subscribe_url: String,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn address(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let address: SocketAddr = rest.trim_end_matches('/').parse().unwrap_or_else(|_| panic!("not HOST:PORT: {url}"));
    assert!(address.ip().is_loopback(), "only loopback servers are targeted");
    address
}

/// Opens an event stream of everything after `after`.
fn open_stream(address: SocketAddr, after: u64) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    let request = format!("GET /events?after={after} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream
}

/// The newest revision now: the feed read page by page from the start (the benchmark's
/// databases are small).
fn newest(address: SocketAddr) -> u64 {
    let mut connection = Connection::connect(address, Duration::from_secs(10)).expect("connect");
    let mut after = 0;
    loop {
        let response = connection
            .request("GET", &format!("/events?after={after}&wait=0&limit=10000"), &[], None)
            .expect("GET /events");
        let next = response.json()["next"].as_u64().expect("next");
        if next == after {
            return after;
        }
        after = next;
    }
}

/// One subscriber: counts events; with `arrivals`, notes when each GUID's event arrived.
fn subscribe(
    address: SocketAddr,
    after: u64,
    count: Arc<AtomicU64>,
    arrivals: Option<Arc<Mutex<HashMap<String, Instant>>>>,
    stop: Arc<AtomicBool>,
) {
    let mut stream = open_stream(address, after);
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let (mut pending, mut buffer) = (Vec::new(), vec![0u8; 64 * 1024]);
    while !stop.load(Ordering::Acquire) {
        let n = match stream.read(&mut buffer) {
            Ok(0) => panic!("an event stream ended"),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => panic!("reading an event stream: {e}"),
        };
        let now = Instant::now();
        pending.extend_from_slice(&buffer[..n]);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &pending[start..]) {
            let line = &pending[start..start + end];
            if line.starts_with(b"id: ") {
                count.fetch_add(1, Ordering::Relaxed);
            } else if let Some(arrivals) = &arrivals
                && line.starts_with(b"data: ")
                && let Some(at) = memchr::memmem::find(line, b"\"guid\":\"")
                && let Some(guid) = line.get(at + 8..at + 40)
            {
                arrivals.lock().unwrap().insert(String::from_utf8_lossy(guid).into_owned(), now);
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(write_url: &str, subscribe_url: &str, writers: usize, subscribers: usize, seconds: u64, latency: bool) {
    let (write_at, subscribe_at) = (address(write_url), address(subscribe_url));
    let start_after = newest(write_at);
    let stop_subscribers = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = (0..subscribers).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let arrivals = latency.then(|| Arc::new(Mutex::new(HashMap::new())));
    let threads: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(index, count)| {
            let (count, stop) = (Arc::clone(count), Arc::clone(&stop_subscribers));
            let arrivals = if index == 0 { arrivals.clone() } else { None };
            std::thread::spawn(move || subscribe(subscribe_at, start_after, count, arrivals, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // the streams are open
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let acks: Arc<Mutex<Vec<(String, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let writer_threads: Vec<_> = (0..writers)
        .map(|_| {
            let acks = Arc::clone(&acks);
            std::thread::spawn(move || {
                let mut connection = Connection::connect(write_at, Duration::from_secs(10)).expect("connect");
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let response = connection.request("POST", "/guid", &[], Some(b"{}")).expect("POST");
                    assert_eq!(response.status, 201, "{response:?}");
                    let guid = response.json()["guid"].as_str().expect("guid").to_owned();
                    mine.push((guid, Instant::now()));
                }
                acks.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for thread in writer_threads {
        thread.join().expect("writer");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acknowledged = acks.lock().unwrap().len() as u64;
    let delivered_in_time: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    // Every subscriber gets every event (after the run, within 30 s).
    let wait_until = Instant::now() + Duration::from_secs(30);
    while counts.iter().any(|c| c.load(Ordering::Relaxed) < acknowledged) {
        assert!(Instant::now() < wait_until, "subscribers missed events: {acknowledged} acknowledged");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_subscribers.store(true, Ordering::Release);
    for thread in threads {
        thread.join().expect("subscriber");
    }
    let (p50, p99) = match &arrivals {
        None => ("-".to_owned(), "-".to_owned()),
        Some(arrivals) => {
            let arrivals = arrivals.lock().unwrap();
            let mut latencies: Vec<f64> = acks
                .lock()
                .unwrap()
                .iter()
                .map(|(guid, acked)| {
                    let arrived = arrivals.get(guid).expect("every event arrived");
                    arrived.saturating_duration_since(*acked).as_secs_f64() * 1000.0
                })
                .collect();
            latencies.sort_by(f64::total_cmp);
            (format!("{:.2}", percentile(&latencies, 0.5)), format!("{:.2}", percentile(&latencies, 0.99)))
        }
    };
    let posts = acknowledged as f64 / elapsed;
    let events = delivered_in_time as f64 / elapsed;
    println!("RESULT {posts:.0} {events:.0} {:.0} {p50} {p99}", events / subscribers.max(1) as f64);
}

fn raise_nofile() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn hold(subscribe_url: &str, subscribers: usize, seconds: u64) {
    raise_nofile();
    let at = address(subscribe_url);
    let after = newest(at);
    let mut streams: Vec<TcpStream> = (0..subscribers).map(|_| open_stream(at, after)).collect();
    // Each stream is open once its response head has arrived.
    for stream in &mut streams {
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).expect("read the response head"), 1, "a stream closed");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    }
    println!("READY");
    std::io::stdout().flush().expect("stdout");
    std::thread::sleep(Duration::from_secs(seconds));
    println!("HELD {}", streams.len());
}

fn main() {
    match Args::parse().command {
        Mode::Run { write_url, subscribe_url, writers, subscribers, seconds, latency } => {
            let subscribe_url = subscribe_url.unwrap_or_else(|| write_url.clone());
            run(&write_url, &subscribe_url, writers, subscribers, seconds, latency);
        }
        Mode::Hold { subscribe_url, subscribers, seconds } => hold(&subscribe_url, subscribers, seconds),
    }
}
