//! `raftkv bench`: concurrent clients issuing gets and puts over a fixed key space, for a
//! duration or a number of operations; throughput and latency percentiles (HDR histograms,
//! microsecond resolution) reported separately for reads and writes.
//!
//! Every simulated client is a tokio task with one request in flight, picking keys
//! uniformly at random from a seeded generator. The tasks share `--connections` [`Client`]s
//! (each with one HTTP/2 connection per node and its own client id), as a load generator or
//! an application server multiplexes many concurrent requests over a few connections:
//! client `i` uses connection set `i mod connections`. Before the run, unless
//! `--no-preload`, every key is written once so reads find values. A failed operation is
//! counted and not timed; the run goes on.
//!
//! Latencies are buffered per task and added to one shared pair of histograms every
//! [`SAMPLES_PER_FLUSH`] operations, so recording costs a `Vec` push per operation and the
//! histograms' memory does not grow with the number of clients.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use raftkv_examples::Client;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use tokio::time::Instant;

/// The largest preload batch, in bytes of keys and values (well under the default 8 MiB
/// entry limit).
const PRELOAD_BATCH_BYTES: usize = 256 << 10;

/// Operations a client task times before adding its samples to the shared histograms.
const SAMPLES_PER_FLUSH: usize = 256;

/// The benchmark's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Concurrent clients (each a tokio task with one request in flight).
    #[arg(long, short = 'c', default_value_t = 16)]
    clients: usize,
    /// Connection sets the clients share: each is one `Client` (one HTTP/2 connection per
    /// node, its own client id); client i uses set i mod N. At most one per client.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Send every get and put as its own unary call instead of as commands of one
    /// `BatchCommands` stream per node and connection set (for comparison).
    #[arg(long)]
    unary: bool,
    /// How long to run, e.g. `10s`, `500ms`, `2m` (default 10s unless --ops is given).
    #[arg(long, short = 'd', value_parser = parse_duration, conflicts_with = "ops")]
    duration: Option<Duration>,
    /// Stop after this many operations in total instead of after a duration.
    #[arg(long, short = 'n')]
    ops: Option<u64>,
    /// The number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// The key length in bytes, prefix included.
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// The prefix of every key, so a benchmark does not overwrite other data.
    #[arg(long, default_value = "bench/")]
    key_prefix: String,
    /// The value length in bytes.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// The fraction of operations that are gets (the rest are puts), in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    read_ratio: f64,
    /// Do not write every key before the run.
    #[arg(long)]
    no_preload: bool,
    /// Keys per write while preloading (default: as many as fit in 256 KiB); 1 writes
    /// each key with its own put. The clients preload at once, each taking the next keys.
    #[arg(long)]
    preload_batch_keys: Option<u64>,
    /// The seed of the key choice and the value bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `10s`, `250ms`, `2m`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// When the run ends.
#[derive(Debug, Clone, Copy)]
enum Stop {
    After(Duration),
    Ops(u64),
}

/// The workload, checked.
#[derive(Debug, Clone)]
struct Workload {
    clients: usize,
    /// Connection sets, at most `clients`.
    connections: usize,
    unary: bool,
    stop: Stop,
    keys: u64,
    key_prefix: String,
    /// Digits of the zero-padded key index after the prefix.
    index_width: usize,
    value: Bytes,
    read_ratio: f64,
    preload: bool,
    /// Keys per preload write, at least 1.
    preload_batch_keys: u64,
    seed: u64,
}

impl Workload {
    fn new(args: &BenchArgs) -> Result<Self, String> {
        if args.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if args.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if args.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&args.read_ratio) {
            return Err(format!("--read-ratio {} is not in [0, 1]", args.read_ratio));
        }
        let digits = (args.keys - 1).to_string().len();
        let index_width = args.key_size.saturating_sub(args.key_prefix.len());
        if index_width < digits {
            return Err(format!(
                "--key-size {} is too small for prefix {:?} and {} keys (needs {})",
                args.key_size,
                args.key_prefix,
                args.keys,
                args.key_prefix.len() + digits
            ));
        }
        let stop = match (args.ops, args.duration) {
            (Some(0), _) => return Err("--ops must be at least 1".into()),
            (Some(n), _) => Stop::Ops(n),
            (None, Some(d)) if d.is_zero() => return Err("--duration must be positive".into()),
            (None, Some(d)) => Stop::After(d),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        let mut value = vec![0u8; args.value_size];
        StdRng::seed_from_u64(args.seed).fill(&mut value[..]);
        Ok(Self {
            clients: args.clients,
            connections: args.connections.min(args.clients),
            unary: args.unary,
            stop,
            keys: args.keys,
            key_prefix: args.key_prefix.clone(),
            index_width,
            value: value.into(),
            read_ratio: args.read_ratio,
            preload: !args.no_preload,
            preload_batch_keys: match args.preload_batch_keys {
                Some(0) => return Err("--preload-batch-keys must be at least 1".into()),
                Some(n) => n,
                None => {
                    (PRELOAD_BATCH_BYTES / (args.key_size + args.value_size).max(1)).max(1) as u64
                }
            },
            seed: args.seed,
        })
    }

