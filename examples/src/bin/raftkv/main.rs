//! `raftkv`: the command-line client of a raftkv cluster.
//!
//! ```sh
//! raftkv -e 127.0.0.1:20161,127.0.0.1:20162,127.0.0.1:20163 put greeting hello
//! raftkv -e ... get greeting
//! raftkv -e ... scan --start a --end z --limit 10 --reverse
//! raftkv -e ... status
//! raftkv -e ... bench --clients 32 --duration 10s --read-ratio 0.9 --json
//! ```
//!
//! Results go to stdout (`--json` for machine-readable output), errors to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bytes_format;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raftkv_examples::client::ScanOptions;
use raftkv_examples::proto::kvrpc::{RegionInfo, StatusResponse};
use raftkv_examples::{AdminClient, Client};
use serde_json::{Value, json};

use crate::bytes_format::BytesFormat;

/// mimalloc, as in `raftkv-server` (see there): `raftkv bench` shares the servers' cores.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes: 0 success, 1 the request failed (unreachable, timed out, refused),
2 bad command line, 3 `get` found no value.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "raftkv",
    version,
    about = "The command-line client of a raftkv cluster",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The cluster's nodes, as a comma-separated list of host:port (any subset works:
    /// the client follows leader hints).
    #[arg(
        long,
        short = 'e',
        global = true,
        default_value = "127.0.0.1:20161",
        value_parser = parse_endpoints
    )]
    endpoints: Endpoints,
    /// The deadline of each request, retries included, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Keys and values are hex on the command line and in the output.
    #[arg(long, global = true)]
    hex: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the value of KEY (exit code 3 when there is none).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete KEY (no error when it is absent).
    Delete {
        /// The key.
        key: String,
    },
    /// List the pairs with keys in [START, END), in key order.
    Scan {
        /// The first key (inclusive); empty = the first key of the store.
        #[arg(long, default_value = "")]
        start: String,
        /// The end key (exclusive); empty = unbounded.
        #[arg(long, default_value = "")]
        end: String,
        /// At most this many pairs (0 = no limit).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Descending key order: the last LIMIT keys of the range.
        #[arg(long)]
        reverse: bool,
        /// Print keys only (values are not fetched).
        #[arg(long)]
        keys_only: bool,
    },
    /// Compare-and-swap: set KEY to NEW only if it holds EXPECTED; prints whether it
    /// swapped and the previous value (exit code 4 when it did not swap).
    Cas {
        /// The key.
        key: String,
        /// The value KEY must hold (omit with --expect-absent).
        #[arg(long, required_unless_present = "expect_absent")]
        expected: Option<String>,
        /// KEY must not exist.
        #[arg(long, conflicts_with = "expected")]
        expect_absent: bool,
        /// The new value (omit with --delete).
        #[arg(long, required_unless_present = "delete")]
        new: Option<String>,
        /// Delete KEY on a match instead of setting it.
        #[arg(long, conflicts_with = "new")]
        delete: bool,
    },
    /// Every node's view: its regions, their leaders, terms and indexes.
    Status,
    /// Move the leadership of a region to another store.
    TransferLeader {
        /// The region.
        #[arg(long, default_value_t = 1)]
        region: u64,
        /// The store that should lead it.
        #[arg(long)]
        to: u64,
    },
    /// Split a region at the given keys in one step (pre-split) and print the regions its
    /// range is made of now.
    Split {
        /// The region.
        #[arg(long, default_value_t = 1)]
        region: u64,
        /// The split keys (any order): each starts a new region.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Load the cluster with concurrent gets and puts and report throughput and latency.
    Bench(bench::BenchArgs),
}

/// The `--endpoints` list.
#[derive(Debug, Clone)]
struct Endpoints(Vec<String>);

fn parse_endpoints(s: &str) -> Result<Endpoints, String> {
    raftkv_examples::endpoint::parse_list(s)
        .map(Endpoints)
        .map_err(|e| e.to_string())
}

/// How a command failed.
enum Failure {
    /// A bad argument the parser could not catch (exit 2).
    Usage(String),
    /// The request failed (exit 1).
    Request(String),
    /// `get` found nothing (exit 3); nothing more to say.
    NotFound,
    /// `cas` found another value (exit 4); the output says which.
    CasMismatch,
}

