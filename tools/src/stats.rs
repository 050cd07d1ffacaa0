//! `lars stats URL`: reads any Lars service's `/metrics` (dns, reporter or agent) and shows every
//! sample as a table, one line per metric and label set, in the order the service wrote them.

use anyhow::Context;
use lars_service::metrics::Samples;
use std::fmt::Write;
use std::time::Duration;

/// How long to wait for the service's answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches and prints the metrics at `target` (`http://HOST:PORT/metrics` or `HOST:PORT`).
pub fn run(target: &str, raw: bool) -> anyhow::Result<()> {
    let text = lars_service::metrics::fetch_blocking(target, FETCH_TIMEOUT)
        .with_context(|| format!("cannot read metrics from {target}"))?;
    if raw {
        print!("{text}");
    } else {
        print!("{}", format_table(&Samples::parse(&text)));
    }
    Ok(())
}

/// The table: `METRIC LABELS VALUE`, labels as `name=value` joined by commas.
pub fn format_table(samples: &Samples) -> String {
    let rows: Vec<(&str, String, String)> = samples
        .iter()
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (s.name.as_str(), labels.join(","), value(s.value))
        })
        .collect();
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(6);
    let label_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_width$} {:<label_width$} VALUE",
        "METRIC", "LABELS"
    );
    for (name, labels, value) in rows {
        let _ = writeln!(out, "{name:<name_width$} {labels:<label_width$} {value}");
    }
    out
}

/// A count as a whole number, anything else as it is.
fn value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_is_a_line_with_its_labels() {
        let samples = Samples::parse(
            "# TYPE lars_x_total counter\nlars_x_total{reason=\"peer\",worker=\"1\"} 3\n\
             lars_up 1\nlars_wait_seconds_sum 0.25\n",
        );
        let table = format_table(&samples);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("METRIC") && lines[0].ends_with("VALUE"));
        assert!(lines[1].starts_with("lars_x_total"), "{table}");
        assert!(lines[1].contains("reason=peer,worker=1") && lines[1].ends_with(" 3"));
        assert!(
            lines[2].starts_with("lars_up") && lines[2].ends_with(" 1"),
            "{table}"
        );
        assert!(lines[3].ends_with(" 0.25"), "{table}");
    }
}
