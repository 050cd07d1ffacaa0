//! Every service's metrics, one way: a [`ServiceMetrics`] per service process wraps a
//! `prometheus-client` registry, [`endpoint`] serves it over HTTP as `/metrics`, and [`reader`]
//! fetches and parses any service's `/metrics` back into samples (the only parser of the text
//! format in the workspace). Nobody writes the exposition text by hand.
//!
//! A service keeps its counters where they are counted (relaxed atomics in its own stats struct,
//! or `prometheus-client` metrics) and exposes atomics through a
//! [`Collector`] that reads them at scrape time with the
//! helpers here ([`encode_family`], [`AtomicsCollector`]): counting costs what it cost before,
//! and a scrape never stops a writer. Every registry also holds [`SERVING`], a gauge that turns 1
//! once the service serves, which the test harness and operators read as readiness.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;

pub mod endpoint;
pub mod reader;

pub use endpoint::{MetricsEndpoint, MetricsError, MetricsThread, serve_http};
pub use prometheus_client;
pub use reader::{ReadError, Sample, Samples, fetch, fetch_blocking, scrape};

/// The gauge every service exposes: 1 once it serves (the moment it logs that it is serving),
/// 0 before.
pub const SERVING: &str = "lars_service_serving";

/// The `Content-Type` of the text format the endpoint answers (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One service's registry, shared by its endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    registry: Arc<Registry>,
    serving: Gauge,
}

impl ServiceMetrics {
    /// A registry holding [`SERVING`] and whatever `register` adds.
    pub fn new(register: impl FnOnce(&mut Registry)) -> ServiceMetrics {
        let mut registry = Registry::default();
        let serving = Gauge::default();
        registry.register(SERVING, "1 once the service serves.", serving.clone());
        register(&mut registry);
        ServiceMetrics {
            registry: Arc::new(registry),
            serving,
        }
    }

    /// Marks the service as serving.
    pub fn set_serving(&self) {
        self.serving.set(1);
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; a collector's own error would leave a partial text,
        // which a scraper reads as the metrics it could encode.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Whether a sample counts up (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows; exposed with the `_total` suffix.
    Counter,
    /// Any value now.
    Gauge,
}

/// Encodes one metric family `name` from `samples` (a label set and a value each) into a
/// collector's `encoder`. `name` is the exposed name: a counter's ends in `_total` (added if
/// missing), so tables of metrics read as what a scrape shows.
pub fn encode_family<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: Kind,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = describe(encoder, name, help, kind)?;
    for (labels, value) in samples {
        encode_value(family.encode_family(&labels)?, kind, value)?;
    }
    Ok(())
}

/// Encodes one sample `name` without labels into a collector's `encoder` (see
/// [`encode_family`]).
pub fn encode_one(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: Kind,
    value: u64,
) -> fmt::Result {
    encode_value(describe(encoder, name, help, kind)?, kind, value)
}

fn describe<'a>(
    encoder: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    kind: Kind,
) -> Result<MetricEncoder<'a>, fmt::Error> {
    match kind {
        // The encoder appends `_total` to a counter's name.
        Kind::Counter => encoder.encode_descriptor(
            name.strip_suffix("_total").unwrap_or(name),
            help,
            None,
            MetricType::Counter,
        ),
        Kind::Gauge => encoder.encode_descriptor(name, help, None, MetricType::Gauge),
    }
}

fn encode_value(metric: MetricEncoder<'_>, kind: Kind, value: u64) -> fmt::Result {
    match kind {
        Kind::Counter => ConstCounter::new(value).encode(metric),
        // Gauges are i64 in the text format; ours are counts far below i64::MAX.
        Kind::Gauge => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric),
    }
}

/// One value of a stats struct `T` exposed by an [`AtomicsCollector`]: consecutive fields with
/// the same name form one family, told apart by their labels.
#[derive(Debug)]
pub struct Field<T> {
    /// Exposed name (a counter's ends in `_total`).
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Labels of this sample (empty for none).
    pub labels: &'static [(&'static str, &'static str)],
    /// Reads the value at scrape time.
    pub read: fn(&T) -> u64,
}

