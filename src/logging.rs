//! Log lines to the host's log.
//!
//! The library logs through `tracing`. A host installs a sink (Envoy's log callback,
//! nginx's error log, ...) with [`set_sink`]; until then lines go to stderr. The sink may
//! be called from library threads (timer), so it must be thread-safe; hosts that cannot
//! log off their main thread drop or queue such lines.

use parking_lot::RwLock;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Once};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Severity as hosts see it: 0 trace, 1 debug, 2 info, 3 warn, 4 error.
pub type LogLevel = u32;

/// Receives one formatted line (without trailing newline).
pub type Sink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static MAX_LEVEL: AtomicU8 = AtomicU8::new(2);
static INIT: Once = Once::new();

fn level_num(l: &Level) -> u8 {
    match *l {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// Installs the global subscriber once (idempotent; a host may call it at load).
pub fn init() {
    INIT.call_once(|| {
        let _ = tracing_subscriber::registry().with(HostLayer).try_init();
    });
}

/// Sends log lines to `sink` from now on.
pub fn set_sink(sink: Sink) {
    init();
    *SINK.write() = Some(sink);
}

/// Drops lines below `level` (0 trace … 4 error).
pub fn set_level(level: LogLevel) {
    init();
    MAX_LEVEL.store(level.min(4) as u8, Ordering::Relaxed);
}

/// The level lines are kept from (0 trace … 4 error).
pub fn level() -> LogLevel {
    MAX_LEVEL.load(Ordering::Relaxed) as LogLevel
}

struct HostLayer;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for HostLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // The level can change at run time, so ask `enabled` every time.
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        level_num(m.level()) >= MAX_LEVEL.load(Ordering::Relaxed)
    }
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut line = Line(String::with_capacity(96));
        line.0.push_str("mosn: ");
        event.record(&mut line);
        let lvl = level_num(event.metadata().level()) as LogLevel;
        match &*SINK.read() {
            Some(sink) => sink(lvl, &line.0),
            None => eprintln!("{}", line.0),
        }
    }
}
