//! Runs the Rust examples as tests, so `cargo test --workspace` proves they still work: each
//! example file is compiled here as a module and its entry point called.

#[path = "../embed.rs"]
mod embed;
#[path = "../producers.rs"]
#[allow(dead_code)] // its `main` reads the command line; the test calls `run` directly
mod producers;

#[test]
fn embed_example_runs_every_step() {
    if let Err(error) = embed::main() {
        panic!("the embed example failed: {error}");
    }
}

#[test]
fn producers_example_commits_every_write_of_every_thread() {
    let stats = match producers::run(8, 40) {
        Ok(stats) => stats,
        Err(error) => panic!("the producers example failed: {error}"),
    };
    assert_eq!(stats.writes, 8 * 40);
    assert!(stats.commits >= 1 && stats.commits <= stats.writes, "{stats:?}");
}