    fn key(&self, index: u64) -> Bytes {
        format!(
            "{}{index:0width$}",
            self.key_prefix,
            width = self.index_width
        )
        .into()
    }
}

/// What one class of operations (reads or writes) did.
#[derive(Debug, Serialize)]
pub struct ClassReport {
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Successful operations per second of the run.
    pub ops_per_sec: f64,
    /// Latency of the successful operations, in microseconds.
    pub latency_us: Latency,
}

/// Latency percentiles in microseconds (0 without samples).
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// 50th percentile.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// The result of a run (the `--json` output).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Concurrent clients.
    pub clients: usize,
    /// Connection sets (`Client`s) they shared.
    pub connections: usize,
    /// Whether each call went alone (`--unary`) rather than in a `BatchCommands` stream.
    pub unary: bool,
    /// Distinct keys.
    pub keys: u64,
    /// Key length in bytes.
    pub key_size: usize,
    /// Value length in bytes.
    pub value_size: usize,
    /// Fraction of gets asked for.
    pub read_ratio: f64,
    /// Seconds the measured run took.
    pub elapsed_secs: f64,
    /// Successful operations, reads and writes.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// The gets.
    pub read: ClassReport,
    /// The puts.
    pub write: ClassReport,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// The run's counts, shared by the client tasks.
struct Tally {
    read: Histogram<u64>,
    write: Histogram<u64>,
    read_errors: u64,
    write_errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            read: new_histogram(),
            write: new_histogram(),
            read_errors: 0,
            write_errors: 0,
            first_error: None,
        }
    }

    /// Adds a task's buffered samples and errors, and empties the buffer.
    fn take(&mut self, samples: &mut Samples) {
        for &us in &samples.read {
            self.read.saturating_record(us);
        }
        for &us in &samples.write {
            self.write.saturating_record(us);
        }
        samples.read.clear();
        samples.write.clear();
        self.read_errors += std::mem::take(&mut samples.read_errors);
        self.write_errors += std::mem::take(&mut samples.write_errors);
        if self.first_error.is_none() {
            self.first_error = samples.first_error.take();
        }
    }
}

/// What one client task measured since it last added to the [`Tally`].
#[derive(Default)]
struct Samples {
    /// Latencies of successful gets and puts, in microseconds (at least 1).
    read: Vec<u64>,
    write: Vec<u64>,
    read_errors: u64,
    write_errors: u64,
    first_error: Option<String>,
}

impl Samples {
    fn len(&self) -> usize {
        self.read.len() + self.write.len()
    }

    /// Adds the samples to `tally` (one lock per [`SAMPLES_PER_FLUSH`] operations).
    fn flush_into(&mut self, tally: &Mutex<Tally>) {
        tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(self);
    }
}

/// The longest latency a histogram tells apart: an hour, in microseconds (longer ones
/// are recorded as this).
const LATENCY_MAX_US: u64 = 3_600_000_000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
        .expect("bounds 1 < 2 * 1 and 3 significant figures are valid for hdrhistogram")
}

