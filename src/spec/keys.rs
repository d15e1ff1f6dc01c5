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

/// Up to three existing keys close to `key` (edit distance at most a third of its length,
/// and at least 1), closest first. Cheap: params trees have tens of keys, and a candidate
/// whose length alone puts it too far is skipped before the quadratic distance, as is a key
/// too long for anyone to have meant another (a hostile file's).
pub(crate) fn suggestions(key: &str, candidates: &[String]) -> Vec<String> {
    let len = key.chars().count();
    if len > 256 {
        return Vec::new();
    }
    let limit = (len / 3).max(1);
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .filter(|c| c.len() <= 4 * (len + limit) && c.chars().count().abs_diff(len) <= limit)
        .map(|c| (strsim::levenshtein(key, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort_by_key(|(d, _)| *d);
    scored.into_iter().take(3).map(|(_, c)| c.clone()).collect()
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
        assert_eq!(suggestions("rl", &keys), Vec::<String>::new());
        assert_eq!(suggestions("sed", &keys), ["seed"]);
    }
}