impl<T> Field<T> {
    /// A counter without labels.
    pub const fn counter(name: &'static str, help: &'static str, read: fn(&T) -> u64) -> Self {
        Field {
            name,
            help,
            kind: Kind::Counter,
            labels: &[],
            read,
        }
    }

    /// A gauge without labels.
    pub const fn gauge(name: &'static str, help: &'static str, read: fn(&T) -> u64) -> Self {
        Field {
            name,
            help,
            kind: Kind::Gauge,
            labels: &[],
            read,
        }
    }

    /// The same field with `labels`.
    pub const fn labelled(self, labels: &'static [(&'static str, &'static str)]) -> Self {
        Field { labels, ..self }
    }
}

/// Exposes the atomics of a shared stats struct through a table of [`Field`]s, read at scrape
/// time.
pub struct AtomicsCollector<T: 'static> {
    stats: Arc<T>,
    fields: &'static [Field<T>],
}

impl<T> AtomicsCollector<T> {
    /// A collector reading `fields` of `stats`.
    pub fn new(stats: Arc<T>, fields: &'static [Field<T>]) -> Self {
        AtomicsCollector { stats, fields }
    }
}

impl<T> fmt::Debug for AtomicsCollector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicsCollector")
            .field("fields", &self.fields.len())
            .finish()
    }
}

impl<T: Send + Sync + 'static> Collector for AtomicsCollector<T> {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for family in self.fields.chunk_by(|a, b| a.name == b.name) {
            let first = &family[0];
            if first.labels.is_empty() && family.len() == 1 {
                let value = (first.read)(&self.stats);
                encode_one(&mut encoder, first.name, first.help, first.kind, value)?;
            } else {
                let samples = family.iter().map(|f| (f.labels, (f.read)(&self.stats)));
                encode_family(&mut encoder, first.name, first.help, first.kind, samples)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Toy {
        requests: AtomicU64,
        open: AtomicU64,
        closed_a: AtomicU64,
        closed_b: AtomicU64,
    }

    static TOY: [Field<Toy>; 4] = [
        Field::counter("toy_requests_total", "Requests.", |t| {
            t.requests.load(Ordering::Relaxed)
        }),
        Field::gauge("toy_open", "Open now.", |t| t.open.load(Ordering::Relaxed)),
        Field::counter("toy_closed_total", "Closed, by reason.", |t: &Toy| {
            t.closed_a.load(Ordering::Relaxed)
        })
        .labelled(&[("reason", "a")]),
        Field::counter("toy_closed_total", "Closed, by reason.", |t: &Toy| {
            t.closed_b.load(Ordering::Relaxed)
        })
        .labelled(&[("reason", "b")]),
    ];

    #[test]
    fn a_table_of_atomics_is_read_at_scrape_time() {
        let toy = Arc::new(Toy::default());
        let metrics = ServiceMetrics::new(|r| {
            r.register_collector(Box::new(AtomicsCollector::new(toy.clone(), &TOY)));
        });
        toy.requests.store(7, Ordering::Relaxed);
        toy.open.store(2, Ordering::Relaxed);
        toy.closed_b.store(1, Ordering::Relaxed);
        metrics.set_serving();
        let text = metrics.render();
        assert!(
            text.contains("# TYPE toy_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE toy_open gauge\n"), "{text}");
        let samples = Samples::parse(&text);
        assert_eq!(samples.get("toy_requests_total", &[]), Some(7.0));
        assert_eq!(samples.get("toy_open", &[]), Some(2.0));
        assert_eq!(
            samples.get("toy_closed_total", &[("reason", "a")]),
            Some(0.0)
        );
        assert_eq!(
            samples.get("toy_closed_total", &[("reason", "b")]),
            Some(1.0)
        );
        assert_eq!(samples.get(SERVING, &[]), Some(1.0));
        // One HELP/TYPE per family.
        assert_eq!(text.matches("# TYPE toy_closed_total").count(), 1, "{text}");
    }
}
