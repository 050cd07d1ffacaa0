//! The live progress display: once a second, on a terminal only, one line on stderr rewritten in
//! place (`\r`) with the second, its phase, the operations completed in it, the measured p99 so
//! far and the timeouts so far (warm-up included). Nothing is written when stderr is not a terminal, so scripts and
//! tests see only the summary (or the JSON) on stdout.

use crate::perf::load::Second;
use crate::perf::summary::grouped;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// The progress line of one second.
pub fn line(second: &Second, warmup: Duration) -> String {
    let phase = if f64::from(second.second) <= warmup.as_secs_f64() {
        "warm-up"
    } else {
        "measure"
    };
    let p99 = match second.p99_so_far {
        Some(p99) => format!("p99 {} µs", grouped(p99)),
        None => "p99 -".to_string(),
    };
    format!(
        "[{:>4} s] {phase}  {:>11} /s  {p99}  timeouts {}",
        second.second,
        grouped(second.window.completed),
        grouped(second.timeouts_so_far)
    )
}

/// Writes progress lines to stderr when it is a terminal.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    warmup: Duration,
    shown: bool,
}

impl Progress {
    /// A display for a run with `warmup` of warm-up; silent unless stderr is a terminal.
    pub fn new(warmup: Duration) -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            warmup,
            shown: false,
        }
    }

    /// Shows `second`, replacing the previous line.
    pub fn show(&mut self, second: &Second) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", line(second, self.warmup));
        let _ = err.flush();
        self.shown = true;
    }

    /// Clears the line before the summary.
    pub fn finish(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::tally::Window;

    #[test]
    fn the_line_names_the_phase_rate_p99_and_timeouts() {
        let second = Second {
            second: 3,
            window: Window {
                completed: 153_210,
                timeouts: 2,
            },
            p99_so_far: Some(85),
            timeouts_so_far: 7,
        };
        let text = line(&second, Duration::from_secs(1));
        assert!(text.contains("[   3 s] measure"), "{text}");
        assert!(text.contains("153,210 /s"), "{text}");
        assert!(text.contains("p99 85 µs"), "{text}");
        assert!(text.contains("timeouts 7"), "{text}");
        let warm = Second {
            second: 1,
            p99_so_far: None,
            timeouts_so_far: 0,
            ..second
        };
        let text = line(&warm, Duration::from_secs(2));
        assert!(text.contains("warm-up") && text.contains("p99 -"), "{text}");
    }
}
