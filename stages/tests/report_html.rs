//! `report.html`, made from the report fixtures (`tests/fixtures/report/`, see
//! `report_snapshot`): it says what `report.md` says, escapes the inputs' text, inlines every
//! figure and links nothing outside itself; and, in a real browser (headless Chromium through
//! `scripts/html_check.sh`), it logs no console error and shows the verdict without scrolling.
//! Without Chromium the browser test prints "skipped: chromium not found" and passes, except
//! in CI (`CI=true`), where it fails; `scripts/setup.sh` installs it. With `HTML_CHECK_OUT=DIR`
//! the browser test leaves the page and its screenshot in `DIR/report` and `DIR/check` (by
//! default `DIR` is `target/tmp/html-check`).

use std::path::{Path, PathBuf};
use std::process::Command;

use stages::report::{generate, write_files, Files};

use crate::report_snapshot::{fixtures, full_params, report, text};

fn fixture_report() -> Files {
    report(&full_params())
}

/// The report of the fixtures plus one run whose name and params hold `<&>"'`.
fn hostile_report() -> (tempfile::TempDir, Files) {
    const NAME: &str = "ring<b>&\"'-1";
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .expect("cp runs");
        assert!(status.success());
    };
    for sub in ["runs", "evals", "spectral", "dag.mmd", "run_records.json"] {
        copy(&fixtures().join(sub), dir.path());
    }
    let runs = dir.path().join("runs");
    std::fs::rename(runs.join("ring-sn-2"), runs.join(NAME)).expect("rename run");
    let evals = dir.path().join("evals");
    std::fs::rename(evals.join("ring-sn-2"), evals.join(NAME)).expect("rename eval");
    let spectral = dir.path().join("spectral");
    std::fs::rename(spectral.join("ring-sn-2"), spectral.join(NAME)).expect("rename spectral");
    let p = runs.join(NAME).join("params.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("read params")).expect("json");
    v["note"] = "<script>alert('x')</script> & \"q\"".into();
    std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write params");
    let files = generate(&full_params(), dir.path(), &|_, _, _| {}).expect("report builds");
    (dir, files)
}

#[test]
fn inputs_text_is_escaped() {
    let (_dir, files) = hostile_report();
    let html = text(&files, "report.html");
    assert!(
        !html.contains("<b>&"),
        "a run name reached the page unescaped"
    );
    assert!(
        !html.contains("<script>alert"),
        "a param reached the page unescaped"
    );
    assert!(
        html.contains("ring&lt;b&gt;&amp;&quot;&#39;-1"),
        "the run name, escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
    // Every script in the page is the report's own: one sorter.
    assert_eq!(html.matches("<script>").count(), 1);
}

#[test]
fn nothing_is_fetched_from_outside() {
    let html = text(&fixture_report(), "report.html");
    for attr in ["src=", "href="] {
        for quote in ["\"", "'", ""] {
            for scheme in ["http:", "https:", "//"] {
                let bad = format!("{attr}{quote}{scheme}");
                assert!(!html.contains(&bad), "`{bad}` in report.html");
            }
        }
    }
    assert!(!html.contains("url("), "CSS must not load anything");
    assert!(!html.contains("@import"));
}

#[test]
fn the_verdict_comes_before_the_tables_and_the_figures() {
    let html = text(&fixture_report(), "report.html");
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in report.html"))
    };
    let verdict = at("<section id=\"verdict\"");
    assert!(verdict < at("<table class=\"sortable\""));
    assert!(verdict < at("<section id=\"comparison\""));
    assert!(at("<section id=\"deltas\"") < at("<section id=\"figures\""));
    assert!(at("<section id=\"figures\"") < at("<section id=\"runs\""));
    assert!(html.contains("Healthy-baseline gate: PASS."));
}

/// Every figure report.md links (`](figures/...)`) is in report.html, inlined: an `<svg>`
/// element when the figure has an SVG, else the PNG as a data URI. None is linked.
#[test]
fn every_figure_of_the_markdown_is_inlined() {
    let files = fixture_report();
    let md = text(&files, "report.md");
    let html = text(&files, "report.html");
    let linked: Vec<&str> = md
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|path| path.starts_with("figures/"))
        .collect();
    assert!(
        linked.len() > 10,
        "the fixture report links figures: {linked:?}"
    );
    let mut svgs = 0;
    for path in &linked {
        let svg = Path::new(path).with_extension("svg");
        match files.get(&svg) {
            Some(bytes) => {
                svgs += 1;
                let body = String::from_utf8(bytes.clone()).expect("svg text");
                let body = body.trim().strip_prefix("<svg").expect("an svg element");
                assert!(html.contains(body), "`{path}`'s SVG is not inlined");
            }
            None => {
                use base64::Engine as _;
                let png = &files[Path::new(path)];
                let uri = format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(png)
                );
                assert!(html.contains(&uri), "`{path}` is not inlined as a data URI");
            }
        }
        assert!(!html.contains(&format!("\"{path}\"")), "`{path}` is linked");
    }
    assert!(svgs > 0 && svgs < linked.len(), "both kinds are tested");
    assert_eq!(html.matches("<svg").count(), svgs);
}

#[test]
fn the_page_is_deterministic() {
    let a = text(&fixture_report(), "report.html");
    let b = text(&fixture_report(), "report.html");
    assert!(a == b, "two reports of the same inputs differ");
}

/// Headless Chromium: no console errors, the verdict on the first screen, a screenshot.
#[test]
fn a_browser_shows_the_verdict_first_without_errors() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {b}"))
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !chromium {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium not found, and CI=true: install it (scripts/setup.sh)"
        );
        println!("skipped: chromium not found");
        return;
    }
    // The page and its screenshot stay after the run, to look at: in HTML_CHECK_OUT=DIR, else
    // in cargo's scratch space for tests (`target/tmp/html-check`).
    let root = std::env::var_os("HTML_CHECK_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-check"));
    let report = root.join("report");
    write_files(&report, &fixture_report()).expect("write the report");
    let check = root.join("check");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/html_check.sh");
    let out = Command::new(&script)
        .arg(report.join("report.html"))
        .arg(&check)
        .output()
        .expect("scripts/html_check.sh runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "html_check failed:\n{log}");
    assert!(log.contains("verdict-visible=yes"), "{log}");
    let png = std::fs::read(check.join("report.png")).expect("a screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    println!("screenshot: {}", check.join("report.png").display());
}
