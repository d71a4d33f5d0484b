//! A short crash-durability run inside `cargo test`: one `kill -9` cycle and one `SIGTERM` cycle
//! under concurrent writes (the `crash-test` binary runs more; see RELIABILITY.md).

use guidstore_reliability::crash::{self, CrashConfig, StopMode};
use guidstore_reliability::rng::Rng;
use guidstore_reliability::server::server_binary_for_tests;

fn config(mode: StopMode) -> CrashConfig {
    CrashConfig {
        binary: server_binary_for_tests(),
        cycles: 1,
        clients: 4,
        guids_per_client: 16,
        run_ms: (200, 500),
        mode,
        seed: Rng::seed_from_time(),
        server_args: Vec::new(),
        dir: None,
    }
}

fn assert_nothing_lost(mode: StopMode) {
    let config = config(mode);
    let summary = crash::run(&config, |line| eprintln!("{line}")).expect("the crash test ran");
    eprintln!("{} (seed {})", summary.line(), config.seed);
    assert!(summary.passed(), "seed {}: {:#?}", config.seed, summary);
    assert!(summary.acknowledged_writes > 0, "no write was acknowledged");
    assert_eq!(summary.records_verified, 64);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    assert_nothing_lost(StopMode::Kill);
}

#[test]
fn acknowledged_writes_survive_sigterm_under_load_and_it_exits_0() {
    assert_nothing_lost(StopMode::Term);
}
