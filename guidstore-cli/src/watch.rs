//! `guidstore-cli watch`: the change feed as NDJSON, one event per line, from a server (long polls
//! of `GET /events`) or from a database (`Store::events_after`, waiting on the store's feed).
//!
//! Without `--follow` it prints the events there are and exits; with it, it waits for more until
//! interrupted (Ctrl-C or SIGTERM: exit 0). Whenever it stops after starting — done, interrupted,
//! stdout closed or an error — it prints `last revision: REV` on stderr: the `--after` that resumes
//! exactly after the last event printed.

use std::io::{self, Write};
use std::time::Duration;

use guidstore::Store;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::endpoint::Endpoint;
use crate::error::CliError;
use crate::remote::Remote;

/// Events asked for per request.
const BATCH: usize = 1_000;
/// How long one long poll of a server waits (the server may cut it to its `--events-max-wait`).
const WAIT: Duration = Duration::from_secs(30);

/// Where the events go, and the position after the last one printed.
struct Output {
    after: u64,
    stdout: io::StdoutLock<'static>,
}

/// Why a watch ended without an error.
enum Stop {
    /// Every event there was has been printed (no `--follow`).
    Done,
    /// Ctrl-C, SIGTERM, or a closed stdout.
    Interrupted,
}

impl Output {
    /// Prints one event per line and flushes them; `Err(Stop::Interrupted)` when stdout is closed.
    fn print<'a>(&mut self, events: impl IntoIterator<Item = (u64, &'a str)>) -> Result<(), Result<Stop, CliError>> {
        let mut last = self.after;
        let mut text = String::new();
        for (revision, json) in events {
            text.push_str(json);
            text.push('\n');
            last = revision;
        }
        match self.stdout.write_all(text.as_bytes()).and_then(|()| self.stdout.flush()) {
            Ok(()) => {
                self.after = last;
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(Ok(Stop::Interrupted)),
            Err(error) => Err(Err(CliError::io("writing stdout", error))),
        }
    }
}

/// Runs `watch` on `endpoint` from `after`; prints the last revision on stderr however it ends.
pub fn watch(endpoint: &Endpoint, after: u64, follow: bool) -> Result<(), CliError> {
    let mut output = Output { after, stdout: io::stdout().lock() };
    let result = match endpoint {
        Endpoint::Local(store) => local(store, &mut output, follow),
        // No file: no events yet, and nothing can write one while we hold nothing open.
        Endpoint::Missing if follow => Err(follow_on_a_file()),
        Endpoint::Missing => Ok(Stop::Done),
        Endpoint::Remote { remote, .. } => remote_watch(remote, &mut output, follow),
    };
    let _ = writeln!(io::stderr(), "last revision: {}", output.after);
    result.map(|_| ())
}

fn follow_on_a_file() -> CliError {
    CliError::Usage(
        "watch --follow on an SQLite file needs the server that has it open (nothing else can write \
         the file while watch holds it): start guidstore-server on it, or use --server"
            .to_owned(),
    )
}

/// Ctrl-C and SIGTERM, registered now (on the current runtime): a signal that arrives while an
/// event is being printed still ends the watch at the next wait.
fn interrupts() -> Result<(Signal, Signal), CliError> {
    let interrupt = signal(SignalKind::interrupt()).map_err(|e| CliError::io("listening for Ctrl-C", e))?;
    let terminate = signal(SignalKind::terminate()).map_err(|e| CliError::io("listening for SIGTERM", e))?;
    Ok((interrupt, terminate))
}

fn local(store: &Store, output: &mut Output, follow: bool) -> Result<Stop, CliError> {
    if follow && !store.is_shared() {
        return Err(follow_on_a_file());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("cannot start the event loop", e))?;
    runtime.block_on(async {
        let (mut interrupt, mut terminate) = interrupts()?;
        loop {
            let events = store.events_after(output.after, BATCH)?;
            let rendered: Vec<(u64, String)> = events.iter().map(|e| (e.revision(), e.to_json())).collect();
            if let Err(stop) = output.print(rendered.iter().map(|(revision, json)| (*revision, json.as_str()))) {
                return stop;
            }
            if events.len() == BATCH {
                continue;
            }
            if !follow {
                return Ok(Stop::Done);
            }
            tokio::select! {
                waited = store.wait_for_changes_after(output.after) => waited?,
                _ = interrupt.recv() => return Ok(Stop::Interrupted),
                _ = terminate.recv() => return Ok(Stop::Interrupted),
            }
        }
    })
}

fn remote_watch(remote: &Remote, output: &mut Output, follow: bool) -> Result<Stop, CliError> {
    remote.block_on(async {
        let (mut interrupt, mut terminate) = interrupts()?;
        loop {
            let wait = if follow { WAIT } else { Duration::ZERO };
            let path = format!("/events?after={}&wait={}&limit={BATCH}", output.after, wait.as_secs());
            let answer = tokio::select! {
                answer = remote.get_waiting(&path, wait) => answer?,
                _ = interrupt.recv() => return Ok(Stop::Interrupted),
                _ = terminate.recv() => return Ok(Stop::Interrupted),
            };
            let page: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|e| {
                CliError::Unavailable(format!("{} answered /events with invalid JSON: {e}", remote.base()))
            })?;
            let events = page["events"].as_array().ok_or_else(|| {
                CliError::Unavailable(format!("{} answered /events without an events array", remote.base()))
            })?;
            let mut rendered = Vec::with_capacity(events.len());
            for event in events {
                let revision = event["rev"].as_u64().ok_or_else(|| {
                    CliError::Unavailable(format!("{} sent an event without a revision", remote.base()))
                })?;
                rendered.push((revision, event.to_string()));
            }
            if let Err(stop) = output.print(rendered.iter().map(|(revision, json)| (*revision, json.as_str()))) {
                return stop;
            }
            if rendered.is_empty() && !follow {
                return Ok(Stop::Done);
            }
        }
    })
}
