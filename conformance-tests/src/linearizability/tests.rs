//! Known linearizable and non-linearizable histories, and a property: histories generated
//! from the model (each operation's interval containing its linearization point) are
//! always accepted.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn v(s: &str) -> Option<Value> {
    Some(s.as_bytes().to_vec())
}

/// An operation on key `k` by `client` over `[invoked, returned]` (`None`: unknown).
fn op(
    client: u64,
    key: &str,
    input: KvInput,
    output: Option<KvOutput>,
    invoked: u64,
    returned: Option<u64>,
) -> Operation {
    Operation {
        client,
        key: key.as_bytes().to_vec(),
        input,
        outcome: output.map_or(Outcome::Unknown, Outcome::Ok),
        invoked_at: invoked,
        returned_at: returned,
    }
}

fn put(client: u64, val: &str, t: (u64, u64)) -> Operation {
    op(
        client,
        "k",
        KvInput::Put(val.into()),
        Some(KvOutput::Put),
        t.0,
        Some(t.1),
    )
}

fn put_unknown(client: u64, val: &str, at: u64) -> Operation {
    op(client, "k", KvInput::Put(val.into()), None, at, None)
}

fn get(client: u64, seen: Option<&str>, t: (u64, u64)) -> Operation {
    let seen = seen.and_then(v);
    op(
        client,
        "k",
        KvInput::Get,
        Some(KvOutput::Get(seen)),
        t.0,
        Some(t.1),
    )
}

fn delete(client: u64, t: (u64, u64)) -> Operation {
    op(
        client,
        "k",
        KvInput::Delete,
        Some(KvOutput::Delete),
        t.0,
        Some(t.1),
    )
}

fn cas(
    client: u64,
    expected: Option<&str>,
    new: Option<&str>,
    result: Option<(bool, Option<&str>)>,
    t: (u64, Option<u64>),
) -> Operation {
    op(
        client,
        "k",
        KvInput::Cas {
            expected: expected.and_then(v),
            new: new.and_then(v),
        },
        result.map(|(succeeded, previous)| KvOutput::Cas {
            succeeded,
            previous: previous.and_then(v),
        }),
        t.0,
        t.1,
    )
}

fn linearizable(ops: Vec<Operation>) -> bool {
    let report = check(&History::new(ops), Budget::default());
    assert!(
        !matches!(report.verdict, Verdict::Undecided(_)),
        "small histories are decided"
    );
    report.is_linearizable()
}

#[test]
fn empty_and_sequential_histories() {
    assert!(linearizable(vec![]));
    assert!(linearizable(vec![
        get(1, None, (1, 2)),
        put(1, "a", (3, 4)),
        get(2, Some("a"), (5, 6)),
        delete(1, (7, 8)),
        get(2, None, (9, 10)),
    ]));
    assert!(!linearizable(vec![
        put(1, "a", (1, 2)),
        get(2, Some("b"), (3, 4))
    ]));
    assert!(!linearizable(vec![
        put(1, "a", (1, 2)),
        get(2, None, (3, 4))
    ]));
    assert!(!linearizable(vec![
        put(1, "a", (1, 2)),
        delete(1, (3, 4)),
        get(2, Some("a"), (5, 6)),
    ]));
}

#[test]
fn overlapping_operations_may_take_effect_anywhere_in_their_interval() {
    // A read during a put may see either value.
    assert!(linearizable(vec![
        put(1, "a", (1, 10)),
        get(2, Some("a"), (2, 3))
    ]));
    assert!(linearizable(vec![
        put(1, "a", (1, 10)),
        get(2, None, (2, 3))
    ]));
    assert!(linearizable(vec![
        put(1, "a", (1, 10)),
        get(2, None, (2, 3)),
        get(2, Some("a"), (4, 5)),
    ]));
    // ... but once a read saw the new value, a later read cannot see the old one.
    assert!(!linearizable(vec![
        put(1, "a", (1, 10)),
        get(2, Some("a"), (2, 3)),
        get(3, None, (4, 5)),
    ]));
}

