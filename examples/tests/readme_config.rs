//! The README's configuration reference stays true: its example config is accepted by
//! `raftkv-server`, and its `[store]` table lists exactly `raft_store::Config`'s keys with
//! their real defaults.

use std::collections::BTreeMap;
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_raftkv-server");
const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

/// The text of the `## {title}` section, up to the next `## ` heading.
fn section(title: &str) -> &'static str {
    let heading = format!("\n## {title}\n");
    let start = README.find(&heading).expect("the README has the section") + heading.len();
    let rest = &README[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The first ```toml block of `text`.
fn toml_block(text: &str) -> &str {
    let start = text.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = text[start..].find("```").expect("the block ends");
    &text[start..start + len]
}

/// `key -> first backticked word of column `column`` (the key's is 0) of the table under
/// `### {title}`.
fn table(text: &str, title: &str, column: usize) -> BTreeMap<String, String> {
    let heading = format!("### {title}\n");
    let start = text.find(&heading).expect("the table's heading") + heading.len();
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let key = cells[1].trim_matches('`').to_string();
            let cell = cells[column + 1];
            let default = cell.split('`').nth(1).unwrap_or(cell).to_string();
            (key, default)
        })
        .collect()
}

fn default_store_config() -> toml::Table {
    let text = toml::to_string(&raft_store::Config::default()).expect("encode the defaults");
    toml::from_str(&text).expect("decode the defaults")
}

#[test]
fn the_example_config_is_accepted_and_lists_every_key() {
    let reference = section("Configuration reference");
    let example = toml_block(reference);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node1.toml");
    std::fs::write(&path, example).expect("write the example");
    let out = Command::new(SERVER)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .expect("run raftkv-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("config ok"), "{stderr}");

    let parsed: toml::Table = toml::from_str(example).expect("the example is TOML");
    let store = parsed
        .get("store")
        .and_then(toml::Value::as_table)
        .expect("a [store] table");
    assert_eq!(
        store,
        &default_store_config(),
        "the example's [store] values are the defaults"
    );
    let server_keys = table(reference, "Server keys", 2);
    for key in server_keys.keys().filter(|k| *k != "[store]") {
        assert!(
            parsed.contains_key(key),
            "{key} is documented but not in the example"
        );
    }
    for key in parsed.keys().filter(|k| *k != "store") {
        assert!(
            server_keys.contains_key(key),
            "{key} is in the example but not documented"
        );
    }
}

#[test]
fn the_store_table_matches_the_code() {
    let documented = table(section("Configuration reference"), "`[store]` settings", 1);
    let defaults: BTreeMap<String, String> = default_store_config()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(documented, defaults);
}

#[test]
fn the_server_limits_are_documented_with_their_defaults() {
    let documented = table(section("Configuration reference"), "Server keys", 2);
    let text = toml::to_string(&raftkv_examples::ServerLimits::default()).expect("encode");
    let defaults: toml::Table = toml::from_str(&text).expect("decode");
    for (key, value) in defaults {
        assert_eq!(
            documented.get(&key),
            Some(&value.to_string()),
            "the README's default of {key}"
        );
    }
}
