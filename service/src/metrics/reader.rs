//! The client side of a metrics endpoint: [`fetch`] a service's `/metrics` over HTTP with a time
//! limit, and read the text into [`Samples`] (with the `prometheus-parse` crate) to look values
//! up by name and labels. For the `lars` CLI and tests; the only reader of the text format in
//! the workspace.

use super::CONTENT_TYPE;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why an endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The target is not `http://HOST:PORT[/PATH]` or `HOST:PORT[/PATH]`.
    #[error("not a metrics URL `{target}`: {reason}")]
    BadUrl {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL.
        url: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The endpoint answered something other than 200 with text.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: hyper::StatusCode,
    },
    /// The body is not UTF-8.
    #[error("{url} answered a body that is not UTF-8 text")]
    NotText {
        /// The URL.
        url: String,
    },
    /// No answer within the time limit.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The time limit.
        timeout: Duration,
    },
    /// The blocking form could not start its runtime.
    #[error("cannot start a runtime to read metrics")]
    Runtime(#[source] std::io::Error),
}

/// A metrics target: where to connect and what to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `host:port`.
    authority: String,
    /// The path, `/metrics` unless the target names one.
    path: String,
}

impl Target {
    fn parse(target: &str) -> Result<Target, ReadError> {
        let bad = |reason| ReadError::BadUrl {
            target: target.to_string(),
            reason,
        };
        let rest = match target.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(bad("only http:// is served")),
            None => target,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let uri: hyper::Uri = format!("http://{authority}/")
            .parse()
            .map_err(|_| bad("not a host:port"))?;
        if uri.port_u16().is_none() || uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host:port"));
        }
        let path = if path.is_empty() || path == "/" {
            "/metrics"
        } else {
            path
        };
        Ok(Target {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// Fetches the text of `target` (`http://HOST:PORT/PATH`, or `HOST:PORT` for its `/metrics`)
/// within `timeout`.
pub async fn fetch(target: &str, timeout: Duration) -> Result<String, ReadError> {
    let target = Target::parse(target)?;
    let url = target.url();
    tokio::time::timeout(timeout, get(&target))
        .await
        .unwrap_or(Err(ReadError::Timeout { url, timeout }))
}

/// [`fetch`] for callers outside a tokio runtime (it runs one of its own; never call it from
/// async code).
pub fn fetch_blocking(target: &str, timeout: Duration) -> Result<String, ReadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ReadError::Runtime)?;
    runtime.block_on(fetch(target, timeout))
}

/// [`fetch_blocking`] and [`Samples::parse`].
pub fn scrape(target: &str, timeout: Duration) -> Result<Samples, ReadError> {
    fetch_blocking(target, timeout).map(|text| Samples::parse(&text))
}

async fn get(target: &Target) -> Result<String, ReadError> {
    let url = target.url();
    let stream = TcpStream::connect(&target.authority)
        .await
        .map_err(|source| ReadError::Connect {
            url: url.clone(),
            source,
        })?;
    let http = |source| ReadError::Http {
        url: url.clone(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::ACCEPT, CONTENT_TYPE)
        .body(Empty::<Bytes>::new())
        .map_err(|_| ReadError::BadUrl {
            target: url.clone(),
            reason: "not a valid request path",
        })?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(http)?;
    driver.abort();
    if status != hyper::StatusCode::OK {
        return Err(ReadError::Status { url, status });
    }
    String::from_utf8(body.to_bytes().to_vec()).map_err(|_| ReadError::NotText { url })
}

/// One sample: a name, its labels and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The exposed name (a counter's ends in `_total`, a histogram's in `_bucket`, `_sum` or
    /// `_count`).
    pub name: String,
    /// Label names to values.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// Whether every one of `labels` is on this sample.
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.get(*k).is_some_and(|have| have == v))
    }
}

/// Every sample of one scrape, in the order of the text (a histogram's buckets by bound).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    samples: Vec<Sample>,
}

