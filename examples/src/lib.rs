//! guidstore-examples: runnable examples of the guidstore library, nothing else. The code is in
//! the `[[example]]` targets beside this crate:
//!
//! - `embed.rs`: open a store, create, read, update with If-Match, delete, purge
//!   (`cargo run -p guidstore-examples --example embed`);
//! - `producers.rs`: many threads writing through one store, and what group commit does for them
//!   (`cargo run -p guidstore-examples --example producers`);
//! - `consumer.rs`: a worker that follows a server's change feed into its own SQLite file, its
//!   position stored in the same transaction as its effect, so a crash never loses or repeats one
//!   (`cargo run -p guidstore-examples --example consumer -- http://127.0.0.1:8080 audit.db`);
//! - `walkthrough.sh`: curl against a running guidstore-server, every route and its errors
//!   (`examples/walkthrough.sh http://127.0.0.1:8080`).
