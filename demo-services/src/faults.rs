//! Failure injection: fail every Nth request, fail with a probability, add latency before or inside the body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    /// Every Nth request answers 500 (0: never).
    pub fail_every: u64,
    /// Probability in [0, 1] that a request answers 500.
    pub fail_rate: f64,
    /// Added to every request, before its answer.
    pub latency: Duration,
    /// A repeating pattern of outcomes: `f` fails, anything else succeeds (empty: none).
    pub pattern: Vec<bool>,
    /// Between a response's head and its body (a slow download, not a slow answer).
    pub body_latency: Duration,
}

/// Decides per request; shared by all workers.
#[derive(Debug, Default)]
pub struct Faults {
    config: FaultConfig,
    count: AtomicU64,
}

impl Faults {
    /// Injects according to `config`.
    pub fn new(config: FaultConfig) -> Self {
        Faults {
            config,
            count: AtomicU64::new(0),
        }
    }

    /// Whether this request should fail (counts it).
    pub fn should_fail(&self) -> bool {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.config.fail_every > 0 && n % self.config.fail_every == 0 {
            return true;
        }
        if !self.config.pattern.is_empty() {
            return self.config.pattern[((n - 1) % self.config.pattern.len() as u64) as usize];
        }
        self.config.fail_rate > 0.0 && fastrand::f64() < self.config.fail_rate
    }

    /// Latency to add.
    pub fn latency(&self) -> Duration {
        self.config.latency
    }

    /// Delay between a response's head and its body.
    pub fn body_latency(&self) -> Duration {
        self.config.body_latency
    }
}

/// Failure-injection flags shared by the demo binaries. A failure is a 500 (`demo-http`) or an
/// UNAVAILABLE status (`demo-grpc`).
#[derive(clap::Args, Debug, Clone)]
pub struct FaultArgs {
    /// Fail every Nth request (0: never).
    #[arg(long, default_value_t = 0)]
    pub fail_every: u64,
    /// Fail requests with this probability (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Add this many milliseconds to every request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// A repeating pattern of outcomes, one letter per request: `f` fails, `s` succeeds
    /// (e.g. `ffs`: two of three fail, never three in a row).
    #[arg(long, default_value = "")]
    pub fail_pattern: String,
    /// Send each response's head at once and its body this many milliseconds later (demo-http's JSON
    /// routes): a slow download, which is not a slow replica.
    #[arg(long, default_value_t = 0)]
    pub body_latency_ms: u64,
}

impl FaultArgs {
    /// The injection they describe; exits the process naming the flag when `--fail-rate` is out of range.
    pub fn faults(&self, program: &str) -> Faults {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            eprintln!("{program}: --fail-rate must be between 0.0 and 1.0");
            std::process::exit(2);
        }
        Faults::new(FaultConfig {
            fail_every: self.fail_every,
            fail_rate: self.fail_rate,
            latency: Duration::from_millis(self.latency_ms),
            pattern: self.fail_pattern.chars().map(|c| c == 'f').collect(),
            body_latency: Duration::from_millis(self.body_latency_ms),
        })
    }
}

/// Logs to stdout, filtered by `DEMO_LOG` (default `info`, without actix's start-up chatter), coloured only
/// on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEMO_LOG")
                .unwrap_or_else(|_| "info,actix_server=warn,actix_web=warn,actix_rt=warn".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_every_nth() {
        let f = Faults::new(FaultConfig {
            fail_every: 3,
            ..Default::default()
        });
        let seq: Vec<bool> = (0..6).map(|_| f.should_fail()).collect();
        assert_eq!(seq, [false, false, true, false, false, true]);
    }

    #[test]
    fn a_pattern_repeats() {
        let f = Faults::new(FaultConfig {
            pattern: vec![true, true, false],
            ..Default::default()
        });
        let seq: Vec<bool> = (0..7).map(|_| f.should_fail()).collect();
        // f f s f f s f: two of three fail, never three in a row
        assert_eq!(seq, [true, true, false, true, true, false, true]);
    }

    #[test]
    fn rate_one_always_fails_and_zero_never() {
        let always = Faults::new(FaultConfig {
            fail_rate: 1.0,
            ..Default::default()
        });
        let never = Faults::default();
        assert!((0..100).all(|_| always.should_fail()));
        assert!((0..100).all(|_| !never.should_fail()));
    }
}
