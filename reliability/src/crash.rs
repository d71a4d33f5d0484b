//! The crash-durability check: concurrent clients write through a real server, the server is
//! killed (`SIGKILL`) or terminated (`SIGTERM`) at a random moment, restarted on the same database,
//! and every record is compared with what the server acknowledged.
//!
//! Bookkeeping. Every GUID belongs to exactly one client thread, which sends one request at a time,
//! so each GUID has at most one operation in flight. Per GUID, a [`Slot`] keeps the state the last
//! *acknowledged* (2xx) write left (`known`), and, while a request is unanswered, the state that
//! request would leave (`pending`). A request that gets no answer (the server died, or closed the
//! connection) leaves its GUID *uncertain*: it is not touched again in that cycle. After the
//! restart, a record must equal `known`, or `pending` if one was in flight; anything else is a lost
//! (or phantom) write. The observed state then becomes `known` for the next cycle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guidstore_testkit::http::{Connection, Response};
use serde_json::{Map, Value, json};

use crate::rng::Rng;
use crate::server::{Server, ServerConfig};

/// What a record looks like to a client: absent, or its expiry and metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordState {
    /// No live record (never created, or deleted).
    Absent,
    /// A live record.
    Present {
        /// `expire` as the server writes it (a decimal string).
        expire: String,
        /// Every key but `guid` and `expire`.
        metadata: Map<String, Value>,
    },
}

impl RecordState {
    /// The state described by a record body (`{"guid":…,"expire":"…",…}`) for `guid`.
    pub fn from_body(guid: &str, body: &[u8]) -> Result<RecordState, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| format!("record body is not JSON: {e}"))?;
        let Value::Object(mut object) = value else { return Err("record body is not an object".into()) };
        match object.shift_remove("guid") {
            Some(Value::String(text)) if text == guid => {}
            other => return Err(format!("record body has guid {other:?}, expected {guid}")),
        }
        let expire = match object.shift_remove("expire") {
            Some(Value::String(text)) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text,
            other => return Err(format!("record body has expire {other:?}, expected a decimal string")),
        };
        Ok(RecordState::Present { expire, metadata: object })
    }

    /// The state after a JSON merge patch of top-level keys (`null` removes), and maybe a new expiry.
    pub fn patched(&self, expire: Option<&str>, changes: &Map<String, Value>) -> RecordState {
        match self {
            RecordState::Absent => RecordState::Absent,
            RecordState::Present { expire: old, metadata } => {
                let mut metadata = metadata.clone();
                for (key, value) in changes {
                    if value.is_null() {
                        metadata.shift_remove(key);
                    } else {
                        metadata.insert(key.clone(), value.clone());
                    }
                }
                RecordState::Present { expire: expire.unwrap_or(old).to_owned(), metadata }
            }
        }
    }
}

/// One GUID's bookkeeping.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The GUID.
    pub guid: String,
    /// The state the last acknowledged write left.
    pub known: RecordState,
    /// The entity-tag of `known` when the server told it (201/200 or a verified GET).
    pub etag: Option<String>,
    /// The state an unanswered request would leave, if one is in flight.
    pub pending: Option<RecordState>,
}

impl Slot {
    /// A GUID nobody has written yet.
    pub fn new(guid: String) -> Slot {
        Slot { guid, known: RecordState::Absent, etag: None, pending: None }
    }

    /// Checks the state observed after a restart; on success it becomes `known`.
    pub fn verify(&mut self, observed: RecordState, observed_etag: Option<String>) -> Result<(), String> {
        let matches_known = observed == self.known;
        let matches_pending = self.pending.as_ref() == Some(&observed);
        if !matches_known && !matches_pending {
            let result = Err(format!(
                "{}: expected {:?}{}, found {:?}",
                self.guid,
                self.known,
                self.pending.as_ref().map(|p| format!(" or (in flight) {p:?}")).unwrap_or_default(),
                observed
            ));
            self.known = observed;
            self.etag = observed_etag;
            self.pending = None;
            return result;
        }
        let etag_check = if matches_known && self.pending.is_none() && observed != RecordState::Absent {
            match (&self.etag, &observed_etag) {
                (Some(acked), Some(seen)) if acked != seen => {
                    Err(format!("{}: ETag {acked} acknowledged, {seen} after restart for the same record", self.guid))
                }
                _ => Ok(()),
            }
        } else {
            Ok(())
        };
        self.known = observed;
        self.etag = observed_etag;
        self.pending = None;
        etag_check
    }
}

