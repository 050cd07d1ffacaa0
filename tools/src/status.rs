//! `lars status`: the call statistics lars-reporter stored (`ServerCallStatus`), as a table a
//! person reads at a glance — route, host and caller as dotted addresses, the success and error
//! counts of the last reported window, the error rate, whether the caller's agent had the host
//! marked overloaded, how long ago it reported, and the route's name (`lars route name`). Reads
//! the store only, and only one that exists (see [`crate::store`]).

use anyhow::Context;
use lars_store::{CallStatusRow, Names};
use lars_wire::RouteKey;
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// `lars status [MODID [CMDID]]`.
pub async fn show(url: Option<&str>, modid: Option<i32>, cmdid: Option<i32>) -> anyhow::Result<()> {
    let store = crate::store::open(url).await?;
    let rows = store
        .load_call_status(modid, cmdid)
        .await
        .context("loading call statistics")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let names = crate::route_admin::names_or_none(&store).await;
    print!("{}", format_status(&rows, &names, now));
    Ok(())
}

/// The statistics as text: a header, one line per row in the order given, and a count.
/// `now` is the current Unix time in seconds, for the AGE column; NAME is the route's label
/// ([`Names::label`]), empty when it has none.
pub fn format_status(rows: &[CallStatusRow], names: &Names, now: i64) -> String {
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 10]| {
        let [
            modid,
            cmdid,
            host,
            caller,
            succ,
            err,
            rate,
            overload,
            age,
            name,
        ] = cells;
        let text = format!(
            "{modid:>11} {cmdid:>11}  {host:<21}  {caller:<15} {succ:>10} {err:>10} {rate:>7}  \
             {overload:<8} {age:>6}  {name}"
        );
        // Writing into a String cannot fail.
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(
        &mut out,
        [
            "MODID", "CMDID", "HOST", "CALLER", "SUCC", "ERR", "ERR%", "OVERLOAD", "AGE", "NAME",
        ],
    );
    for row in rows {
        line(
            &mut out,
            [
                &row.modid.to_string(),
                &row.cmdid.to_string(),
                &format!("{}:{}", Ipv4Addr::from(row.ip), row.port),
                &Ipv4Addr::from(row.caller).to_string(),
                &row.succ_cnt.to_string(),
                &row.err_cnt.to_string(),
                &error_rate(row.succ_cnt, row.err_cnt),
                if row.overload { "yes" } else { "no" },
                &age(now.saturating_sub(row.ts)),
                &names
                    .label(RouteKey::new(row.modid, row.cmdid))
                    .unwrap_or_default(),
            ],
        );
    }
    let _ = writeln!(out, "{} row(s)", rows.len());
    out
}

/// `err / (succ + err)` as a percentage with one decimal, `-` when there were no calls.
fn error_rate(succ: u32, err: u32) -> String {
    let total = u64::from(succ) + u64::from(err);
    if total == 0 {
        return "-".to_string();
    }
    format!("{:.1}%", err as f64 * 100.0 / total as f64)
}

/// Seconds as the largest unit that keeps two or three digits: `42s`, `5m`, `3h`, `12d`. A
/// report from the future (clock skew between hosts) shows as negative.
fn age(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    let (value, unit) = match secs {
        0..120 => (secs, "s"),
        120..7_200 => (secs / 60, "m"),
        7_200..172_800 => (secs / 3_600, "h"),
        _ => (secs / 86_400, "d"),
    };
    format!("{sign}{value}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(succ_cnt: u32, err_cnt: u32, ts: i64, overload: bool) -> CallStatusRow {
        CallStatusRow {
            modid: 1,
            cmdid: 2,
            ip: u32::from(Ipv4Addr::new(192, 168, 1, 10)),
            port: 8080,
            caller: u32::from(Ipv4Addr::new(10, 0, 0, 1)),
            succ_cnt,
            err_cnt,
            ts,
            overload,
        }
    }

    #[test]
    fn rows_print_dotted_with_rate_overload_and_age() {
        let mut names = Names::default();
        names.commands.insert(2, "login".into());
        let text = format_status(
            &[row(90, 10, 1000, true), row(0, 0, 1_000_000, false)],
            &names,
            1_000_030,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for column in [
            "MODID", "HOST", "CALLER", "SUCC", "ERR%", "OVERLOAD", "AGE", "NAME",
        ] {
            assert!(lines[0].contains(column), "{}", lines[0]);
        }
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            first,
            [
                "1",
                "2",
                "192.168.1.10:8080",
                "10.0.0.1",
                "90",
                "10",
                "10.0%",
                "yes",
                "11d",
                "modid",
                "1/login"
            ]
        );
        let second: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(&second[6..], ["-", "no", "30s", "modid", "1/login"]);
        assert_eq!(lines[3], "2 row(s)");
    }

    #[test]
    fn ages_pick_a_readable_unit() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(119), "119s");
        assert_eq!(age(120), "2m");
        assert_eq!(age(7_199), "119m");
        assert_eq!(age(7_200), "2h");
        assert_eq!(age(172_800), "2d");
        assert_eq!(age(-5), "-5s");
    }

    #[test]
    fn error_rate_needs_calls() {
        assert_eq!(error_rate(0, 0), "-");
        assert_eq!(error_rate(0, 3), "100.0%");
        assert_eq!(error_rate(u32::MAX, u32::MAX), "50.0%");
    }
}
