//! One language of a collection: membership, and its strings in shortlex order (by length,
//! then by character code). Regular expressions are compiled by `regex-automata` into a dense
//! DFA; this file only reads that DFA over the collection's alphabet. The built-in families
//! enumerate themselves.

use std::collections::HashMap;

use regex_automata::dfa::{Automaton, dense};
use regex_automata::util::{primitives::StateID, start};
use regex_automata::{Anchored, MatchKind};

/// A regular expression read over a finite alphabet: the DFA's states reachable from its
/// anchored start, each symbol's successor, and whether a state accepts.
#[derive(Clone, Debug)]
pub struct RegexLanguage {
    /// The expression as written.
    pub pattern: String,
    alphabet: Vec<char>,
    /// `next[s][k]`: the state after symbol `alphabet[k]` (`None`: dead).
    next: Vec<Vec<Option<usize>>>,
    accept: Vec<bool>,
    /// Fewest symbols from each state to an accepting one (`usize::MAX`: none).
    to_accept: Vec<usize>,
}

/// States a regular expression may compile to before it is refused.
const MAX_STATES: usize = 100_000;

impl RegexLanguage {
    /// Compiles `pattern` (the whole string must match) over `alphabet`.
    pub fn new(pattern: &str, alphabet: &[char]) -> Result<Self, String> {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .dfa_size_limit(Some(64 << 20))
                    .determinize_size_limit(Some(64 << 20)),
            )
            .build(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("invalid regular expression `{pattern}`: {e}"))?;
        let cfg = start::Config::new().anchored(Anchored::Yes);
        let s0 = dfa
            .start_state(&cfg)
            .map_err(|e| format!("regular expression `{pattern}`: {e}"))?;
        let mut ids: HashMap<StateID, usize> = HashMap::from([(s0, 0)]);
        let mut order = vec![s0];
        let mut next = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let s = order[i];
            let mut row = Vec::with_capacity(alphabet.len());
            for &c in alphabet {
                let mut buf = [0u8; 4];
                let mut t = s;
                for &b in c.encode_utf8(&mut buf).as_bytes() {
                    t = dfa.next_state(t, b);
                    if dfa.is_dead_state(t) {
                        break;
                    }
                }
                if dfa.is_dead_state(t) || dfa.is_quit_state(t) {
                    row.push(None);
                    continue;
                }
                let n = ids.len();
                let id = *ids.entry(t).or_insert_with(|| {
                    order.push(t);
                    n
                });
                row.push(Some(id));
            }
            next.push(row);
            i += 1;
            if order.len() > MAX_STATES {
                return Err(format!(
                    "regular expression `{pattern}` needs over {MAX_STATES} states"
                ));
            }
        }
        let accept: Vec<bool> = order
            .iter()
            .map(|&s| dfa.is_match_state(dfa.next_eoi_state(s)))
            .collect();
        // Backward breadth-first search from the accepting states.
        let mut to_accept: Vec<usize> = accept
            .iter()
            .map(|&a| if a { 0 } else { usize::MAX })
            .collect();
        let mut changed = true;
        while changed {
            changed = false;
            for s in 0..next.len() {
                let best = next[s]
                    .iter()
                    .flatten()
                    .map(|&t| to_accept[t].saturating_add(1))
                    .min()
                    .unwrap_or(usize::MAX);
                if best < to_accept[s] {
                    to_accept[s] = best;
                    changed = true;
                }
            }
        }
        Ok(RegexLanguage {
            pattern: pattern.into(),
            alphabet: alphabet.to_vec(),
            next,
            accept,
            to_accept,
        })
    }

    fn contains(&self, s: &str) -> bool {
        let mut state = 0;
        for c in s.chars() {
            let Ok(k) = self.alphabet.binary_search(&c) else {
                return false;
            };
            match self.next[state][k] {
                Some(t) => state = t,
                None => return false,
            }
        }
        self.accept[state]
    }

    /// Whether the language has no string at all.
    pub fn is_empty(&self) -> bool {
        self.to_accept[0] == usize::MAX
    }

    /// Whether the string that led from the start (state 0) to `state` is a member.
    pub fn accepts(&self, state: usize) -> bool {
        self.accept[state]
    }

    /// The state after `c` from `state`, if some member still begins this way.
    pub fn step(&self, state: usize, c: char) -> Option<usize> {
        let k = self.alphabet.binary_search(&c).ok()?;
        self.next[state][k].filter(|&t| self.to_accept[t] != usize::MAX)
    }

    /// How many strings of at most `n` symbols `self` has, and how many of those `other` has
    /// too (counted on the product of the two DFAs, as f64: exact below 2⁵³).
    pub fn count_within(&self, other: &RegexLanguage, n: usize) -> (f64, f64) {
        const DEAD: usize = usize::MAX;
        let mut layer: HashMap<(usize, usize), f64> = HashMap::from([((0, 0), 1.0)]);
        let (mut all, mut both) = (0.0, 0.0);
        for len in 0..=n {
            for (&(a, b), &c) in &layer {
                if self.accept[a] {
                    all += c;
                    if b != DEAD && other.accept[b] {
                        both += c;
                    }
                }
            }
            if len == n {
                break;
            }
            let mut next: HashMap<(usize, usize), f64> = HashMap::new();
            for (&(a, b), &c) in &layer {
                for k in 0..self.alphabet.len() {
                    let Some(na) = self.next[a][k] else { continue };
                    if self.to_accept[na] > n - len - 1 {
                        continue;
                    }
                    let nb = if b == DEAD {
                        DEAD
                    } else {
                        other.next[b].get(k).copied().flatten().unwrap_or(DEAD)
                    };
                    *next.entry((na, nb)).or_insert(0.0) += c;
                }
            }
            layer = next;
        }
        (all, both)
    }

    /// Whether every string of `self` is in `other` (both read over the same alphabet): a
    /// breadth-first search of the pairs of states the two DFAs reach on one input, for a pair
    /// where `self` accepts and `other` does not.
    pub fn is_subset_of(&self, other: &RegexLanguage) -> bool {
        const DEAD: usize = usize::MAX;
        let accepts_b = |s: usize| s != DEAD && other.accept[s];
        let mut seen = std::collections::HashSet::from([(0usize, 0usize)]);
        let mut queue = vec![(0usize, 0usize)];
        while let Some((a, b)) = queue.pop() {
            if self.accept[a] && !accepts_b(b) {
                return false;
            }
            for k in 0..self.alphabet.len() {
                let Some(na) = self.next[a][k] else { continue };
                if self.to_accept[na] == usize::MAX {
                    continue;
                }
                let nb = if b == DEAD {
                    DEAD
                } else {
                    other.next[b].get(k).copied().flatten().unwrap_or(DEAD)
                };
                if seen.insert((na, nb)) {
                    queue.push((na, nb));
                }
            }
        }
        true
    }

    /// Strings of exactly `len` symbols, in order, until `out` holds `limit`.
    fn of_length(&self, len: usize, limit: usize, out: &mut Vec<String>) {
        let mut prefix = String::new();
        self.walk(0, len, limit, &mut prefix, out);
    }

    fn walk(
        &self,
        s: usize,
        left: usize,
        limit: usize,
        prefix: &mut String,
        out: &mut Vec<String>,
    ) {
        if out.len() >= limit || self.to_accept[s] > left {
            return;
        }
        if left == 0 {
            if self.accept[s] {
                out.push(prefix.clone());
            }
            return;
        }
        for (k, &c) in self.alphabet.iter().enumerate() {
            if let Some(t) = self.next[s][k] {
                prefix.push(c);
                self.walk(t, left - 1, limit, prefix, out);
                prefix.pop();
            }
        }
    }
}

