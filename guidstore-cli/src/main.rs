//! guidstore-cli: create, read, update, delete and purge guidstore records from a shell, on a
//! database file (`--db`) or through a running guidstore-server (`--server`).
//!
//! `main` parses the command line, runs one command and maps its error to an exit code, once.
//! Modules:
//! - `cli`: the clap definitions and the `--help` text (exit codes are documented there);
//! - `body`: the JSON body of a create or update, from `--json`, `--set`, ...;
//! - `endpoint`: where the records are (the file or a server) and the four record operations on it;
//! - `remote`: the HTTP client;
//! - `watch`: the change feed as NDJSON;
//! - `tls`: TLS for `https://` servers (trusted CAs, `--insecure`, client certificates);
//! - `error`: `CliError`, its codes and exit codes.
//!
//! Validation is the library's, never re-implemented here: `NewRecord::parse` and `Patch::parse` on
//! a file, the server's on HTTP. GUID arguments are checked with `Guid::parse` before anything is
//! opened or sent.

mod body;
mod cli;
mod endpoint;
mod error;
mod remote;
mod tls;
mod watch;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use guidstore::Guid;

use crate::body::BodyKind;
use crate::cli::{Cli, Command};
use crate::endpoint::{Endpoint, Output, Target};
use crate::error::{CliError, EXIT_OK, EXIT_USAGE};

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => return clap_exit(&error),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    let target = Target::choose(&cli, matches.value_source("db"), matches.value_source("server"));
    match run(cli, target) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            let _ = writeln!(io::stderr(), "error: {}: {error}", error.code());
            ExitCode::from(error.exit_code())
        }
    }
}

/// Prints clap's message (help and version go to stdout with exit 0, usage errors to stderr with 2).
fn clap_exit(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    ExitCode::from(if error.use_stderr() { EXIT_USAGE } else { EXIT_OK })
}

fn run(cli: Cli, target: Result<Target, CliError>) -> Result<(), CliError> {
    let options = endpoint::Settings {
        token: cli.token.clone(),
        timeout: std::time::Duration::from_secs(cli.timeout.max(1)),
        verbose: cli.verbose,
        max_body: cli.max_body,
        tls: tls::TlsOptions {
            cacert: cli.cacert.clone(),
            insecure: cli.insecure,
            client_cert: cli.client_cert.clone(),
            client_key: cli.client_key.clone(),
        },
    };
    let max_body = cli.max_body;
    let output = match cli.command {
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "guidstore-cli", &mut script);
            return write_stdout(&script);
        }
        Command::Create { guid, fields } => {
            let guid = guid.as_deref().map(Guid::parse).transpose().map_err(guidstore::Error::from)?;
            let body = body::build(&fields, &[], BodyKind::Create, io::stdin().lock())?;
            Endpoint::with(target?, &options, true, |e| e.create(guid.as_ref(), body, max_body))?
        }
        Command::Get { guid } => {
            let guid = Guid::parse(&guid).map_err(guidstore::Error::from)?;
            Endpoint::with(target?, &options, false, |e| e.get(&guid))?
        }
        Command::Update { guid, fields, unset, if_match } => {
            let guid = Guid::parse(&guid).map_err(guidstore::Error::from)?;
            let body = body::build(&fields, &unset, BodyKind::Update, io::stdin().lock())?;
            Endpoint::with(target?, &options, false, |e| e.update(&guid, body, if_match.as_deref(), max_body))?
        }
        Command::Delete { guid, if_match } => {
            let guid = Guid::parse(&guid).map_err(guidstore::Error::from)?;
            Endpoint::with(target?, &options, false, |e| e.delete(&guid, if_match.as_deref()))?;
            return Ok(());
        }
        Command::Export => {
            let exported = Endpoint::with(target?, &options, false, |e| {
                let stdout = io::stdout().lock();
                match e.export(io::BufWriter::with_capacity(256 * 1024, stdout)) {
                    // A closed stdout (`| head`) ends the export, as for any filter.
                    Err(CliError::Io { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => Ok(0),
                    other => other,
                }
            })?;
            if cli.verbose {
                let _ = writeln!(io::stderr(), "exported {exported} records");
            }
            return Ok(());
        }
        Command::Import { file, on_conflict } => {
            let input: Box<dyn io::BufRead> = match file.as_deref() {
                None => Box::new(io::stdin().lock()),
                Some(path) if path.as_os_str() == "-" => Box::new(io::stdin().lock()),
                Some(path) => Box::new(io::BufReader::with_capacity(
                    256 * 1024,
                    std::fs::File::open(path).map_err(|e| CliError::io(format!("opening {}", path.display()), e))?,
                )),
            };
            let mut progress = Progress::new(io::stderr().is_terminal());
            let stats = Endpoint::with(target?, &options, true, |e| {
                e.import(input, on_conflict.into(), |stats| progress.show(stats))
            });
            progress.finish();
            let stats = stats?;
            let _ = writeln!(
                io::stderr(),
                "imported {} lines: {} created, {} replaced, {} unchanged, {} skipped (conflicts), {} expired",
                stats.lines,
                stats.created,
                stats.replaced,
                stats.unchanged,
                stats.skipped,
                stats.expired
            );
            return Ok(());
        }
        Command::Watch { after, follow } => {
            return Endpoint::with(target?, &options, false, |e| watch::watch(e, after, follow));
        }
        Command::Purge => {
            let purged = Endpoint::with(target?, &options, false, Endpoint::purge)?;
            if cli.verbose {
                let _ = writeln!(io::stderr(), "purged {purged} expired record{}", if purged == 1 { "" } else { "s" });
            }
            return Ok(());
        }
    };
    print_record(&output, cli.pretty, cli.etag)
}

