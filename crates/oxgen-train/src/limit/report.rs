//! Several games on one collection and target (each generator against each adversary), and
//! what they write: `report.json`, `report.md`, `curves.png` (validity and breadth against
//! time, one figure per adversary) and, when breadth generators ran, `tradeoff.png`.

use std::path::Path;

use super::collection::Collection;
use super::game::{GameConfig, GameReport, play};
use super::learner::Generator;
use super::text::Order;
use crate::{Error, Result};

/// Plays every generator against every order (`base` gives the rest of the settings; `lines`
/// is the trained model of the model generators) and writes the report into `out`.
pub fn run(
    collection: &Collection,
    base: &GameConfig,
    orders: &[Order],
    generators: &[Generator],
    mut lines: Option<&mut super::model::ModelLines>,
    out: &Path,
    progress: bool,
) -> Result<Vec<GameReport>> {
    let n = base.languages;
    let languages = collection.take(n)?;
    if base.target >= languages.len() {
        return Err(Error::Collection {
            path: collection.path.clone(),
            line: 0,
            reason: format!(
                "target {} is out of range: the collection has {} languages{}",
                base.target,
                languages.len(),
                if collection.is_infinite() {
                    format!(" within the first {n} considered (--languages)")
                } else {
                    String::new()
                }
            ),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("output folder", out, e))?;
    let bar = crate::run::progress(progress, 0, orders.len() * generators.len() * base.steps);
    let mut reports = Vec::new();
    for &order in orders {
        for &generator in generators {
            let config = GameConfig {
                order,
                generator,
                ..base.clone()
            };
            bar.set_message(format!("{generator} against {order}"));
            reports.push(play(&languages, &config, lines.as_deref_mut(), &bar)?);
        }
    }
    bar.finish_and_clear();
    write(collection, &reports, out)?;
    Ok(reports)
}

fn fmt_opt(v: Option<usize>) -> String {
    v.map_or("never".into(), |x| x.to_string())
}

/// The table of `reports`, one row per game.
pub fn table(reports: &[GameReport]) -> String {
    let mut s = String::from(
        "| adversary | generator | steps | valid | valid, last tenth | outside the target | valid from step | hypothesis changes (last at) | final hypothesis | breadth, last tenth |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        s += &format!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {} | {} ({}) | {} | {} |\n",
            r.config.order,
            r.config.generator,
            r.played,
            r.validity,
            r.validity_last_tenth,
            r.outside,
            fmt_opt(r.valid_from),
            r.changes,
            fmt_opt(r.last_change),
            r.hypothesis.as_deref().unwrap_or("none"),
            r.breadth_last_tenth
                .map_or("–".into(), |b| format!("{b:.3}"))
        );
    }
    s
}

fn write(collection: &Collection, reports: &[GameReport], out: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(reports)
        .map_err(|e| Error::Config(format!("report.json: {e}")))?;
    crate::run::write_atomic(&out.join("report.json"), &json, "report")?;
    let target = reports.first().map_or("", |r| r.target.as_str());
    let md = format!(
        "# Generation in the limit: {} (target `{target}`)\n\n{}",
        collection.path.display(),
        table(reports)
    );
    crate::run::write_atomic(&out.join("report.md"), md.as_bytes(), "report")?;
    let mut orders: Vec<Order> = reports.iter().map(|r| r.config.order).collect();
    orders.dedup();
    for order in orders {
        let games: Vec<&GameReport> = reports.iter().filter(|r| r.config.order == order).collect();
        let curve =
            |f: &dyn Fn(&super::game::Point) -> Option<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
                games
                    .iter()
                    .map(|r| {
                        let pts = r
                            .points
                            .iter()
                            .filter_map(|p| f(p).map(|y| (p.step as f64, y)))
                            .collect();
                        (r.config.generator.to_string(), pts)
                    })
                    .collect()
            };
        crate::plot::labelled_panels_log_x(
            &out.join(format!("curves-{order}.png")),
            &format!("target `{target}`, {order} adversary"),
            "step",
            &[
                (
                    "validity (share valid since the last point)",
                    curve(&|p| Some(p.validity)),
                ),
                ("breadth", curve(&|p| p.breadth)),
            ],
        )?;
    }
    // The trade-off: validity against breadth over the last tenth, one point per breadth
    // parameter, per adversary.
    for order in reports.iter().map(|r| r.config.order) {
        let mut pts: Vec<(f64, f64)> = reports
            .iter()
            .filter(|r| r.config.order == order)
            .filter(|r| matches!(r.config.generator, Generator::Breadth(_)))
            .filter_map(|r| r.breadth_last_tenth.map(|b| (b, r.validity_last_tenth)))
            .collect();
        if pts.len() < 2 {
            continue;
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let km = reports
            .iter()
            .find(|r| r.config.order == order && r.config.generator == Generator::Km)
            .map(|r| ("KM's validity", r.validity_last_tenth));
        crate::plot::curve_with_reference(
            &out.join(format!("tradeoff-{order}.png")),
            &format!("validity against breadth, {order} adversary (last tenth of the game)"),
            ("breadth", "validity"),
            ("breadth:B, B = 0 … 1", &pts),
            km,
        )?;
    }
    Ok(())
}

/// Writes `n` strings of the target (language `target` of `collection`, among its first
/// `languages`), drawn without replacement from its first 4n in shortlex order, one per line,
/// to `path`: training data for a model generator. Returns how many were written (fewer when
/// the target has fewer strings).
pub fn write_target_text(
    collection: &Collection,
    target: usize,
    n: usize,
    seed: u64,
    languages: usize,
    path: &Path,
) -> Result<usize> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let langs = collection.take(languages.max(target + 1))?;
    let t = langs.get(target).ok_or_else(|| Error::Collection {
        path: collection.path.clone(),
        line: 0,
        reason: format!("target {target} is out of range: {} languages", langs.len()),
    })?;
    let mut pool = t.strings(64, 4 * n);
    pool.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    pool.truncate(n);
    let text: String = pool.iter().map(|s| format!("{s}\n")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("output folder", dir, e))?;
    }
    crate::run::write_atomic(path, text.as_bytes(), "report")?;
    Ok(pool.len())
}