impl Samples {
    /// Reads the Prometheus text format; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Samples {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        // The parser only fails on a failing line iterator, and ours never fails.
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap_or(prometheus_parse::Scrape {
            docs: Default::default(),
            samples: Vec::new(),
        });
        let mut samples = Vec::with_capacity(scrape.samples.len());
        for s in scrape.samples {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let one = |name: String, labels: BTreeMap<String, String>, value| Sample {
                name,
                labels,
                value,
            };
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => samples.push(one(s.metric, labels, v)),
                prometheus_parse::Value::Histogram(buckets) => {
                    for b in buckets {
                        let mut labels = labels.clone();
                        labels.insert("le".into(), bound(b.less_than));
                        samples.push(one(format!("{}_bucket", s.metric), labels, b.count));
                    }
                }
                prometheus_parse::Value::Summary(quantiles) => {
                    for q in quantiles {
                        let mut labels = labels.clone();
                        labels.insert("quantile".into(), bound(q.quantile));
                        samples.push(one(s.metric.clone(), labels, q.count));
                    }
                }
            }
        }
        Samples { samples }
    }

    /// Every sample.
    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The value of `name` with exactly `labels` (in any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.len() == labels.len() && s.has(labels))
            .map(|s| s.value)
    }

    /// The sum of `name` over the samples that have all of `labels` (all samples for none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| s.value)
            .sum()
    }
}

/// A bucket bound or quantile as the text format writes it.
fn bound(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP lars_x_total Things.
# TYPE lars_x_total counter
lars_x_total{worker=\"0\",reason=\"short\"} 3
lars_x_total{worker=\"1\",reason=\"short\"} 4
lars_x_total{worker=\"1\",reason=\"bad_body\"} 1
# HELP lars_up Up.
# TYPE lars_up gauge
lars_up 1
# HELP lars_wait_seconds Waits.
# TYPE lars_wait_seconds histogram
lars_wait_seconds_sum 0.5
lars_wait_seconds_count 2
lars_wait_seconds_bucket{le=\"0.1\"} 1
lars_wait_seconds_bucket{le=\"+Inf\"} 2
";

    #[test]
    fn samples_are_found_by_name_and_exact_labels() {
        let s = Samples::parse(TEXT);
        assert_eq!(s.get("lars_up", &[]), Some(1.0));
        assert_eq!(
            s.get("lars_x_total", &[("reason", "short"), ("worker", "1")]),
            Some(4.0)
        );
        assert_eq!(s.get("lars_x_total", &[("worker", "1")]), None);
        assert_eq!(s.get("lars_missing", &[]), None);
    }

    #[test]
    fn sums_take_every_sample_with_the_given_labels() {
        let s = Samples::parse(TEXT);
        assert_eq!(s.sum("lars_x_total", &[]), 8.0);
        assert_eq!(s.sum("lars_x_total", &[("worker", "1")]), 5.0);
        assert_eq!(s.sum("lars_x_total", &[("reason", "short")]), 7.0);
        assert_eq!(s.sum("lars_x", &[]), 0.0);
    }

    #[test]
    fn histograms_come_back_as_buckets_sum_and_count() {
        let s = Samples::parse(TEXT);
        assert_eq!(s.get("lars_wait_seconds_count", &[]), Some(2.0));
        assert_eq!(s.get("lars_wait_seconds_sum", &[]), Some(0.5));
        assert_eq!(
            s.get("lars_wait_seconds_bucket", &[("le", "0.1")]),
            Some(1.0)
        );
        assert_eq!(
            s.get("lars_wait_seconds_bucket", &[("le", "+Inf")]),
            Some(2.0)
        );
    }

    #[test]
    fn lines_that_are_not_samples_are_skipped() {
        let s = Samples::parse("garbage here\n# EOF\nlars_up not_a_number\nlars_ok 2\n");
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("lars_ok", &[]), Some(2.0));
    }

    #[test]
    fn targets_are_urls_or_host_port() {
        let t = |s| Target::parse(s).map(|t| t.url());
        assert_eq!(
            t("127.0.0.1:7780").unwrap(),
            "http://127.0.0.1:7780/metrics"
        );
        assert_eq!(
            t("http://localhost:7780/metrics").unwrap(),
            "http://localhost:7780/metrics"
        );
        assert_eq!(t("http://[::1]:80/x").unwrap(), "http://[::1]:80/x");
        for bad in ["https://a:1/", "127.0.0.1", "http://:80/", "a b:1", ""] {
            let err = Target::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