#[test]
fn readers_must_agree_on_the_order_of_concurrent_writes() {
    let writes = || vec![put(1, "a", (1, 20)), put(2, "b", (1, 20))];
    let mut agree = writes();
    agree.extend([
        get(3, Some("a"), (2, 3)),
        get(3, Some("b"), (4, 5)),
        get(4, Some("b"), (6, 7)),
    ]);
    assert!(linearizable(agree));
    let mut disagree = writes();
    disagree.extend([
        get(3, Some("a"), (2, 3)),
        get(3, Some("b"), (4, 5)),
        get(4, Some("a"), (6, 7)),
    ]);
    assert!(!linearizable(disagree));
}

#[test]
fn unknown_operations_take_effect_later_or_never() {
    // Never.
    assert!(linearizable(vec![
        put_unknown(1, "a", 1),
        get(2, None, (2, 3))
    ]));
    // Long after the client gave up.
    assert!(linearizable(vec![
        put_unknown(1, "a", 1),
        get(2, None, (2, 3)),
        get(2, None, (50, 51)),
        get(2, Some("a"), (100, 101)),
    ]));
    // But not before it was invoked ...
    assert!(!linearizable(vec![
        get(2, Some("a"), (1, 2)),
        put_unknown(1, "a", 3)
    ]));
    // ... and only once.
    assert!(!linearizable(vec![
        put(3, "b", (1, 2)),
        put_unknown(1, "a", 3),
        get(2, Some("a"), (4, 5)),
        put(3, "b", (6, 7)),
        get(2, Some("b"), (8, 9)),
        get(2, Some("a"), (10, 11)),
    ]));
    // An unknown delete.
    assert!(linearizable(vec![
        put(1, "a", (1, 2)),
        op(1, "k", KvInput::Delete, None, 3, None),
        get(2, Some("a"), (4, 5)),
        get(2, None, (6, 7)),
    ]));
}

#[test]
fn failed_operations_have_no_effect() {
    let mut failed = put(1, "a", (1, 2));
    failed.outcome = Outcome::Failed;
    assert!(linearizable(vec![failed.clone(), get(2, None, (3, 4))]));
    assert!(!linearizable(vec![failed, get(2, Some("a"), (3, 4))]));
}

#[test]
fn compare_and_swap() {
    // Succeeds on the expected value, fails (reporting the value) otherwise.
    assert!(linearizable(vec![
        put(1, "a", (1, 2)),
        cas(
            1,
            Some("a"),
            Some("b"),
            Some((true, Some("a"))),
            (3, Some(4))
        ),
        cas(
            2,
            Some("a"),
            Some("c"),
            Some((false, Some("b"))),
            (5, Some(6))
        ),
        cas(2, Some("b"), None, Some((true, Some("b"))), (7, Some(8))),
        cas(3, None, Some("d"), Some((true, None)), (9, Some(10))),
        get(3, Some("d"), (11, 12)),
    ]));
    // A success from a state it could not have seen.
    assert!(!linearizable(vec![cas(
        1,
        Some("a"),
        Some("b"),
        Some((true, Some("a"))),
        (1, Some(2))
    )]));
    // Two concurrent swaps from the same value cannot both succeed.
    assert!(!linearizable(vec![
        put(1, "a", (1, 2)),
        cas(
            1,
            Some("a"),
            Some("b"),
            Some((true, Some("a"))),
            (3, Some(10))
        ),
        cas(
            2,
            Some("a"),
            Some("c"),
            Some((true, Some("a"))),
            (3, Some(10))
        ),
    ]));
    // A swap of unknown outcome happens only if its expectation held at some point.
    assert!(linearizable(vec![
        put(1, "a", (1, 2)),
        cas(2, Some("a"), Some("b"), None, (3, None)),
        put(1, "c", (4, 5)),
        get(3, Some("c"), (6, 7)),
    ]));
    assert!(!linearizable(vec![
        put(1, "a", (1, 2)),
        put(1, "c", (3, 4)),
        cas(2, Some("a"), Some("b"), None, (5, None)),
        get(3, Some("b"), (6, 7)),
    ]));
}