/// How the server is stopped in each cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `kill -9`.
    Kill,
    /// `SIGTERM`: graceful shutdown, which must exit 0.
    Term,
}

/// Settings of a crash-test run.
#[derive(Debug, Clone)]
pub struct CrashConfig {
    /// The server binary.
    pub binary: std::path::PathBuf,
    /// Kill/restart cycles.
    pub cycles: u32,
    /// Concurrent client threads.
    pub clients: usize,
    /// GUIDs owned by each client.
    pub guids_per_client: usize,
    /// The stop comes after a random time in this range of milliseconds of load.
    pub run_ms: (u64, u64),
    /// `SIGKILL` or `SIGTERM`.
    pub mode: StopMode,
    /// The PRNG seed.
    pub seed: u64,
    /// Further server flags (e.g. `--sync full`).
    pub server_args: Vec<String>,
    /// Keep the database and logs here instead of a temporary directory.
    pub dir: Option<std::path::PathBuf>,
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Cycles completed.
    pub cycles: u32,
    /// Acknowledged (2xx) creates, patches and deletes, all checked after a restart.
    pub acknowledged_writes: u64,
    /// Requests unanswered when the server stopped (either outcome accepted).
    pub in_flight_at_stop: u64,
    /// Record checks made after restarts.
    pub records_verified: u64,
    /// Acknowledged writes missing or altered after a restart (must be empty).
    pub lost: Vec<String>,
    /// Answers that contradicted the acknowledged state while the server ran (must be empty).
    pub wrong_answers: Vec<String>,
    /// 5xx answers (counted, treated as unacknowledged).
    pub server_errors: u64,
    /// SIGTERM runs that did not exit 0 in time (must be empty).
    pub bad_exits: Vec<String>,
}

impl Summary {
    /// Whether nothing acknowledged was lost and every answer and exit was right.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.wrong_answers.is_empty() && self.bad_exits.is_empty()
    }

    /// The one-line summary.
    pub fn line(&self) -> String {
        format!(
            "crash-test: {} cycles, {} acknowledged writes verified, {} lost ({} records checked, {} in flight at stop, {} wrong answers, {} 5xx, {} bad exits)",
            self.cycles,
            self.acknowledged_writes,
            self.lost.len(),
            self.records_verified,
            self.in_flight_at_stop,
            self.wrong_answers.len(),
            self.server_errors,
            self.bad_exits.len()
        )
    }
}

#[derive(Debug, Default)]
struct ClientReport {
    acknowledged: u64,
    in_flight: u64,
    wrong_answers: Vec<String>,
    server_errors: u64,
}

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A far-future expiry, as the JSON value to send and the string the server will answer.
fn random_expire(rng: &mut Rng) -> (Value, String) {
    let seconds = unix_now() + 10 * 365 * 86_400 + rng.below(365 * 86_400);
    let value = if rng.below(2) == 0 { json!(seconds) } else { json!(seconds.to_string()) };
    (value, seconds.to_string())
}

fn random_text(rng: &mut Rng, max: u64) -> String {
    let len = rng.below(max + 1) as usize;
    (0..len).map(|_| char::from(b'a' + rng.below(26) as u8)).collect()
}

