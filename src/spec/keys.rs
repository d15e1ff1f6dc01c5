//! Dotted keys (`train.batch`) into the `params:` tree, and "did you mean" for mistyped ones.
//!
//! Profiles, `--set`, a stage's tracked `params:` and `${...}` references all address params
//! the same way, so they share this one reading of a dotted key: each segment is a map key.
//! (`${...}` also indexes lists, see [`super::interp`]; a tracked key or an override never
//! points inside a list, because a list is one value to track or replace.)

use serde_json::Value;

/// Every dotted key of a params tree, maps and leaves alike, in file order.
pub(crate) fn dotted_keys(params: &Value) -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(key.clone());
                walk(child, &key, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(params, "", &mut out);
    out
}

/// The value at a dotted key of params.
pub(crate) fn get_dotted<'v>(params: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.')
        .try_fold(params, |cur, seg| cur.as_object()?.get(seg))
}

/// Up to three existing keys close to `key` (edit distance at most a third of its length,
/// and at least 1), closest first. Cheap: params trees have tens of keys.
pub(crate) fn suggestions(key: &str, candidates: &[String]) -> Vec<String> {
    let limit = (key.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
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