/// What a language is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A regular expression over the collection's alphabet.
    Regex(RegexLanguage),
    /// A finite set, kept in shortlex order.
    Finite(Vec<String>),
    /// The numbers start, start + step, start + 2·step, … in decimal.
    Progression {
        /// The first number.
        start: u64,
        /// The difference (at least 1).
        step: u64,
    },
    /// aⁿbⁿ for n ≥ 1.
    AnBn,
    /// Non-empty balanced strings of `(` and `)` nested at most `depth` deep.
    Dyck {
        /// The deepest nesting.
        depth: usize,
    },
    /// The embedded arithmetic language: `a+b=s` with a and b zero-padded to one width and s
    /// their sum written least-significant digit first, padded to that width + 1 (`37+58=590`);
    /// every width, or only `digits`.
    Arithmetic {
        /// The one operand width, if fixed (then the language is finite).
        digits: Option<u32>,
    },
}

/// A named language.
#[derive(Clone, Debug)]
pub struct Language {
    /// Its name in the collection file (or generated).
    pub name: String,
    /// What it is.
    pub kind: Kind,
}

/// Shortlex order: shorter first, then by character codes.
pub fn shortlex(a: &str, b: &str) -> std::cmp::Ordering {
    a.chars()
        .count()
        .cmp(&b.chars().count())
        .then_with(|| a.cmp(b))
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Nesting depth of a balanced parenthesis string (`None` if unbalanced or other characters).
fn dyck_depth(s: &str) -> Option<usize> {
    let (mut d, mut max) = (0usize, 0usize);
    for c in s.chars() {
        match c {
            '(' => {
                d += 1;
                max = max.max(d);
            }
            ')' => d = d.checked_sub(1)?,
            _ => return None,
        }
    }
    (d == 0).then_some(max)
}

fn arithmetic_line(a: u64, b: u64, width: u32) -> String {
    let w = width as usize;
    let sum: String = format!("{:0w$}", a + b, w = w + 1).chars().rev().collect();
    format!("{a:0w$}+{b:0w$}={sum}")
}

impl Language {
    /// Whether `s` is in the language.
    pub fn contains(&self, s: &str) -> bool {
        match &self.kind {
            Kind::Regex(r) => r.contains(s),
            Kind::Finite(set) => set.binary_search_by(|x| shortlex(x, s)).is_ok(),
            Kind::Progression { start, step } => {
                decimal(s).is_some_and(|n| n >= *start && (n - start) % step == 0)
            }
            Kind::AnBn => {
                let n = s.len() / 2;
                n >= 1
                    && s.len() == 2 * n
                    && s[..n].bytes().all(|b| b == b'a')
                    && s[n..].bytes().all(|b| b == b'b')
            }
            Kind::Dyck { depth } => !s.is_empty() && dyck_depth(s).is_some_and(|d| d <= *depth),
            Kind::Arithmetic { digits } => {
                let Some((a, rest)) = s.split_once('+') else {
                    return false;
                };
                let Some((b, sum)) = rest.split_once('=') else {
                    return false;
                };
                let w = a.len();
                let digits_only = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
                if w == 0
                    || w > 18
                    || b.len() != w
                    || sum.len() != w + 1
                    || digits.is_some_and(|d| d as usize != w)
                    || !(digits_only(a) && digits_only(b) && digits_only(sum))
                {
                    return false;
                }
                let (a, b) = (a.parse::<u64>().unwrap_or(0), b.parse::<u64>().unwrap_or(0));
                s == arithmetic_line(a, b, w as u32)
            }
        }
    }

    /// Whether `self ⊆ other`, where it can be decided exactly: two regular expressions (over
    /// the collection's one alphabet), a finite set in anything, two progressions, two Dyck
    /// languages, aⁿbⁿ in itself. `None` otherwise (the game then tests inclusion on strings).
    pub fn is_subset_of(&self, other: &Language) -> Option<bool> {
        match (&self.kind, &other.kind) {
            (Kind::Regex(a), Kind::Regex(b)) => Some(a.is_subset_of(b)),
            (Kind::Finite(set), _) => Some(set.iter().all(|s| other.contains(s))),
            (
                Kind::Progression { start, step },
                Kind::Progression {
                    start: s2,
                    step: d2,
                },
            ) => Some(start >= s2 && (start - s2) % d2 == 0 && step % d2 == 0),
            (Kind::Dyck { depth }, Kind::Dyck { depth: d2 }) => Some(depth <= d2),
            (Kind::AnBn, Kind::AnBn) => Some(true),
            _ => None,
        }
    }

    /// Its strings of at most `max_len` characters in shortlex order, at most `limit` of them.
    pub fn strings(&self, max_len: usize, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Regex(r) => {
                for len in 0..=max_len {
                    r.of_length(len, limit, &mut out);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Kind::Finite(set) => out.extend(
                set.iter()
                    .filter(|s| s.chars().count() <= max_len)
                    .take(limit)
                    .cloned(),
            ),
            Kind::Progression { start, step } => {
                let bound = 10u128.pow(max_len.min(38) as u32);
                let mut n = *start as u128;
                while out.len() < limit && n < bound && n <= u64::MAX as u128 {
                    out.push(n.to_string());
                    n += *step as u128;
                }
            }
            Kind::AnBn => {
                for n in 1..=max_len / 2 {
                    if out.len() >= limit {
                        break;
                    }
                    out.push("a".repeat(n) + &"b".repeat(n));
                }
            }
            Kind::Dyck { depth } => {
                for len in (2..=max_len).step_by(2) {
                    dyck_of_length(len, *depth, limit, &mut String::new(), 0, &mut out);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Kind::Arithmetic { digits } => {
                let widths: Vec<u32> = match digits {
                    Some(d) => vec![*d],
                    None => (1..=18).collect(),
                };
                'w: for w in widths {
                    if 3 * w as usize + 3 > max_len {
                        break;
                    }
                    let n = 10u64.pow(w);
                    for a in 0..n {
                        for b in 0..n {
                            if out.len() >= limit {
                                break 'w;
                            }
                            out.push(arithmetic_line(a, b, w));
                        }
                    }
                }
            }
        }
        out.truncate(limit);
        out
    }

    /// Whether the language has no string (only a regular expression or a finite set can be
    /// empty).
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            Kind::Regex(r) => r.is_empty(),
            Kind::Finite(s) => s.is_empty(),
            Kind::Arithmetic { digits: Some(d) } => *d == 0,
            _ => false,
        }
    }

    /// Whether the language is known to be finite (a finite set, or one arithmetic width);
    /// regular expressions report `false` (the game only needs an infinite target).
    pub fn is_finite(&self) -> bool {
        matches!(
            self.kind,
            Kind::Finite(_) | Kind::Arithmetic { digits: Some(_) }
        )
    }

    /// Characters the language's strings use (for built-in families and finite sets).
    pub fn characters(&self) -> Vec<char> {
        let mut c: Vec<char> = match &self.kind {
            Kind::Regex(_) => Vec::new(),
            Kind::Finite(set) => set.iter().flat_map(|s| s.chars()).collect(),
            Kind::Progression { .. } => ('0'..='9').collect(),
            Kind::AnBn => vec!['a', 'b'],
            Kind::Dyck { .. } => vec!['(', ')'],
            Kind::Arithmetic { .. } => ('0'..='9').chain(['+', '=']).collect(),
        };
        c.sort_unstable();
        c.dedup();
        c
    }
}

/// Balanced strings of exactly `len` characters, nested at most `depth`, in order.
fn dyck_of_length(
    len: usize,
    depth: usize,
    limit: usize,
    prefix: &mut String,
    open: usize,
    out: &mut Vec<String>,
) {
    if out.len() >= limit {
        return;
    }
    let left = len - prefix.len();
    if left == 0 {
        if open == 0 {
            out.push(prefix.clone());
        }
        return;
    }
    // '(' sorts before ')'.
    if open < depth && open + 1 < left {
        prefix.push('(');
        dyck_of_length(len, depth, limit, prefix, open + 1, out);
        prefix.pop();
    }
    if open > 0 {
        prefix.push(')');
        dyck_of_length(len, depth, limit, prefix, open - 1, out);
        prefix.pop();
    }
}
