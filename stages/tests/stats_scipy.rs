//! `stages::stats` against scipy: every case of `tests/fixtures/stats_scipy.json`, written by
//! `scripts/fixtures/stats_scipy.py`, to 1e-9 relative.

use std::path::PathBuf;

use serde_json::Value;
use stages::stats::{fisher_exact, mann_whitney_u, mean_ci, t_quantile, Alternative};

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats_scipy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

/// `got` within 1e-9 relative of `want` (absolute 1e-300 for an exact zero).
fn close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1e-300);
    assert!(
        (got - want).abs() <= tol,
        "{what}: {got} vs scipy {want} (off by {:e} relative)",
        ((got - want) / want).abs()
    );
}

fn alternative(v: &Value) -> Alternative {
    match v.as_str().unwrap() {
        "greater" => Alternative::Greater,
        "less" => Alternative::Less,
        other => panic!("unknown alternative {other}"),
    }
}

#[test]
fn t_quantiles_match_scipy() {
    let doc = fixture();
    let cases = doc["t_quantiles"].as_array().unwrap();
    assert!(cases.len() >= 50);
    for c in cases {
        let (p, df) = (f(&c["p"]), f(&c["df"]));
        close(t_quantile(p, df), f(&c["t"]), &format!("t.ppf({p}, {df})"));
    }
}

#[test]
fn mean_and_t_interval_match_scipy() {
    for c in fixture()["mean_ci"].as_array().unwrap() {
        let values = floats(&c["values"]);
        let got = mean_ci(&values).unwrap();
        let what = format!("n = {}", values.len());
        close(got.mean, f(&c["mean"]), &format!("{what} mean"));
        close(got.sd.unwrap(), f(&c["sd"]), &format!("{what} sd"));
        let (low, high) = got.ci95.unwrap();
        close(low, f(&c["low"]), &format!("{what} low"));
        close(high, f(&c["high"]), &format!("{what} high"));
    }
}

fn mann_whitney_cases(key: &str, exact: bool) {
    let doc = fixture();
    let cases = doc[key].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let (x, y) = (floats(&c["x"]), floats(&c["y"]));
        let got = mann_whitney_u(&x, &y, alternative(&c["alternative"])).unwrap();
        let what = format!(
            "{key} {}x{} {}",
            x.len(),
            y.len(),
            c["alternative"].as_str().unwrap()
        );
        assert_eq!(got.exact, exact, "{what}");
        assert_eq!(got.u, f(&c["u"]), "{what} U");
        close(got.p, f(&c["p"]), &format!("{what} p"));
    }
}

#[test]
fn mann_whitney_exact_p_matches_scipy_without_ties() {
    mann_whitney_cases("mann_whitney_exact", true);
}

#[test]
fn mann_whitney_tie_corrected_normal_p_matches_scipy_with_ties() {
    mann_whitney_cases("mann_whitney_ties", false);
}

#[test]
fn fisher_exact_matches_scipy_on_every_side() {
    for c in fixture()["fisher"].as_array().unwrap() {
        let t: Vec<Vec<u64>> = serde_json::from_value(c["table"].clone()).unwrap();
        let table = [[t[0][0], t[0][1]], [t[1][0], t[1][1]]];
        for (key, alt) in [
            ("greater", Alternative::Greater),
            ("less", Alternative::Less),
            ("two-sided", Alternative::TwoSided),
        ] {
            close(
                fisher_exact(table, alt),
                f(&c[key]),
                &format!("fisher {table:?} {key}"),
            );
        }
    }
}
