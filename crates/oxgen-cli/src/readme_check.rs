//! The README's commands parse: every `oxgen …` line (and `cargo run --release -p oxgen-cli --
//! …`) in its fenced blocks is read with the CLI's own parser, so a renamed flag, subcommand or
//! value fails here before it fails a reader (issue 23). What the commands print is checked
//! where they run: the tour and the quiet start in `tests/it`.

use clap::Parser;

use crate::args::Cli;

/// The command lines of `markdown`'s fenced blocks that run oxgen, as argument vectors (the
/// program name first; a trailing `# comment` and shell quotes removed).
fn commands(markdown: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let line = line.split(" #").next().unwrap_or("").trim();
        let rest = if let Some(r) = line.strip_prefix("cargo run --release -p oxgen-cli -- ") {
            r
        } else if let Some(r) = line.strip_prefix("oxgen ") {
            r
        } else {
            continue;
        };
        let mut argv = vec!["oxgen".to_string()];
        argv.extend(split(rest));
        out.push(argv);
    }
    out
}

/// Splits on spaces outside double quotes, dropping the quotes.
fn split(s: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn every_readme_command_parses() {
    let readme = include_str!("../../../README.md");
    let commands = commands(readme);
    // The two commands of the contract, the tour and the "More commands" list.
    assert!(commands.len() >= 40, "{} commands found", commands.len());
    let mut failures = Vec::new();
    for argv in &commands {
        if let Err(e) = Cli::try_parse_from(argv) {
            failures.push(format!("{}\n{e}", argv.join(" ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_wrong_flag_fails() {
    let argv = &commands("```\noxgen train diffusion --no-such-flag --out x\n```")[0];
    assert!(Cli::try_parse_from(argv).is_err());
    assert_eq!(split(r#"a "b c" d"#), ["a", "b c", "d"]);
}
