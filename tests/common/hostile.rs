//! Hostile pipeline files, shared by the spec's unit tests (`engine/src/spec/tests.rs`) and the CLI
//! tests (`tests/cli/spec_errors.rs`), so both judge the same input.

/// A "billion laughs": `levels` anchors under `vars:`, each a list of ten aliases of the one
/// before (levels 6, 7 and 10 are the ones issue 19 measured).
pub fn laughs(levels: usize) -> String {
    let mut text =
        String::from("vars:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..levels {
        let p = i - 1;
        text.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    text.push_str("stages: {}\n");
    text
}
