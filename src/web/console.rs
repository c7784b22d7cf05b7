//! `log` records to the browser console, with errors counted: cubecl reports a WGSL shader that
//! failed to compile only as a log line on wasm and then returns garbage, so the tests and the page
//! must be able to see that any error was logged.

use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::JsValue;
use web_sys::console;

static ERRORS: AtomicUsize = AtomicUsize::new(0);

struct ConsoleLog;

impl log::Log for ConsoleLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn || metadata.target().starts_with("autosam")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = JsValue::from_str(&format!("[{}] {}", record.target(), record.args()));
        match record.level() {
            log::Level::Error => {
                ERRORS.fetch_add(1, Ordering::Relaxed);
                console::error_1(&line)
            }
            log::Level::Warn => console::warn_1(&line),
            _ => console::log_1(&line),
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls are no-ops.
pub fn init() {
    if log::set_logger(&ConsoleLog).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// How many error records have been logged since the page (or test) started.
pub fn errors_logged() -> usize {
    ERRORS.load(Ordering::Relaxed)
}