impl From<raftkv_examples::Error> for Failure {
    fn from(e: raftkv_examples::Error) -> Self {
        Self::Request(e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("raftkv: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Request(e)) => {
            eprintln!("raftkv: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::NotFound) => ExitCode::from(3),
        Err(Failure::CasMismatch) => ExitCode::from(4),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let timeout = Duration::from_millis(cli.timeout_ms);
    let format = if cli.hex {
        BytesFormat::Hex
    } else {
        BytesFormat::Text
    };
    let arg = |s: &str| format.parse(s).map_err(Failure::Usage);
    let kv = || Client::connect(&cli.endpoints.0).map(|c| c.with_timeout(timeout));
    match &cli.command {
        Command::Get { key } => {
            let key = arg(key)?;
            let value = kv()?.get(key.clone()).await?;
            if cli.json {
                let value = value.as_ref().map(|v| format.show(v));
                let found = value.is_some();
                println!(
                    "{}",
                    json!({ "key": format.show(&key), "found": found, "value": value })
                );
            }
            match value {
                Some(v) if !cli.json => println!("{}", format.show(&v)),
                Some(_) => {}
                None => {
                    if !cli.json {
                        eprintln!("raftkv: {} not found", format.show(&key));
                    }
                    return Err(Failure::NotFound);
                }
            }
        }
        Command::Put { key, value } => {
            kv()?.put(arg(key)?, arg(value)?).await?;
            done(cli.json);
        }
        Command::Delete { key } => {
            kv()?.delete(arg(key)?).await?;
            done(cli.json);
        }
        Command::Cas {
            key, expected, new, ..
        } => {
            let key = arg(key)?;
            let expected = expected.as_deref().map(arg).transpose()?;
            let new = new.as_deref().map(arg).transpose()?;
            let outcome = kv()?
                .compare_and_swap(key.clone(), expected.map(Into::into), new.map(Into::into))
                .await?;
            let previous = outcome.previous.as_ref().map(|v| format.show(v));
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "key": format.show(&key),
                        "succeeded": outcome.succeeded,
                        "previous": previous,
                    })
                );
            } else {
                let verdict = if outcome.succeeded {
                    "swapped"
                } else {
                    "not swapped"
                };
                match &previous {
                    Some(p) => println!("{verdict} (previous: {p})"),
                    None => println!("{verdict} (previous: absent)"),
                }
            }
            if !outcome.succeeded {
                return Err(Failure::CasMismatch);
            }
        }
        Command::Scan {
            start,
            end,
            limit,
            reverse,
            keys_only,
        } => {
            let options = ScanOptions {
                limit: *limit,
                reverse: *reverse,
                key_only: *keys_only,
            };
            let pairs = kv()?.scan_with(arg(start)?, arg(end)?, options).await?;
            if cli.json {
                let pairs: Vec<_> = pairs
                    .iter()
                    .map(|(k, v)| {
                        if *keys_only {
                            json!({ "key": format.show(k) })
                        } else {
                            json!({ "key": format.show(k), "value": format.show(v) })
                        }
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(pairs));
            } else {
                for (k, v) in &pairs {
                    if *keys_only {
                        println!("{}", format.show(k));
                    } else {
                        println!("{}\t{}", format.show(k), format.show(v));
                    }
                }
            }
        }
        Command::Status => status(&cli, timeout, format).await?,
        Command::TransferLeader { region, to } => {
            transfer_leader(&cli, timeout, *region, *to).await?;
        }
        Command::Split { region, keys } => {
            let keys = keys.iter().map(|k| arg(k)).collect::<Result<Vec<_>, _>>()?;
            let regions = kv()?.split_region(*region, keys).await?;
            if cli.json {
                let regions: Vec<_> = regions
                    .iter()
                    .map(|r| Value::Object(region_json(r, format)))
                    .collect();
                println!("{}", Value::Array(regions));
            } else {
                for r in &regions {
                    println!(
                        "region {} [{:?}, {:?})",
                        r.id,
                        format.show(&r.start_key),
                        format.show(&r.end_key)
                    );
                }
            }
        }
        Command::Bench(args) => {
            let report = bench::run(&cli.endpoints.0, timeout, args, !cli.json)
                .await
                .map_err(Failure::Usage)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report)
                        .map_err(|e| Failure::Request(format!("cannot encode the report: {e}")))?
                );
            } else {
                print!("{}", bench::render(&report));
            }
            if report.ops == 0 {
                return Err(Failure::Request(format!(
                    "no operation succeeded; first error: {}",
                    report.first_error.as_deref().unwrap_or("none")
                )));
            }
        }
    }
    Ok(())
}

