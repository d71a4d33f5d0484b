//! guidstore-reliability: harnesses that exercise a real `guidstore-server` process from outside.
//!
//! Nothing here links the server: every check talks HTTP/1.1 over `127.0.0.1` to a child process,
//! so what is measured is what an operator runs. The library holds what the `crash-test` binary and
//! the integration tests (`tests/hostile.rs`, `tests/faults.rs`) share; the HTTP client and the
//! storage-fault set-ups are `guidstore-testkit`'s, shared with the other crates' tests.
//!
//! Modules:
//! - `server`: start, find, kill (`SIGKILL`), terminate (`SIGTERM`) and measure a server process.
//! - `crash`: the crash-durability model: clients, acknowledged state, in-flight operations, checks.
//! - `rng`: a small seeded PRNG, so a failing run can be replayed with `--seed`.

pub mod crash;
pub mod rng;
pub mod server;