#[test]
fn keys_are_independent_and_a_violation_names_its_key() {
    let mut other = get(2, Some("zzz"), (3, 4));
    other.key = b"other".to_vec();
    let report = check(
        &History::new(vec![put(1, "a", (1, 2)), get(2, Some("a"), (3, 4)), other]),
        Budget::default(),
    );
    let Verdict::NotLinearizable(violation) = &report.verdict else {
        panic!("expected a violation, got {:?}", report.verdict);
    };
    assert_eq!(violation.key, b"other");
    assert_eq!(report.keys, 2);
    let text = violation.to_string();
    assert!(text.contains("\"zzz\""), "{text}");
}

/// Many concurrent writes whose values nobody read, and reads that force the search to
/// consider most orders of them.
fn hard_history() -> History {
    let mut ops = Vec::new();
    for c in 0..14u64 {
        ops.push(put(c, &format!("w{c}"), (1, 100)));
    }
    for c in 0..14u64 {
        ops.push(get(100 + c, Some(&format!("w{c}")), (2 + 2 * c, 3 + 2 * c)));
    }
    ops.push(get(200, Some("never written"), (101, 102)));
    History::new(ops)
}

#[test]
fn an_exhausted_budget_is_undecided_and_fails_loudly() {
    let budget = Budget {
        steps_max: 50,
        time_max: Duration::from_secs(60),
    };
    let report = check(&hard_history(), budget);
    assert!(matches!(report.verdict, Verdict::Undecided(_)));
    assert!(!report.is_linearizable());
    let panic = std::panic::catch_unwind(|| report.assert_linearizable()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("UNDECIDED"), "{message}");
}

#[test]
fn lost_writes() {
    let history = History::new(vec![
        put(1, "a", (1, 2)),
        put(1, "b", (3, 4)),
        put_unknown(2, "c", 5),
    ]);
    let finals = |value: Option<&str>| BTreeMap::from([(b"k".to_vec(), value.and_then(v))]);
    assert!(check_no_lost_writes(&history, &finals(Some("b"))).is_ok());
    assert!(check_no_lost_writes(&history, &finals(Some("c"))).is_ok());
    let lost = check_no_lost_writes(&history, &finals(Some("a"))).unwrap_err();
    assert_eq!(lost.lost.unwrap().input, KvInput::Put(b"b".to_vec()));
    let absent = check_no_lost_writes(&history, &finals(None)).unwrap_err();
    assert!(absent.lost.is_some());
    let unwritten = check_no_lost_writes(&history, &finals(Some("z"))).unwrap_err();
    assert!(unwritten.lost.is_none(), "{unwritten}");
    let untouched = BTreeMap::from([(b"other".to_vec(), None)]);
    assert!(check_no_lost_writes(&history, &untouched).is_ok());
}

fn append(client: u64, seqs: &[u64], outcome: Outcome, t: u64) -> Operation {
    let value: Vec<String> = seqs.iter().map(|&s| append_token(client, s)).collect();
    Operation {
        client,
        key: b"log".to_vec(),
        input: KvInput::Put(value.join(" ").into_bytes()),
        returned_at: (outcome != Outcome::Unknown).then_some(t + 1),
        outcome,
        invoked_at: t,
    }
}

#[test]
fn appends_exactly_once_and_in_order() {
    let ok = || Outcome::Ok(KvOutput::Put);
    let history = History::new(vec![
        append(1, &[0], ok(), 1),
        append(1, &[0, 1], Outcome::Unknown, 3),
        append(1, &[0, 1, 2], ok(), 5),
        append(1, &[0, 1, 2, 3], Outcome::Failed, 7),
    ]);
    let check_final = |tokens: &[u64]| {
        let value: Vec<String> = tokens.iter().map(|&s| append_token(1, s)).collect();
        let finals = BTreeMap::from([(b"log".to_vec(), Some(value.join(" ").into_bytes()))]);
        check_appends(&history, &finals)
    };
    assert!(check_final(&[0, 1, 2]).is_ok());
    assert!(
        check_final(&[0, 2]).is_ok(),
        "the unknown append may be missing"
    );
    assert!(check_final(&[0, 1]).is_err(), "acknowledged append 2 lost");
    assert!(check_final(&[0, 2, 1]).is_err(), "out of order");
    assert!(check_final(&[0, 0, 1, 2]).is_err(), "duplicated");
    assert!(
        check_final(&[0, 1, 2, 3]).is_err(),
        "a failed append appears"
    );
    assert!(check_final(&[0, 1, 2, 4]).is_err(), "never attempted");
    assert_eq!(
        parse_tokens(b"x 3 4 y x 5 6 y").unwrap(),
        vec![(3, 4), (5, 6)]
    );
    assert!(parse_tokens(b"x 3 y").is_err());
}

