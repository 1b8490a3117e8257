//! Generation in the limit (Kleinberg and Mullainathan, 2024): an adversary enumerates an
//! unknown target language from a countable collection, and after each string the generator
//! outputs a new one; it generates in the limit if, from some step on, every output is an
//! unseen member of the target. docs/generation-in-the-limit.md has the definitions and the
//! measurements.
//!
//! - [`language`]: one language (regular expression, finite set, built-in family), membership
//!   and shortlex enumeration;
//! - [`collection`]: a collection file (TOML), with line numbers in its errors;
//! - [`text`]: the adversaries' orders;
//! - [`learner`]: consistency, inclusion by membership queries, critical languages, and the
//!   generators' hypotheses;
//! - [`game`]: the game and its measurements; [`report`]: report.json, report.md, the curves;
//! - [`model`]: a trained character model as a generator, constrained or not.

pub mod collection;
pub mod game;
pub mod language;
pub mod learner;
pub mod model;
pub mod report;
pub mod text;

pub use collection::Collection;
pub use game::{GameConfig, GameReport, play};
pub use learner::Generator;
pub use text::Order;

#[cfg(test)]
mod tests;
