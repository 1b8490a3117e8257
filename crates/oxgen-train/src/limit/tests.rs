//! Tests of the game against hand-worked answers and brute force.

use std::path::Path;

use regex_automata::meta::Regex;

use super::collection::Collection;
use super::game::{GameConfig, play};
use super::language::{Kind, Language, shortlex};
use super::learner::{Generator, Knowledge};
use super::text::Order;

fn parse(text: &str) -> Collection {
    Collection::parse(text, Path::new("test.toml")).unwrap()
}

/// Every string over `alphabet` of at most `n` characters, in shortlex order.
fn universe(alphabet: &[char], n: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..n {
        layer = layer
            .iter()
            .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
            .collect();
        out.extend(layer.iter().cloned());
    }
    out
}

const AB: &str = r#"
alphabet = "ab"
[[language]]
name = "all"
regex = "[ab]*"
[[language]]
name = "a*"
regex = "a*"
[[language]]
name = "a*b*"
regex = "a*b*"
[[language]]
name = "a+"
regex = "a+"
"#;

/// Worked by hand. After {a, aa}: all four are consistent; L0 is critical (the first),
/// L1 = a* ⊆ L0, L2 = a*b* ⊄ a* (b), L3 = a+ ⊆ L0, L1, L2: critical = [0, 1, 3], so KM draws
/// from a+, Gold from L0, and the subset-principle learner from a+ (the only consistent language
/// with no consistent language strictly inside it). After b too: L1 and L3 are out, L2 ⊆ L0:
/// critical = [0, 2].
#[test]
fn critical_languages_by_hand() {
    let c = parse(AB);
    let langs = c.take(4).unwrap();
    let mut k = Knowledge::new(&langs, 12);
    k.observe("a");
    k.observe("aa");
    assert_eq!(k.critical(4, 64), vec![0, 1, 3]);
    assert_eq!(Generator::Km.hypothesis(&mut k, 4, 64), Some(3));
    assert_eq!(Generator::Gold.hypothesis(&mut k, 4, 64), Some(0));
    assert_eq!(Generator::Identify.hypothesis(&mut k, 4, 64), Some(3));
    // Only the first three considered (as at step 3): a* is the last critical one.
    assert_eq!(k.critical(3, 64), vec![0, 1]);
    // Breadth 1 is the broad end of the chain, 0 the narrow end (KM).
    assert_eq!(Generator::Breadth(1.0).hypothesis(&mut k, 4, 64), Some(0));
    assert_eq!(Generator::Breadth(0.5).hypothesis(&mut k, 4, 64), Some(1));
    k.observe("b");
    assert_eq!(k.critical(4, 64), vec![0, 2]);
    assert_eq!(Generator::Identify.hypothesis(&mut k, 4, 64), Some(2));
    assert!(
        k.unseen(2, 0).is_some_and(|s| s == ""),
        "the first unseen of a*b*"
    );
}

/// Each kind of language enumerates exactly its members of up to 6 characters, in shortlex
/// order: regular expressions against `regex-automata`'s own matcher, the built-in families
/// against their membership tests over every string of their alphabet.
#[test]
fn enumeration_matches_brute_force() {
    let c = parse(
        r#"
alphabet = "ab"
[[language]]
regex = "(ab|b)*a?"
[[language]]
regex = "[ab]*aba[ab]*"
[[language]]
regex = "(aa)*|b"
[[language]]
finite = ["ba", "", "ab", "a"]
"#,
    );
    for lang in c.take(4).unwrap() {
        let all = universe(&c.alphabet, 6);
        let want: Vec<String> = match &lang.kind {
            Kind::Regex(r) => {
                let re = Regex::new(&format!("^(?:{})$", r.pattern)).unwrap();
                all.into_iter()
                    .filter(|s| re.is_match(s.as_str()))
                    .collect()
            }
            _ => all.into_iter().filter(|s| lang.contains(s)).collect(),
        };
        assert_eq!(lang.strings(6, 10_000), want, "{}", lang.name);
    }
    let families = [
        (Kind::Progression { start: 4, step: 7 }, "0123456789", 3),
        (Kind::AnBn, "ab", 8),
        (Kind::Dyck { depth: 2 }, "()", 10),
        (Kind::Arithmetic { digits: None }, "", 6),
    ];
    for (kind, alphabet, n) in families {
        let lang = Language {
            name: format!("{kind:?}"),
            kind,
        };
        let got = lang.strings(n, 100_000);
        let want: Vec<String> = if alphabet.is_empty() {
            // a+b=s for one-digit a and b: the 100 lines, built independently.
            let mut v: Vec<String> = (0..10u32)
                .flat_map(|a| {
                    (0..10u32).map(move |b| {
                        let s = a + b;
                        format!("{a}+{b}={}{}", s % 10, s / 10)
                    })
                })
                .collect();
            v.sort_by(|x, y| shortlex(x, y));
            v
        } else {
            let chars: Vec<char> = alphabet.chars().collect();
            universe(&chars, n)
                .into_iter()
                .filter(|s| lang.contains(s))
                .collect()
        };
        assert_eq!(got, want, "{}", lang.name);
        assert!(got.iter().all(|s| lang.contains(s)));
    }
}