/// One client: owns `slots`, writes until `stop` or until the server is gone.
fn run_client(
    addr: SocketAddr,
    client: usize,
    cycle: u32,
    slots: &mut [Slot],
    rng: &mut Rng,
    stop: &AtomicBool,
) -> ClientReport {
    let mut report = ClientReport::default();
    let mut uncertain = vec![false; slots.len()];
    let mut connection = match Connection::connect(addr, IO_TIMEOUT) {
        Ok(c) => c,
        Err(_) => return report,
    };
    let mut seq: u64 = 0;
    let max_attempts = 1_000_000u64;
    for _ in 0..max_attempts {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if connection.is_closed() {
            match Connection::connect(addr, IO_TIMEOUT) {
                Ok(c) => connection = c,
                Err(_) => break,
            }
        }
        let candidates: Vec<usize> = (0..slots.len()).filter(|i| !uncertain[*i]).collect();
        if candidates.is_empty() {
            break;
        }
        let index = candidates[rng.below(candidates.len() as u64) as usize];
        seq += 1;
        let guid = slots[index].guid.clone();
        let known = slots[index].known.clone();
        // Build the request and the state it leaves when it succeeds.
        let (method, path, body, if_match, expected, success) = match &known {
            RecordState::Absent => {
                let (expire_value, expire_text) = random_expire(rng);
                let mut object = Map::new();
                let by_body = rng.below(10) == 0;
                if by_body {
                    object.insert("guid".into(), json!(guid));
                }
                object.insert("expire".into(), expire_value);
                object.insert("user".into(), json!("crash-test"));
                object.insert("client".into(), json!(client));
                object.insert("cycle".into(), json!(cycle));
                object.insert("seq".into(), json!(seq));
                object.insert("payload".into(), json!(random_text(rng, 200)));
                let mut metadata = object.clone();
                metadata.shift_remove("guid");
                metadata.shift_remove("expire");
                let expected = RecordState::Present { expire: expire_text, metadata };
                let path = if by_body { "/guid".to_owned() } else { format!("/guid/{guid}") };
                ("POST", path, Some(Value::Object(object)), None, expected, 201)
            }
            RecordState::Present { .. } => {
                if rng.below(10) < 7 {
                    let mut changes = Map::new();
                    changes.insert("seq".into(), json!(seq));
                    changes.insert("cycle".into(), json!(cycle));
                    changes.insert(
                        "note".into(),
                        if rng.below(3) == 0 { Value::Null } else { json!(random_text(rng, 50)) },
                    );
                    let mut body = changes.clone();
                    let new_expire = if rng.below(4) == 0 {
                        let (value, text) = random_expire(rng);
                        body.insert("expire".into(), value);
                        Some(text)
                    } else {
                        None
                    };
                    let expected = known.patched(new_expire.as_deref(), &changes);
                    let if_match = if rng.below(2) == 0 { slots[index].etag.clone() } else { None };
                    ("PATCH", format!("/guid/{guid}"), Some(Value::Object(body)), if_match, expected, 200)
                } else {
                    let if_match = if rng.below(2) == 0 { slots[index].etag.clone() } else { None };
                    ("DELETE", format!("/guid/{guid}"), None, if_match, RecordState::Absent, 204)
                }
            }
        };
        let body_bytes = body.map(|b| b.to_string().into_bytes());
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(tag) = &if_match {
            headers.push(("If-Match", tag));
        }
        slots[index].pending = Some(expected.clone());
        let response: Response = match connection.request(method, &path, &headers, body_bytes.as_deref()) {
            Ok(r) => r,
            Err(error) => {
                if std::env::var_os("CRASH_TEST_DEBUG").is_some() {
                    eprintln!(
                        "client {client}: {method} {path}: no answer: {error} (stop={})",
                        stop.load(Ordering::Relaxed)
                    );
                }
                // No answer: the write may or may not have happened. Leave it pending.
                uncertain[index] = true;
                report.in_flight += 1;
                continue;
            }
        };
        if response.status >= 500 {
            report.server_errors += 1;
            uncertain[index] = true;
            report.in_flight += 1;
            continue;
        }
        if response.status != success {
            report.wrong_answers.push(format!(
                "{method} {path} answered {} {} while {guid} was {known:?}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
            // We no longer know the state: let the next verification settle it.
            uncertain[index] = true;
            continue;
        }
        if success != 204 {
            match RecordState::from_body(&guid, &response.body) {
                Ok(state) if state == expected => {}
                Ok(state) => {
                    report.wrong_answers.push(format!("{method} {path} answered {state:?}, expected {expected:?}"));
                }
                Err(e) => report.wrong_answers.push(format!("{method} {path}: {e}")),
            }
            if response.header("etag").is_none() {
                report.wrong_answers.push(format!("{method} {path} answered {success} without an ETag"));
            }
            if success == 201 && response.header("location") != Some(format!("/guid/{guid}").as_str()) {
                report.wrong_answers.push(format!("{method} {path}: Location {:?}", response.header("location")));
            }
        }
        let slot = &mut slots[index];
        slot.known = expected;
        slot.pending = None;
        slot.etag = response.header("etag").map(str::to_owned);
        report.acknowledged += 1;
    }
    report
}

/// Reads every slot's record from the server and checks it; counts into `summary`.
fn verify_all(addr: SocketAddr, clients: &mut [Vec<Slot>], summary: &mut Summary) -> Result<(), String> {
    let mut connection = Connection::connect(addr, IO_TIMEOUT).map_err(|e| format!("connect for verification: {e}"))?;
    for slot in clients.iter_mut().flat_map(|slots| slots.iter_mut()) {
        let path = format!("/guid/{}", slot.guid);
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            if connection.is_closed() {
                connection = Connection::connect(addr, IO_TIMEOUT).map_err(|e| format!("reconnect: {e}"))?;
            }
            match connection.request("GET", &path, &[], None) {
                Ok(r) if r.status < 500 || attempt >= 5 => break r,
                Ok(_) => std::thread::sleep(Duration::from_millis(200)),
                Err(e) if attempt >= 5 => return Err(format!("GET {path}: {e}")),
                Err(_) => {}
            }
        };
        let observed = match response.status {
            200 => RecordState::from_body(&slot.guid, &response.body)?,
            404 => RecordState::Absent,
            other => return Err(format!("GET {path} answered {other} during verification")),
        };
        summary.records_verified += 1;
        if let Err(problem) = slot.verify(observed, response.header("etag").map(str::to_owned)) {
            summary.lost.push(problem);
        }
    }
    Ok(())
}

/// Runs the whole test; `progress` gets one line per cycle.
pub fn run(config: &CrashConfig, mut progress: impl FnMut(&str)) -> Result<Summary, String> {
    let temp;
    let dir = match &config.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    let server_config = ServerConfig::in_dir(&config.binary, &dir).args(config.server_args.iter().cloned());
    let mut rng = Rng::new(config.seed);
    let mut clients: Vec<Vec<Slot>> =
        (0..config.clients).map(|_| (0..config.guids_per_client).map(|_| Slot::new(rng.guid())).collect()).collect();
    let mut client_rngs: Vec<Rng> = (0..config.clients).map(|_| Rng::new(rng.next_u64())).collect();
    let mut summary = Summary::default();
    let mut server = Server::start(&server_config).map_err(|e| format!("start server: {e}"))?;
    for cycle in 1..=config.cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = server.addr();
        let run_for = Duration::from_millis(rng.between(config.run_ms.0, config.run_ms.1));
        let started = Instant::now();
        let (reports, exit) = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter_mut()
                .zip(client_rngs.iter_mut())
                .enumerate()
                .map(|(index, (slots, client_rng))| {
                    let stop = Arc::clone(&stop);
                    scope.spawn(move || run_client(addr, index, cycle, slots, client_rng, &stop))
                })
                .collect();
            std::thread::sleep(run_for);
            let exit = match config.mode {
                StopMode::Kill => {
                    let _ = server.kill9();
                    None
                }
                StopMode::Term => Some(server.terminate(Duration::from_secs(20))),
            };
            stop.store(true, Ordering::Relaxed);
            let reports: Vec<ClientReport> = handles.into_iter().map(|h| h.join().unwrap_or_default()).collect();
            (reports, exit)
        });
        let mut cycle_acknowledged = 0;
        let mut cycle_in_flight = 0;
        for report in reports {
            cycle_acknowledged += report.acknowledged;
            cycle_in_flight += report.in_flight;
            summary.server_errors += report.server_errors;
            summary.wrong_answers.extend(report.wrong_answers);
        }
        let how = match (config.mode, exit) {
            (StopMode::Kill, _) => "kill -9".to_owned(),
            (StopMode::Term, Some(Ok(status))) if status.success() => "SIGTERM, exit 0".to_owned(),
            (StopMode::Term, Some(Ok(status))) => {
                summary.bad_exits.push(format!("cycle {cycle}: {status}"));
                format!("SIGTERM, {status}")
            }
            (StopMode::Term, other) => {
                summary.bad_exits.push(format!("cycle {cycle}: {other:?}"));
                "SIGTERM, no clean exit".to_owned()
            }
        };
        summary.acknowledged_writes += cycle_acknowledged;
        summary.in_flight_at_stop += cycle_in_flight;
        let lost_before = summary.lost.len();
        server = Server::start(&server_config).map_err(|e| format!("restart after cycle {cycle}: {e}"))?;
        verify_all(server.addr(), &mut clients, &mut summary)?;
        summary.cycles = cycle;
        progress(&format!(
            "cycle {cycle}/{}: {how} after {} ms of load, {cycle_acknowledged} acknowledged writes, {cycle_in_flight} in flight, {} records verified, {} lost",
            config.cycles,
            started.elapsed().as_millis(),
            clients.iter().map(Vec::len).sum::<usize>(),
            summary.lost.len() - lost_before
        ));
    }
    match server.terminate(Duration::from_secs(20)) {
        Ok(status) if status.success() => {}
        other => summary.bad_exits.push(format!("final shutdown: {other:?}")),
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn present(expire: &str, metadata: Value) -> RecordState {
        let Value::Object(metadata) = metadata else { panic!("object") };
        RecordState::Present { expire: expire.into(), metadata }
    }

    #[test]
    fn from_body_splits_guid_expire_and_metadata() {
        let guid = "9094E4C980C74043A4B586B420E69DDF";
        let body = format!(r#"{{"guid":"{guid}","expire":"1800000000","user":"x","n":1}}"#);
        assert_eq!(RecordState::from_body(guid, body.as_bytes()), Ok(present("1800000000", json!({"user":"x","n":1}))));
        assert!(RecordState::from_body(guid, br#"{"guid":"00","expire":"1"}"#).is_err());
        assert!(RecordState::from_body(guid, format!(r#"{{"guid":"{guid}","expire":1}}"#).as_bytes()).is_err());
    }

    #[test]
    fn patched_applies_top_level_merge_patch() {
        let state = present("5", json!({"a":1,"b":2}));
        let Value::Object(changes) = json!({"a":null,"c":3}) else { panic!() };
        assert_eq!(state.patched(Some("9"), &changes), present("9", json!({"b":2,"c":3})));
        assert_eq!(RecordState::Absent.patched(None, &changes), RecordState::Absent);
    }

    #[test]
    fn verify_accepts_known_or_pending_and_nothing_else() {
        let old = present("5", json!({"a":1}));
        let new = present("5", json!({"a":2}));
        let mut slot = Slot { guid: "G".into(), known: old.clone(), etag: None, pending: Some(new.clone()) };
        assert!(slot.clone().verify(old.clone(), None).is_ok());
        assert!(slot.clone().verify(new.clone(), None).is_ok());
        assert!(slot.verify(RecordState::Absent, None).is_err());
        // After a failed check the observed state is the new baseline.
        assert_eq!(slot.known, RecordState::Absent);
        assert!(slot.pending.is_none());
        let mut acknowledged_delete = Slot { guid: "G".into(), known: RecordState::Absent, etag: None, pending: None };
        assert!(acknowledged_delete.verify(old, None).is_err(), "a deleted record came back");
    }

    #[test]
    fn verify_flags_a_changed_etag_of_an_unchanged_record() {
        let state = present("5", json!({}));
        let mut slot = Slot { guid: "G".into(), known: state.clone(), etag: Some("\"a\"".into()), pending: None };
        assert!(slot.clone().verify(state.clone(), Some("\"a\"".into())).is_ok());
        assert!(slot.verify(state, Some("\"b\"".into())).is_err());
    }
}
