//! Log output: a tracing filter and a format (text or one JSON object per line) from the `log` config
//! section, both replaced by a config reload. Lines are written by a thread of their own.

use std::sync::Mutex;

use tracing::Level;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSection};

/// Crates whose `info` lines are start-up chatter (`starting 2 workers`): held at `warn` unless the
/// filter names them.
const QUIET: &[&str] = &[
    "actix_server",
    "actix_http",
    "h2",
    "hyper",
    "hyper_util",
    "tower",
];

/// The variable whose filter overrides `log.level` (kept from before the `log` section).
pub const LEGACY_FILTER_VAR: &str = "GATEWAY_LOG";

type FilterLayer = reload::Layer<EnvFilter, Registry>;
type Formatter = Box<dyn Layer<Layered<FilterLayer, Registry>> + Send + Sync>;

/// The installed logger: handles to replace its filter and format, and its writer thread.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<Formatter, Layered<FilterLayer, Registry>>,
    stdout: NonBlocking,
    legacy: Option<String>,
    current: Mutex<(String, LogFormat)>,
    /// Flushes the lines still queued when dropped (at exit).
    _guard: WorkerGuard,
}

/// The filter in force: `legacy` (`GATEWAY_LOG`) when set, else `level`; the chatty crates (actix-server,
/// actix-http, h2, hyper, tower: start-up chatter) at `warn` unless the filter names them.
pub fn directives(level: &str, legacy: Option<&str>) -> String {
    let base = legacy.unwrap_or(level).trim();
    let mut out = base.to_owned();
    for krate in QUIET {
        let named = base
            .split(',')
            .any(|d| d.trim().split(['=', '[', ':']).next() == Some(*krate));
        if !named {
            out.push_str(&format!(",{krate}=warn"));
        }
    }
    out
}

/// Checks the filter that `level` and `legacy` make, as [`Logging::install`] would.
pub fn check(level: &str, legacy: Option<&str>) -> Result<(), String> {
    filter(level, legacy).map(drop)
}

fn filter(level: &str, legacy: Option<&str>) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives(level, legacy)).map_err(|e| {
        let field = if legacy.is_some() {
            LEGACY_FILTER_VAR
        } else {
            "log.level"
        };
        format!("{field}: expected a log filter such as info or debug ({e})")
    })
}

impl Logging {
    /// Installs the global logger for `log`, `legacy` (`GATEWAY_LOG`) overriding `log.level`. Errors
    /// (`ERROR` lines) go to stderr as they happen; every other line to stdout, through a writer thread
    /// that drops lines rather than block a request when stdout is not read.
    pub fn install(log: &LogSection, legacy: Option<String>) -> Result<Logging, String> {
        let filter = EnvFilter::try_new(directives(&log.level, legacy.as_deref())).map_err(
            |e| match &legacy {
                Some(_) => format!(
                    "{LEGACY_FILTER_VAR}: expected a log filter such as info or debug ({e})"
                ),
                None => format!("log.level: expected a log filter such as info or debug ({e})"),
            },
        )?;
        let (stdout, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .thread_name("log-writer")
            .finish(std::io::stdout());
        let (filter_layer, filter) = reload::Layer::new(filter);
        let (format_layer, format) = reload::Layer::new(formatter(log.format, &stdout));
        tracing_subscriber::registry()
            .with(filter_layer)
            .with(format_layer)
            .try_init()
            .map_err(|e| e.to_string())?;
        Ok(Logging {
            filter,
            format,
            stdout,
            legacy,
            current: Mutex::new((log.level.clone(), log.format)),
            _guard: guard,
        })
    }

    /// Applies a reloaded `log` section (level and format; `log.access` needs a restart).
    pub fn apply(&self, log: &LogSection) -> Result<(), String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != log.level {
            let filter = filter(&log.level, self.legacy.as_deref())?;
            self.filter.reload(filter).map_err(|e| e.to_string())?;
        }
        if current.1 != log.format {
            self.format
                .reload(formatter(log.format, &self.stdout))
                .map_err(|e| e.to_string())?;
        }
        *current = (log.level.clone(), log.format);
        Ok(())
    }

    /// Whether `GATEWAY_LOG` overrides `log.level`.
    pub fn level_is_overridden(&self) -> bool {
        self.legacy.is_some()
    }

    /// Lines dropped so far because stdout was not read fast enough.
    pub fn dropped(&self) -> ErrorCounter {
        self.stdout.error_counter()
    }
}

/// Errors to stderr (unbuffered), the rest to `stdout`.
fn writer(stdout: &NonBlocking) -> BoxMakeWriter {
    BoxMakeWriter::new(
        std::io::stderr
            .with_max_level(Level::ERROR)
            .or_else(stdout.clone()),
    )
}

fn formatter(format: LogFormat, stdout: &NonBlocking) -> Formatter {
    let layer = tracing_subscriber::fmt::layer().with_writer(writer(stdout));
    match format {
        LogFormat::Text => Box::new(
            layer
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
        ),
        LogFormat::Json => Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatty_crates_are_held_at_warn_unless_named() {
        assert_eq!(
            directives("info", None),
            "info,actix_server=warn,actix_http=warn,h2=warn,hyper=warn,hyper_util=warn,tower=warn"
        );
        assert_eq!(
            directives("info", Some("debug,h2=trace,hyper=info")),
            "debug,h2=trace,hyper=info,actix_server=warn,actix_http=warn,hyper_util=warn,tower=warn"
        );
        assert!(
            directives("actix_server=info", None).starts_with("actix_server=info,actix_http=warn")
        );
        for d in [
            directives("info", None),
            directives("warn,registry_gateway=debug", None),
        ] {
            assert!(EnvFilter::try_new(&d).is_ok(), "{d}");
        }
    }
}
