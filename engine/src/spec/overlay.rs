//! Profiles and `--set`: how the top-level `params:` are overridden before anything reads them.
//!
//! Order (fixed; a change alters every fingerprint that reads params): `params:` from the file,
//! then the selected profile deep-merged over it (maps merge key by key, anything else
//! replaces), then each `--set key.path=value` in command-line order.
//!
//! Both overlays may only *override* keys that `params:` already has. A profile or `--set`
//! that names a missing key is almost always a typo (`trian.batch`), and a typo that silently
//! adds a new, unread param would leave the run using the default without a word; so it is an
//! error that names the key and suggests the closest existing ones.

use serde_json::Value;

use super::error::{SpecError, SpecErrorKind};
use super::keys::{dotted_keys, suggestions};
use super::node::{Node, Val};

/// Deep-merges profile `name` (its node) over `params`, rejecting keys `params` lacks.
pub(crate) fn apply_profile(
    params: &mut Value,
    profile: &Node,
    name: &str,
) -> Result<(), SpecError> {
    merge(params, profile, "", name)
}

fn merge(base: &mut Value, over: &Node, prefix: &str, profile: &str) -> Result<(), SpecError> {
    let Some(entries) = over.as_map() else {
        return Err(SpecError::at(
            over.loc,
            SpecErrorKind::WrongType {
                what: if prefix.is_empty() { profile } else { prefix }.into(),
                context: format!("in profile `{profile}`").into(),
                expected: "a map of params to override",
                found: over.type_name(),
            },
        ));
    };
    // Only for the message, and only when there is one: listing every key at every level of
    // a deep merge would cost the depth times the size of the tree.
    let all_keys = |base: &Value| -> Vec<String> {
        dotted_keys(base)
            .into_iter()
            .map(|k| {
                if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                }
            })
            .collect()
    };
    let Some(base_map) = base.as_object_mut() else {
        return Ok(());
    };
    for e in entries {
        let dotted = if prefix.is_empty() {
            e.key.clone()
        } else {
            format!("{prefix}.{}", e.key)
        };
        match base_map.get_mut(&e.key) {
            Some(slot @ Value::Object(_)) if matches!(e.node.val, Val::Map(_)) => {
                merge(slot, &e.node, &dotted, profile)?;
            }
            Some(slot) => *slot = e.node.to_json(),
            None => {
                let all_keys = all_keys(&Value::Object(base_map.clone()));
                return Err(SpecError::at(
                    e.key_loc,
                    SpecErrorKind::UnknownParam {
                        suggestions: suggestions(&dotted, &all_keys),
                        key: dotted,
                        context: format!(
                            "in profile `{profile}` (profiles may only override keys of `params:`)"
                        )
                        .into(),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// Applies one `--set key.path=value`. The value is read as YAML (`0.1`, `true`, `[1, 2]`,
/// `{a: 1}`, `text`), so a number stays a number.
pub(crate) fn apply_set(params: &mut Value, arg: &str) -> Result<(), SpecError> {
    let bad = |reason: String| {
        SpecError::nowhere(SpecErrorKind::BadSet {
            arg: arg.to_owned(),
            reason,
        })
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected `key.path=value`, like `--set train.batch=128`".to_owned()))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(bad(
            "the key is empty; write a dotted key of `params:`, like `train.batch`".to_owned(),
        ));
    }
    let value = parse_value(raw).map_err(|e| bad(format!("the value is not valid yaml: {e}")))?;
    let all_keys = dotted_keys(params);
    let unknown = || {
        SpecError::nowhere(SpecErrorKind::UnknownParam {
            key: key.to_owned(),
            context: format!("in `--set {arg}` (`--set` may only override keys of `params:`)")
                .into(),
            suggestions: suggestions(key, &all_keys),
        })
    };
    let mut cur = &mut *params;
    for seg in key.split('.') {
        cur = cur
            .as_object_mut()
            .and_then(|m| m.get_mut(seg))
            .ok_or_else(unknown)?;
    }
    *cur = value;
    Ok(())
}

/// A `--set` value as YAML; an empty value is the empty string, not null, because
/// `--set name=` most likely means "no name".
fn parse_value(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(Value::String(String::new()));
    }
    let node = super::node::parse_located(raw).map_err(|e| e.kind.to_string())?;
    Ok(node.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Location;
    use crate::spec::node::parse_located;
    use serde_json::json;

    fn params() -> Value {
        json!({"lr": 0.0002, "train": {"batch": 64, "steps": 100}, "name": "x"})
    }

    #[test]
    fn profile_deep_merges_and_keeps_untouched_keys() {
        let mut p = params();
        let prof = parse_located("{lr: 0.0001, train: {batch: 128}}").unwrap();
        apply_profile(&mut p, &prof, "paper").unwrap();
        assert_eq!(
            p,
            json!({"lr": 0.0001, "train": {"batch": 128, "steps": 100}, "name": "x"})
        );
    }

    #[test]
    fn profile_with_unknown_key_suggests_and_points_at_the_key() {
        let mut p = params();
        let prof = parse_located("train:\n  bach: 1\n").unwrap();
        let e = apply_profile(&mut p, &prof, "paper").unwrap_err();
        assert_eq!(e.location, Some(Location { line: 2, col: 3 }));
        match e.kind {
            SpecErrorKind::UnknownParam {
                key, suggestions, ..
            } => {
                assert_eq!(key, "train.bach");
                assert_eq!(suggestions, vec!["train.batch".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_parses_yaml_values_and_checks_keys() {
        let mut p = params();
        apply_set(&mut p, "train.batch=128").unwrap();
        apply_set(&mut p, "lr=1e-4").unwrap();
        apply_set(&mut p, "name=hello world").unwrap();
        apply_set(&mut p, "train.steps=[1, 2]").unwrap();
        assert_eq!(
            p,
            json!({"lr": 0.0001, "train": {"batch": 128, "steps": [1, 2]}, "name": "hello world"})
        );
        let e = apply_set(&mut p, "trian.batch=1").unwrap_err();
        assert_eq!(
            e.kind.to_string(),
            "unknown param `trian.batch` in `--set trian.batch=1` (`--set` may only override keys of `params:`); did you mean `train.batch`?"
        );
        assert!(matches!(
            apply_set(&mut p, "lr").unwrap_err().kind,
            SpecErrorKind::BadSet { .. }
        ));
        assert!(matches!(
            apply_set(&mut p, "lr=[1").unwrap_err().kind,
            SpecErrorKind::BadSet { .. }
        ));
    }
}
