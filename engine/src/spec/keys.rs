//! Dotted keys (`train.batch`) into the `params:` tree, and "did you mean" for mistyped ones.
//!
//! Profiles, `--set`, a stage's tracked `params:` and `${...}` references all address params
//! the same way, so they share this one reading of a dotted key: each segment is a map key.
//! (`${...}` also indexes lists, see [`super::interp`]; a tracked key or an override never
//! points inside a list, because a list is one value to track or replace.)

use serde_json::Value;

/// Text of dotted keys [`dotted_keys`] lists at most: they are candidates for a "did you mean",
/// and each repeats its parents' names, so a long key above many children in a hostile file
/// would otherwise multiply into gigabytes.
const MAX_LISTED_BYTES: usize = 1 << 20;

/// Every dotted key of a params tree, maps and leaves alike, in file order, as long as they
/// fit in [`MAX_LISTED_BYTES`] (a key that does not is left out with its subtree).
pub(crate) fn dotted_keys(params: &Value) -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>, room: &mut usize) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                let len = prefix.len() + 1 + k.len();
                if len > *room {
                    continue; // with its subtree; shorter siblings may still fit
                }
                *room -= len;
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(key.clone());
                walk(child, &key, out, room);
            }
        }
    }
    let mut out = Vec::new();
    walk(params, "", &mut out, &mut MAX_LISTED_BYTES.clone());
    out
}

/// The value at a dotted key of params.
pub(crate) fn get_dotted<'v>(params: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.')
        .try_fold(params, |cur, seg| cur.as_object()?.get(seg))
}

/// Up to three existing names close to `key` (edit distance at most a third of its length,
/// and at least 1), closest first: the one "did you mean" of the project, for param keys,
/// `--set`, `${...}` names, the keys of a stage and targets on the command line.
///
/// The distance is optimal string alignment (Damerau-Levenshtein without edits of a moved
/// substring): a swap of two adjacent letters (`scael` for `scale`), the commonest typo, counts
/// as one edit, where plain Levenshtein counts two and would miss short names. Cheap: a
/// candidate whose length alone puts it too far is skipped before the quadratic distance, as
/// is a key too long for anyone to have meant another (a hostile file's).
pub fn suggestions<S: AsRef<str>>(key: &str, candidates: &[S]) -> Vec<String> {
    let len = key.chars().count();
    if len > 256 {
        return Vec::new();
    }
    let limit = (len / 3).max(1);
    let mut scored: Vec<(usize, &str)> = candidates
        .iter()
        .map(AsRef::as_ref)
        .filter(|c| c.len() <= 4 * (len + limit) && c.chars().count().abs_diff(len) <= limit)
        .map(|c| (strsim::osa_distance(key, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort_by_key(|(d, _)| *d);
    scored.dedup_by_key(|(_, c)| *c);
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// Names listed at most in full by [`listed`].
pub const LISTED_NAMES: usize = 12;

/// `names` as a message lists them: in backticks, all of them when there are at most
/// [`LISTED_NAMES`], else the first ones and how many more, with `more` saying where to see
/// them all (a pipeline with a large fan-out has thousands of stage names, and a one-line
/// error of many kilobytes hides the message).
pub fn listed<S: AsRef<str>>(names: &[S], more: &str) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(LISTED_NAMES)
        .map(|n| format!("`{}`", n.as_ref()))
        .collect();
    let mut text = shown.join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(
            " and {} more ({more})",
            names.len() - LISTED_NAMES
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_listed_dotted_in_file_order() {
        let p = json!({"lr": 1, "train": {"batch": 2, "opt": {"b1": 0.5}}});
        assert_eq!(
            dotted_keys(&p),
            ["lr", "train", "train.batch", "train.opt", "train.opt.b1"]
        );
        assert_eq!(get_dotted(&p, "train.opt.b1"), Some(&json!(0.5)));
        assert_eq!(get_dotted(&p, "train.nope"), None);
        assert_eq!(get_dotted(&p, "lr.x"), None);
    }

    #[test]
    fn suggestions_are_close_and_closest_first() {
        let keys: Vec<String> = ["lr", "train.batch", "train.batches", "seed"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            suggestions("train.bach", &keys),
            ["train.batch", "train.batches"]
        );
        // Levenshtein counts the swap `rl` -> `lr` as two edits; here it is one.
        assert_eq!(suggestions("rl", &keys), ["lr"]);
        assert_eq!(suggestions("xyz", &keys), Vec::<String>::new());
        assert_eq!(suggestions("sed", &keys), ["seed"]);
        // A swap of two adjacent letters is one edit.
        let keys = ["scale", "offset"];
        assert_eq!(suggestions("scael", &keys), ["scale"]);
        assert_eq!(suggestions("dep", &["deps", "outs"]), ["deps"]);
    }

    #[test]
    fn long_lists_are_shortened() {
        let few = ["a", "b"];
        assert_eq!(listed(&few, "x"), "`a`, `b`");
        let many: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        let text = listed(&many, "`repro dag` shows all");
        assert!(text.starts_with("`s0`, `s1`"), "{text}");
        assert!(
            text.ends_with(" and 88 more (`repro dag` shows all)"),
            "{text}"
        );
    }
}