/// Exact inclusion between regular expressions agrees with inclusion on every string of up to
/// 12 characters (long enough for every pair here to show a difference: (ab)⁵ is the longest
/// witness needed), for every ordered pair.
#[test]
fn exact_inclusion_matches_brute_force() {
    let c = parse(
        r#"
alphabet = "ab"
[[language]]
regex = "[ab]*"
[[language]]
regex = "a*(ba*){0,3}"
[[language]]
regex = "a*(ba*){0,4}"
[[language]]
regex = "(ab)*"
[[language]]
regex = "(ab|b)*"
[[language]]
regex = "a*b*"
"#,
    );
    let langs = c.take(6).unwrap();
    let all = universe(&c.alphabet, 12);
    for a in &langs {
        for b in &langs {
            let brute = all.iter().all(|s| !a.contains(s) || b.contains(s));
            assert_eq!(a.is_subset_of(b), Some(brute), "{} ⊆ {}", a.name, b.name);
        }
    }
}

const BCOUNT: &str = r#"
alphabet = "abc"
[[language]]
regex = "[abc]*"
[[language]]
regex = "[ab]*"
[generate]
regex = "a*(ba*){0,{k}}"
from = 0
"#;

/// The collection without tell-tales (docs/generation-in-the-limit.md): on the target [ab]*,
/// the subset-principle learner changes its mind again after each doubling of the text
/// (at least 10 times in 5,000 steps, the last after step 2,000), Gold's learner sits on the
/// too-broad [abc]* and is almost never valid, while KM is valid from a finite step to the end
/// under every order; the memoriser is never valid.
#[test]
fn identification_fails_where_generation_succeeds() {
    let c = parse(BCOUNT);
    let langs = c.take(64).unwrap();
    for order in [Order::Shortlex, Order::Random, Order::Adversarial] {
        let game = |generator| {
            let config = GameConfig {
                target: 1,
                order,
                generator,
                steps: 5000,
                ..GameConfig::default()
            };
            play(&langs, &config, None, &indicatif::ProgressBar::hidden()).unwrap()
        };
        let identify = game(Generator::Identify);
        assert!(
            identify.changes >= 10,
            "{order}: {} changes",
            identify.changes
        );
        assert!(
            identify.last_change.unwrap() > 2000,
            "{order}: {identify:?}"
        );
        let km = game(Generator::Km);
        assert!(
            km.valid_from.is_some_and(|t| t <= 100),
            "{order}: {:?}",
            km.valid_from
        );
        assert_eq!(km.played, 5000);
        // KM's hypothesis holds few of the target's long strings: it buys validity with breadth.
        assert!(
            km.breadth_last_tenth.unwrap() < 0.5,
            "{:?}",
            km.breadth_last_tenth
        );
        let gold = game(Generator::Gold);
        assert!(gold.validity < 0.05, "{order}: gold {}", gold.validity);
        assert_eq!(gold.breadth_last_tenth, Some(1.0));
        assert_eq!(game(Generator::Memorise).validity, 0.0);
    }
}

/// Bad collections name the line at fault.
#[test]
fn collection_errors_name_the_line() {
    let cases = [
        (
            "alphabet = \"ab\"\n[[language]]\nregex = \"(a\"\n",
            2,
            "invalid regular expression",
        ),
        ("[[language]]\nregex = \"a*\"\n", 1, "names its `alphabet`"),
        (
            "alphabet = \"ab\"\n\n[[language]]\nregex = \"c\"\n",
            3,
            "is empty",
        ),
        ("[[language]]\nfamily = \"squares\"\n", 1, "unknown family"),
        (
            "[[language]]\nfamily = \"dyck\"\nregex = \"a\"\n",
            1,
            "exactly one of",
        ),
        (
            "alphabet = \"a\"\n[[language]]\nfinite = [\"b\"]\n",
            2,
            "lacks",
        ),
        ("x = 1\n", 1, "unknown field"),
        ("", 1, "lists no language"),
    ];
    for (text, line, says) in cases {
        let e = Collection::parse(text, Path::new("c.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, crate::Error::Collection { line: l, .. } if l == line),
            "{text:?}: {msg}"
        );
        assert!(msg.contains(says), "{text:?}: {msg}");
    }
}

/// `report::run` writes the table, the JSON (one report per game, read back) and the curves,
/// and the trade-off figure when breadth generators ran.
#[test]
fn the_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse(BCOUNT);
    let base = GameConfig {
        target: 1,
        steps: 300,
        languages: 16,
        ..GameConfig::default()
    };
    let generators = [0.0, 0.5, 1.0].map(Generator::Breadth);
    let orders = [Order::Shortlex, Order::Adversarial];
    let reports =
        super::report::run(&c, &base, &orders, &generators, None, dir.path(), false).unwrap();
    assert_eq!(reports.len(), 6);
    let json: Vec<super::GameReport> =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json.len(), 6);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("| adversarial | breadth:0.5 |"), "{md}");
    for f in [
        "curves-shortlex.png",
        "curves-adversarial.png",
        "tradeoff-shortlex.png",
        "tradeoff-adversarial.png",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    // Breadth 1 draws from [abc]*: broad and hardly ever valid; 0 is KM: valid and narrow.
    let last = |b: f64| {
        json.iter()
            .find(|r| r.config.generator == Generator::Breadth(b))
            .unwrap()
    };
    assert!(last(1.0).validity < 0.1 && last(0.0).validity_last_tenth == 1.0);
    assert!(last(1.0).breadth_last_tenth > last(0.0).breadth_last_tenth);
}
