//! Property tests, the stable-Rust stand-in for fuzzing: the parsers and decoders that read hostile input.
//!
//! Each property runs `FUZZ_CASES` cases (default [`DEFAULT_CASES`], so the whole set stays within
//! seconds in a debug `cargo test`) drawn from the fixed seed `FUZZ_SEED` (default [`DEFAULT_SEED`]).
//! A run is a pure function of those two numbers, so a failure reproduces by rerunning the one test
//! with the same values. `scripts/fuzz.sh` is the long run: a million cases per property, in release.

mod address;
mod framing;
mod inputs;
mod redis_message;
mod registration_json;
mod registration_proto;
mod route;

use proptest::test_runner::{Config, RngSeed};

/// Cases per property when `FUZZ_CASES` is unset.
const DEFAULT_CASES: u32 = 256;
/// Seed when `FUZZ_SEED` is unset; fixed so that CI runs the same cases every time.
const DEFAULT_SEED: u64 = 0x5eed_2e2e_0f0f_a11e;

/// The configuration of every property in this module.
fn config() -> Config {
    let cases = env_number("FUZZ_CASES", DEFAULT_CASES);
    let seed = env_number("FUZZ_SEED", DEFAULT_SEED);
    // Captured by the test harness and shown only with a failure: exactly what reproduces it.
    eprintln!("reproduce with FUZZ_SEED={seed} FUZZ_CASES={cases}");
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // No regression files written into the source tree: the seed is what reproduces a failure.
        failure_persistence: None,
        // A failure late in a million-case run must still report in seconds, shrunk or not.
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// `name` from the environment; a value that does not parse is a mistake worth stopping for, not a
/// silent fallback to the default (which would quietly run a different set of cases).
fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}