/// A random operation on one of three keys over a small set of values.
fn arb_input() -> impl Strategy<Value = (u8, KvInput)> {
    let value = prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| s.as_bytes().to_vec());
    let opt_value = prop::option::of(value.clone());
    let input = prop_oneof![
        Just(KvInput::Get),
        value.prop_map(KvInput::Put),
        Just(KvInput::Delete),
        (opt_value.clone(), opt_value).prop_map(|(expected, new)| KvInput::Cas { expected, new }),
    ];
    (0..3u8, input)
}

/// What happens to a generated operation.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Completed,
    /// Took effect, but the client never learned it.
    UnknownApplied,
    /// Never took effect, and the client never learned it.
    UnknownLost,
}

fn arb_fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        8 => Just(Fate::Completed),
        1 => Just(Fate::UnknownApplied),
        1 => Just(Fate::UnknownLost),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Operations run one after another through the model, each given an interval around
    /// its linearization point (so intervals overlap), are linearizable.
    #[test]
    fn histories_generated_from_the_model_are_accepted(
        ops in prop::collection::vec((arb_input(), arb_fate(), 0..25u64, 1..25u64), 0..60)
    ) {
        let model = KvModel::<Value>::default();
        let mut state: BTreeMap<u8, Option<Value>> = BTreeMap::new();
        let mut history = Vec::new();
        for (i, ((key, input), fate, before, after)) in ops.into_iter().enumerate() {
            let point = 100 * (i as u64 + 1);
            let current = state.entry(key).or_default();
            let next = model.step(current, &input, None).unwrap();
            let output = match (&input, current.clone()) {
                (KvInput::Get, seen) => KvOutput::Get(seen),
                (KvInput::Put(_), _) => KvOutput::Put,
                (KvInput::Delete, _) => KvOutput::Delete,
                (KvInput::Cas { expected, .. }, previous) => KvOutput::Cas {
                    succeeded: previous == *expected,
                    previous,
                },
            };
            if !matches!(fate, Fate::UnknownLost) {
                *current = next;
            }
            let completed = matches!(fate, Fate::Completed);
            history.push(Operation {
                client: i as u64,
                key: vec![key],
                input,
                outcome: if completed { Outcome::Ok(output) } else { Outcome::Unknown },
                invoked_at: point - before,
                returned_at: completed.then_some(point + after),
            });
        }
        let report = check(&History::new(history), Budget::default());
        prop_assert!(report.is_linearizable(), "{:?}", report.verdict);
    }
}

#[test]
fn a_long_concurrent_history_is_decided() {
    // 8 clients, 5,000 operations on 4 keys with unique values, every operation
    // overlapping its neighbours.
    let mut ops = Vec::new();
    let mut state: BTreeMap<u64, Option<String>> = BTreeMap::new();
    for i in 0..5_000u64 {
        let key = i % 4;
        let client = i % 8;
        let point = 10 * (i + 3);
        let (input, output) = if i % 3 == 0 {
            let seen = state.get(&key).cloned().flatten();
            (KvInput::Get, KvOutput::Get(seen.map(String::into_bytes)))
        } else {
            let value = format!("v{i}");
            state.insert(key, Some(value.clone()));
            (KvInput::Put(value.into_bytes()), KvOutput::Put)
        };
        ops.push(Operation {
            client,
            key: key.to_be_bytes().to_vec(),
            input,
            outcome: Outcome::Ok(output),
            invoked_at: point - 25,
            returned_at: Some(point + 25),
        });
    }
    let report = check(&History::new(ops), Budget::default());
    report.assert_linearizable();
    assert_eq!(report.keys, 4);
}