/// Runs the benchmark against `endpoints`; progress goes to stderr when it is a terminal
/// and `progress` is set.
pub async fn run(
    endpoints: &[String],
    timeout: Duration,
    args: &BenchArgs,
    progress: bool,
) -> Result<BenchReport, String> {
    let w = Arc::new(Workload::new(args)?);
    let pool = (0..w.connections)
        .map(|_| {
            Client::connect(endpoints)
                .map(|c| Arc::new(c.with_timeout(timeout).with_command_streams(!w.unary)))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let progress = progress && std::io::stderr().is_terminal();
    if w.preload {
        preload(&pool, &w, progress).await?;
    }
    let bar = progress_bar(w.stop, progress);
    let done = Arc::new(AtomicU64::new(0));
    let claimed = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::new()));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(w.clients);
    for i in 0..w.clients {
        let client = pool[i % pool.len()].clone();
        let (w, done, claimed, tally) = (w.clone(), done.clone(), claimed.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            run_client(&client, &w, i as u64, started, &claimed, &done, &tally).await;
        }));
    }
    let ticker = tokio::spawn(tick_progress(bar.clone(), w.stop, started, done.clone()));
    for t in tasks {
        t.await.map_err(|e| format!("a bench client failed: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let tally = std::mem::replace(
        &mut *tally.lock().unwrap_or_else(PoisonError::into_inner),
        Tally::new(),
    );
    ticker.abort();
    bar.finish_and_clear();
    let class = |h: &Histogram<u64>, errors: u64| ClassReport {
        ops: h.len(),
        errors,
        ops_per_sec: h.len() as f64 / elapsed,
        latency_us: Latency {
            mean: if h.is_empty() { 0.0 } else { h.mean() },
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        },
    };
    let (read, write) = (
        class(&tally.read, tally.read_errors),
        class(&tally.write, tally.write_errors),
    );
    Ok(BenchReport {
        clients: w.clients,
        connections: w.connections,
        unary: w.unary,
        keys: w.keys,
        key_size: args.key_size,
        value_size: args.value_size,
        read_ratio: w.read_ratio,
        elapsed_secs: elapsed,
        ops: read.ops + write.ops,
        errors: read.errors + write.errors,
        ops_per_sec: (read.ops + write.ops) as f64 / elapsed,
        read,
        write,
        first_error: tally.first_error,
    })
}

/// Writes every key once, in batches.
/// Writes every key once, `preload_batch_keys` keys per write, from `clients` tasks at
/// once (each takes the next unwritten keys).
async fn preload(pool: &[Arc<Client>], w: &Arc<Workload>, progress: bool) -> Result<(), String> {
    let bar = if progress {
        ProgressBar::with_draw_target(Some(w.keys), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("preloading");
    bar.set_style(style("{msg} [{bar:40}] {pos}/{len} keys"));
    let next = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..w.clients)
        .map(|i| {
            let (client, w, next, bar) = (
                pool[i % pool.len()].clone(),
                w.clone(),
                next.clone(),
                bar.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let first = next.fetch_add(w.preload_batch_keys, Ordering::Relaxed);
                    if first >= w.keys {
                        return Ok::<(), String>(());
                    }
                    let end = (first + w.preload_batch_keys).min(w.keys);
                    let written = if end - first == 1 {
                        client.put(w.key(first), w.value.clone()).await
                    } else {
                        let pairs = (first..end).map(|i| (w.key(i), w.value.clone())).collect();
                        client.batch_put(pairs).await
                    };
                    written.map_err(|e| format!("preload failed: {e}"))?;
                    bar.inc(end - first);
                }
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .map_err(|e| format!("a preload task failed: {e}"))??;
    }
    bar.finish_and_clear();
    Ok(())
}

/// One client's loop until the run ends.
async fn run_client(
    client: &Client,
    w: &Workload,
    index: u64,
    started: Instant,
    claimed: &AtomicU64,
    done: &AtomicU64,
    tally: &Mutex<Tally>,
) {
    let mut rng = StdRng::seed_from_u64(w.seed.wrapping_add(index.wrapping_mul(0x9e37_79b9)));
    let mut samples = Samples::default();
    loop {
        let more = match w.stop {
            Stop::After(d) => started.elapsed() < d,
            Stop::Ops(n) => claimed.fetch_add(1, Ordering::Relaxed) < n,
        };
        if !more {
            samples.flush_into(tally);
            return;
        }
        let key = w.key(rng.random_range(0..w.keys));
        let is_read = rng.random::<f64>() < w.read_ratio;
        let t = Instant::now();
        let result = if is_read {
            client.get(key).await.map(|_| ())
        } else {
            client.put(key, w.value.clone()).await
        };
        let micros = u64::try_from(t.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        match (result, is_read) {
            (Ok(()), true) => samples.read.push(micros),
            (Ok(()), false) => samples.write.push(micros),
            (Err(e), read) => {
                if read {
                    samples.read_errors += 1;
                } else {
                    samples.write_errors += 1;
                }
                samples.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        if samples.len() >= SAMPLES_PER_FLUSH {
            samples.flush_into(tally);
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A bar over the run's length: milliseconds for a timed run, operations otherwise.
fn progress_bar(stop: Stop, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let (len, template) = match stop {
        Stop::After(d) => (
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            "[{elapsed_precise}] [{bar:40}] {msg}",
        ),
        Stop::Ops(n) => (n, "[{elapsed_precise}] [{bar:40}] {pos}/{len} ops, {msg}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style(template));
    bar
}

/// Updates the bar ten times a second with the operations done and the current rate.
async fn tick_progress(bar: ProgressBar, stop: Stop, started: Instant, done: Arc<AtomicU64>) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let n = done.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        match stop {
            Stop::After(_) => {
                bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(0));
                bar.set_message(format!("{n} ops, {:.0} ops/s", n as f64 / secs));
            }
            Stop::Ops(_) => {
                bar.set_position(n);
                bar.set_message(format!("{:.0} ops/s", n as f64 / secs));
            }
        }
    }
}

/// The report as a table.
pub fn render(r: &BenchReport) -> String {
    let mut out = format!(
        "{} clients over {} connection sets, {:.1} s, {} keys of {} B, values of {} B, \
         read ratio {:.2}\n\
         {:<6} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        r.clients,
        r.connections,
        r.elapsed_secs,
        r.keys,
        r.key_size,
        r.value_size,
        r.read_ratio,
        "",
        "ops",
        "errors",
        "ops/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    let ms = |us: u64| us as f64 / 1000.0;
    for (name, c) in [("read", &r.read), ("write", &r.write)] {
        out.push_str(&format!(
            "{name:<6} {:>10} {:>8} {:>11.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
            c.ops,
            c.errors,
            c.ops_per_sec,
            ms(c.latency_us.p50),
            ms(c.latency_us.p90),
            ms(c.latency_us.p99),
            ms(c.latency_us.p999),
            ms(c.latency_us.max),
        ));
    }
    out.push_str(&format!(
        "{:<6} {:>10} {:>8} {:>11.1}\n",
        "total", r.ops, r.errors, r.ops_per_sec
    ));
    if let Some(e) = &r.first_error {
        out.push_str(&format!("first error: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn workload(argv: &[&str]) -> Result<Workload, String> {
        let wrap = Wrap::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        Workload::new(&wrap.args)
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn keys_are_padded_to_the_key_size() {
        let w = workload(&["--keys", "1000", "--key-size", "12", "--key-prefix", "b/"]).unwrap();
        assert_eq!(w.key(7), Bytes::from("b/0000000007"));
        assert_eq!(w.key(999).len(), 12);
        assert!(matches!(w.stop, Stop::After(d) if d == Duration::from_secs(10)));
    }

    #[test]
    fn clients_share_at_most_one_connection_set_each() {
        assert_eq!(workload(&["--clients", "1000"]).unwrap().connections, 4);
        let w = workload(&["--clients", "2", "--connections", "8"]).unwrap();
        assert_eq!(w.connections, 2);
    }

    #[test]
    fn samples_reach_the_tally_and_are_emptied() {
        let tally = Mutex::new(Tally::new());
        let mut samples = Samples {
            read: vec![100, 300],
            write: vec![2000],
            read_errors: 1,
            first_error: Some("first".into()),
            ..Samples::default()
        };
        samples.flush_into(&tally);
        assert_eq!(samples.len(), 0);
        samples.write.push(4000);
        samples.first_error = Some("second".into());
        samples.flush_into(&tally);
        let t = tally.into_inner().unwrap();
        assert_eq!((t.read.len(), t.write.len()), (2, 2));
        assert_eq!(t.read_errors, 1);
        assert_eq!(t.read.max(), 300);
        assert_eq!(t.first_error.as_deref(), Some("first"));
    }

    #[test]
    fn bad_workloads_are_refused() {
        for argv in [
            &["--keys", "100000", "--key-size", "8"][..],
            &["--read-ratio", "1.5"],
            &["--clients", "0"],
            &["--connections", "0"],
            &["--ops", "0"],
            &["--keys", "0"],
            &["--ops", "5", "--duration", "1s"],
        ] {
            assert!(workload(argv).is_err(), "{argv:?} was accepted");
        }
    }

    #[test]
    fn the_report_renders_both_classes() {
        let latency = || Latency {
            mean: 1.0,
            p50: 1000,
            p90: 2000,
            p99: 3000,
            p999: 4000,
            max: 5000,
        };
        let r = BenchReport {
            clients: 2,
            connections: 1,
            unary: false,
            keys: 10,
            key_size: 16,
            value_size: 8,
            read_ratio: 0.5,
            elapsed_secs: 1.0,
            ops: 3,
            errors: 1,
            ops_per_sec: 3.0,
            read: ClassReport {
                ops: 2,
                errors: 0,
                ops_per_sec: 2.0,
                latency_us: latency(),
            },
            write: ClassReport {
                ops: 1,
                errors: 1,
                ops_per_sec: 1.0,
                latency_us: latency(),
            },
            first_error: Some("boom".into()),
        };
        let text = render(&r);
        assert!(text.contains("p99.9 ms"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("read") && l.contains("4.000")),
            "{text}"
        );
        assert!(text.contains("first error: boom"), "{text}");
    }
}
