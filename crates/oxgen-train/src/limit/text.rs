//! The adversary: an enumeration of the target language (a *text*: every string of the target
//! appears at some finite step), in shortlex order, in a seeded random order, or in an order
//! chosen to keep wrong languages consistent for as long as it can.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::language::Language;

/// How the adversary orders the target's strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Shortest first, then by character codes.
    Shortlex,
    /// Blocks of the shortlex order of doubling size (1, 2, 4, …), each shuffled by the seed:
    /// random, and still a text.
    Random,
    /// Greedy delay: among the first 2t + 8 strings (at most 512 past the oldest unpresented
    /// one), the unpresented one that the most
    /// still-consistent other languages contain, so that as few as possible are ruled out; a
    /// string waits at most until step 2i + 8 (i its shortlex index), so every string comes.
    Adversarial,
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shortlex" => Ok(Order::Shortlex),
            "random" => Ok(Order::Random),
            "adversarial" => Ok(Order::Adversarial),
            o => Err(format!(
                "unknown adversary `{o}` (shortlex, random, adversarial)"
            )),
        }
    }
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Order::Shortlex => "shortlex",
            Order::Random => "random",
            Order::Adversarial => "adversarial",
        })
    }
}

/// The target's strings in shortlex order, fetched as far as needed.
pub struct Pool {
    strings: Vec<String>,
    max_len: usize,
    exhausted: bool,
}

impl Pool {
    /// An empty pool of `target`'s strings, to be read up to `max_len` characters.
    pub fn new(max_len: usize) -> Pool {
        Pool {
            strings: Vec::new(),
            max_len,
            exhausted: false,
        }
    }

    /// The `i`-th string (shortlex) of `target`, if the target has that many within the
    /// length bound.
    pub fn get(&mut self, target: &Language, i: usize) -> Option<&str> {
        if i >= self.strings.len() && !self.exhausted {
            let want = (2 * i + 64).max(2 * self.strings.len());
            self.strings = target.strings(self.max_len, want);
            self.exhausted = self.strings.len() < want;
        }
        self.strings.get(i).map(String::as_str)
    }
}

/// An adversary presenting `target`.
pub struct Adversary {
    order: Order,
    pool: Pool,
    rng: StdRng,
    /// Random: the current block's indices, shuffled, and where the next block starts.
    block: Vec<usize>,
    block_start: usize,
    /// Adversarial: which shortlex indices were presented.
    shown: Vec<bool>,
    oldest: usize,
}

impl Adversary {
    /// An adversary of this order.
    pub fn new(order: Order, max_len: usize, seed: u64) -> Adversary {
        Adversary {
            order,
            pool: Pool::new(max_len),
            rng: StdRng::seed_from_u64(seed),
            block: Vec::new(),
            block_start: 0,
            shown: Vec::new(),
            oldest: 0,
        }
    }

    /// The string for step `t` (0-based), or `None` when the target has no more strings within
    /// the length bound. `alive` lists the languages (other than the target) still
    /// consistent with what was shown, which the adversarial order keeps alive.
    pub fn next(&mut self, target: &Language, t: usize, alive: &[&Language]) -> Option<String> {
        match self.order {
            Order::Shortlex => self.pool.get(target, t).map(str::to_owned),
            Order::Random => {
                if self.block.is_empty() {
                    let size = self.block_start + 1;
                    let end = self.block_start + size;
                    let have = (self.block_start..end)
                        .take_while(|&i| self.pool.get(target, i).is_some())
                        .count();
                    if have == 0 {
                        return None;
                    }
                    self.block = (self.block_start..self.block_start + have).collect();
                    self.block.shuffle(&mut self.rng);
                    self.block_start += have;
                }
                let i = self.block.pop()?;
                self.pool.get(target, i).map(str::to_owned)
            }
            Order::Adversarial => {
                while self.oldest < self.shown.len() && self.shown[self.oldest] {
                    self.oldest += 1;
                }
                self.pool.get(target, self.oldest)?;
                // The fairness deadline: string i comes by step 2i + 8.
                let pick = if t >= 2 * self.oldest + 8 {
                    self.oldest
                } else {
                    let window = (2 * t + 8).min(self.oldest + 512);
                    let mut best = (self.oldest, usize::MAX);
                    for i in self.oldest..window {
                        if self.shown.get(i).copied().unwrap_or(false) {
                            continue;
                        }
                        let Some(s) = self.pool.get(target, i) else {
                            break;
                        };
                        let ruled_out = alive.iter().filter(|l| !l.contains(s)).count();
                        if ruled_out < best.1 {
                            best = (i, ruled_out);
                        }
                        if ruled_out == 0 {
                            break;
                        }
                    }
                    best.0
                };
                if self.shown.len() <= pick {
                    self.shown.resize(pick + 1, false);
                }
                self.shown[pick] = true;
                self.pool.get(target, pick).map(str::to_owned)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::language::Kind;

    fn evens() -> Language {
        Language {
            name: "evens".into(),
            kind: Kind::Progression { start: 0, step: 2 },
        }
    }

    /// Every order is a text: the first 200 steps show each of the first 64 strings (by
    /// step 2i + 8 at the latest for the adversarial order), and none twice.
    #[test]
    fn every_order_enumerates_the_target() {
        let target = evens();
        let mults_of_4 = Language {
            name: "4".into(),
            kind: Kind::Progression { start: 0, step: 4 },
        };
        for order in [Order::Shortlex, Order::Random, Order::Adversarial] {
            let mut adv = Adversary::new(order, 12, 7);
            let shown: Vec<String> = (0..200)
                .map(|t| adv.next(&target, t, &[&mults_of_4]).unwrap())
                .collect();
            let mut unique = shown.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), shown.len(), "{order}: a string twice");
            for i in 0..64u64 {
                assert!(
                    shown.contains(&(2 * i).to_string()),
                    "{order}: {} missing",
                    2 * i
                );
            }
            if order == Order::Adversarial {
                // Multiples of 4 first: 2 (not one) is held back until its deadline.
                assert_eq!(shown[..3], ["0", "4", "8"], "{shown:?}");
                let at = shown.iter().position(|s| s == "2").unwrap();
                assert!(at <= 2 + 8, "2 shown at step {at}");
            }
            if order == Order::Shortlex {
                assert_eq!(shown[..4], ["0", "2", "4", "6"]);
            }
        }
    }
}