fn done(json: bool) {
    if json {
        println!("{}", json!({ "ok": true }));
    } else {
        println!("OK");
    }
}

async fn status(cli: &Cli, timeout: Duration, format: BytesFormat) -> Result<(), Failure> {
    let admin = AdminClient::connect(&cli.endpoints.0)?.with_timeout(timeout);
    let answers = admin.status_all().await;
    let answered = answers.iter().filter(|(_, s)| s.is_ok()).count();
    if cli.json {
        let nodes: Vec<_> = answers
            .iter()
            .map(|(endpoint, s)| match s {
                Ok(s) => status_json(endpoint, s, format),
                Err(e) => json!({ "endpoint": endpoint, "error": e.to_string() }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(nodes));
    } else {
        for (endpoint, s) in &answers {
            match s {
                Ok(s) => print!("{}", status_text(endpoint, s, format)),
                Err(e) => println!("{endpoint}: unreachable: {e}"),
            }
        }
    }
    if answered == 0 {
        return Err(Failure::Request("no node answered".into()));
    }
    Ok(())
}

/// A region's id, range, epoch and stores, as JSON fields.
fn region_json(info: &RegionInfo, format: BytesFormat) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("id".into(), json!(info.id));
    fields.insert("start_key".into(), json!(format.show(&info.start_key)));
    fields.insert("end_key".into(), json!(format.show(&info.end_key)));
    fields.insert("conf_ver".into(), json!(info.conf_ver));
    fields.insert("version".into(), json!(info.version));
    fields.insert("store_ids".into(), json!(info.store_ids));
    fields
}

fn status_json(endpoint: &str, s: &StatusResponse, format: BytesFormat) -> serde_json::Value {
    let regions: Vec<_> = s
        .regions
        .iter()
        .map(|r| {
            let mut fields = region_json(&r.region.clone().unwrap_or_default(), format);
            fields.insert("leader_store_id".into(), json!(r.leader_store_id));
            fields.insert("is_leader".into(), json!(r.is_leader));
            fields.insert("term".into(), json!(r.term));
            fields.insert("applied_index".into(), json!(r.applied_index));
            fields.insert("commit_index".into(), json!(r.commit_index));
            Value::Object(fields)
        })
        .collect();
    json!({
        "endpoint": endpoint,
        "store_id": s.store_id,
        "stores": s.stores.iter().map(|st| json!({ "id": st.id, "addr": st.addr })).collect::<Vec<_>>(),
        "regions": regions,
    })
}

fn status_text(endpoint: &str, s: &StatusResponse, format: BytesFormat) -> String {
    let mut out = format!("store {} at {endpoint}\n", s.store_id);
    for r in &s.regions {
        let info = r.region.clone().unwrap_or_default();
        let leader = match (r.is_leader, r.leader_store_id) {
            (true, _) => "leader: this store".to_string(),
            (false, 0) => "leader: none".to_string(),
            (false, id) => format!("leader: store {id}"),
        };
        out.push_str(&format!(
            "  region {} [{:?}, {:?}) stores {:?}  {leader}  term {}  commit {}  applied {}\n",
            info.id,
            format.show(&info.start_key),
            format.show(&info.end_key),
            info.store_ids,
            r.term,
            r.commit_index,
            r.applied_index,
        ));
    }
    out
}

async fn transfer_leader(
    cli: &Cli,
    timeout: Duration,
    region: u64,
    to: u64,
) -> Result<(), Failure> {
    let admin = AdminClient::connect(&cli.endpoints.0)?.with_timeout(timeout);
    let (from, to) = admin.transfer_leader(region, to, timeout).await?;
    if cli.json {
        println!("{}", json!({ "region": region, "from": from, "to": to }));
    } else {
        println!("region {region}: leader moved from store {from} to store {to}");
    }
    Ok(())
}
