//! `docs/reliability.md`, printed from the bad-input catalogue of [`crate::reliability`].

use crate::reliability::run_all;

/// Prints `docs/reliability.md`.
#[test]
#[ignore = "prints docs/reliability.md"]
fn reliability_table() {
    let rows = run_all();
    println!("# Reliability: bad input gets a typed error\n");
    println!(
        "Every bad input below was tried by `crates/oxgen-train/tests/it/reliability.rs` (the test \
         `every_catalogued_bad_input_is_a_typed_error`, run in CI). Each gives a typed \
         `oxgen_train::Error`, never a panic, and leaves earlier files as they were. The table \
         is that test's output:\n\n`cargo test --release --workspace --test it -- --ignored \
         reliability_table --nocapture`\n"
    );
    println!("| # | bad input | error (variant: text) |\n|---|---|---|");
    for (i, (input, text)) in rows.iter().enumerate() {
        let text = text
            .replace('|', "\\|")
            .replace('\n', " ")
            .replace(std::env::temp_dir().to_str().unwrap(), "$TMP");
        // Each case's temporary folder ($TMP/.tmpXXXXXX) as `$DIR`, so the table is stable.
        let text = text
            .split("$TMP/.tmp")
            .enumerate()
            .map(|(i, part)| match i {
                0 => part.to_string(),
                // tempfile's names are `.tmp` and six characters.
                _ => format!("$DIR{}", part.get(6..).unwrap_or("")),
            })
            .collect::<String>();
        println!("| {} | {input} | {text} |", i + 1);
    }
}