/// The progress line of an import on a terminal: rewritten in place after each batch, at most
/// ten times a second.
struct Progress {
    on: bool,
    started: std::time::Instant,
    shown: Option<std::time::Instant>,
}

impl Progress {
    fn new(on: bool) -> Progress {
        Progress { on, started: std::time::Instant::now(), shown: None }
    }

    fn show(&mut self, stats: &guidstore::ImportStats) {
        if !self.on || self.shown.is_some_and(|at| at.elapsed() < std::time::Duration::from_millis(100)) {
            return;
        }
        self.shown = Some(std::time::Instant::now());
        let written = stats.created + stats.replaced + stats.unchanged + stats.skipped;
        let rate = written as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let _ =
            write!(io::stderr(), "\rimporting: {} lines read, {written} records written ({rate:.0}/s)   ", stats.lines);
    }

    fn finish(&self) {
        if self.on && self.shown.is_some() {
            let _ = writeln!(io::stderr());
        }
    }
}

/// Prints the record (one line, or indented with `--pretty`) and, with `--etag`, its entity-tag on
/// stderr. A closed stdout (`| head -c0`) is not an error: the command itself succeeded.
fn print_record(output: &Output, pretty: bool, etag: bool) -> Result<(), CliError> {
    let mut text = match serde_json::from_slice::<serde_json::Value>(&output.json) {
        Ok(value) if pretty => serde_json::to_string_pretty(&value).unwrap_or_default().into_bytes(),
        _ => output.json.to_vec(),
    };
    if text.last() != Some(&b'\n') {
        text.push(b'\n');
    }
    write_stdout(&text)?;
    if etag && let Some(tag) = &output.etag {
        let _ = writeln!(io::stderr(), "{tag}");
    }
    Ok(())
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => Err(CliError::io("writing stdout", error)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_every_exit_code() {
        let help = Cli::command().render_long_help().to_string();
        for line in ["0  success", "1  store", "2  usage", "3  not found", "4  already exists"] {
            assert!(help.contains(line), "{line:?} missing from --help");
        }
    }
}
