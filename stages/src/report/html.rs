//! `report.html`: the report as one self-contained web page, for reading in a browser without
//! GitHub, without a network and without the files beside it.
//!
//! - **Same content as `report.md`.** Both are written from one [`Page`] ([`super::page`]);
//!   this module never reads the Markdown. Only the order of the sections differs: the verdict
//!   first (in a box, visible without scrolling), then the tables, then the figures, then the
//!   per-run and per-stage details ([`ORDER`]), which are long.
//! - **Self-contained, nothing external.** Figures that have an SVG (spectra, curves: the text
//!   [`super::figures`] already drew) are inlined as `<svg>` elements, so they stay sharp and
//!   their labels are text; the sample and real-image grids exist only as PNG and are inlined
//!   as `data:image/png;base64,` URIs. The CSS and the script that sorts the tables are inline
//!   too. No URL in the page has a scheme: the only links are to the CSV/JSON/Mermaid files
//!   beside it (relative), and `#` anchors. The page is as large as its figures (a quick-profile
//!   report inlines about 9 MB of SVG spectra).
//! - **Sortable tables**: a click on a header sorts the rows of a table whose rows stand alone
//!   (not the verdict table, where a setting's label is on its first row only). Cells are
//!   compared by their leading number when they have one (`0.53 ± 0.1`, `7/8`), else as text;
//!   `–` (no value) and empty cells go last in both directions. A small vanilla script, no
//!   library: the page works from `file://` and offline.
//! - **Deterministic**: the bytes depend only on the page and the figures' bytes (no time, no
//!   host, no random ids), so equal inputs give an equal `report.html`, as the content-hashed
//!   outputs need.
//! - **One escaping function**, [`esc`], for every text and attribute value: `& < > " '`. The
//!   inlined SVG is plotters' output, which escapes its own text.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use super::page::{Block, Inline, Page, Section, Span};
use super::Files;

/// The order of the sections in the page, by [`Section::id`]; a section not named here
/// follows, in the Markdown's order.
pub const ORDER: &[&str] = &[
    "verdict",
    "comparison",
    "deltas",
    "classifier",
    "missing",
    "paper",
    "figures",
    "runs",
    "pipeline",
    "stages",
];

/// Text or an attribute value as HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A span's plain text (for `alt` and `aria-label`).
fn plain(span: &[Inline]) -> String {
    span.iter()
        .map(|i| match i {
            Inline::Lit(s)
            | Inline::Val(s)
            | Inline::Code(s)
            | Inline::Strong(s)
            | Inline::Em(s) => s.clone(),
            Inline::Link { text, .. } => text.clone(),
            Inline::Image { alt, .. } => plain(alt),
        })
        .collect()
}

/// A figure of the report, inlined: its SVG when it has one, else its PNG as a data URI.
fn embed(alt: &[Inline], src: &str, files: &Files) -> String {
    let label = esc(&plain(alt));
    let svg = files
        .get(&Path::new(src).with_extension("svg"))
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().strip_prefix("<svg"));
    if let Some(rest) = svg {
        return format!("<svg role=\"img\" aria-label=\"{label}\"{rest}");
    }
    match files.get(Path::new(src)) {
        Some(png) if src.ends_with(".png") => format!(
            "<img alt=\"{label}\" src=\"data:image/png;base64,{}\">",
            base64::engine::general_purpose::STANDARD.encode(png)
        ),
        _ => format!("<span class=\"absent\">[figure not in the report: {label}]</span>"),
    }
}

fn inline(out: &mut String, span: &[Inline], files: &Files) {
    for i in span {
        match i {
            Inline::Lit(s) | Inline::Val(s) => out.push_str(&esc(s)),
            Inline::Code(s) => {
                let _ = write!(out, "<code>{}</code>", esc(s));
            }
            Inline::Strong(s) => {
                let _ = write!(out, "<strong>{}</strong>", esc(s));
            }
            Inline::Em(s) => {
                let _ = write!(out, "<em>{}</em>", esc(s));
            }
            Inline::Link { text, href } => {
                let _ = write!(out, "<a href=\"{}\">{}</a>", esc(href), esc(text));
            }
            Inline::Image { alt, src } => out.push_str(&embed(alt, src, files)),
        }
    }
}

fn block(out: &mut String, b: &Block, files: &Files) {
    match b {
        // A paragraph that is one figure is a <figure> with its caption.
        Block::Para(span) => match span.as_slice() {
            [Inline::Image { alt, src }] => {
                let _ = write!(out, "<figure>{}<figcaption>", embed(alt, src, files));
                inline(out, alt, files);
                out.push_str("</figcaption></figure>\n");
            }
            _ => {
                out.push_str("<p>");
                inline(out, span, files);
                out.push_str("</p>\n");
            }
        },
        Block::List(items) => {
            out.push_str("<ul>\n");
            for item in items {
                out.push_str("<li>");
                inline(out, item, files);
                out.push_str("</li>\n");
            }
            out.push_str("</ul>\n");
        }
        Block::Table(t) => {
            let class = if t.sortable {
                " class=\"sortable\""
            } else {
                ""
            };
            let _ = write!(out, "<div class=\"scroll\"><table{class}>\n<thead><tr>");
            for h in &t.heads {
                let _ = write!(out, "<th>{}</th>", esc(h));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for row in &t.rows {
                out.push_str("<tr>");
                for c in row {
                    out.push_str("<td>");
                    inline(out, c as &Span, files);
                    out.push_str("</td>");
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table></div>\n");
        }
        Block::Subheading(s) => {
            let _ = writeln!(out, "<h3>{}</h3>", esc(s));
        }
    }
}

/// The sections in [`ORDER`], then any other, each once.
fn ordered(page: &Page) -> Vec<&Section> {
    let rank = |s: &Section| {
        ORDER
            .iter()
            .position(|id| *id == s.id)
            .unwrap_or(ORDER.len())
    };
    let mut secs: Vec<&Section> = page.sections.iter().collect();
    secs.sort_by_key(|s| rank(s)); // stable: unknown sections keep the Markdown's order
    secs
}

const CSS: &str = r#"
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --head: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", "Liberation Sans", Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.5em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 20px 0 8px; }
p.intro { color: var(--muted); margin: 0 0 6px; font-size: 0.9em; }
nav { font-size: 0.85em; margin-bottom: 12px; }
nav a { margin-right: 10px; }
a { color: var(--accent); }
code { font: 0.88em/1.4 ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace;
  background: #eff1f3; padding: 1px 4px; border-radius: 4px; }
section.verdict { border: 2px solid #8c959f; border-radius: 8px; background: #f6f8fa;
  padding: 4px 20px 12px; }
section.verdict h2 { margin-top: 12px; border: 0; }
section.verdict ul { padding-left: 20px; }
section.verdict li { margin: 4px 0; }
.scroll { overflow-x: auto; margin: 8px 0 12px; }
table { border-collapse: collapse; font-size: 0.88em; font-variant-numeric: tabular-nums; background: #fff; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
td:first-child { white-space: normal; min-width: 16em; }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \2195"; color: #a0a8b0; }
table.sortable th[aria-sort="ascending"]::after { content: " \2191"; color: var(--fg); }
table.sortable th[aria-sort="descending"]::after { content: " \2193"; color: var(--fg); }
figure { display: inline-block; vertical-align: top; width: calc(50% - 12px); margin: 8px 8px 16px 0; }
figure svg, figure img, td svg, td img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 0.85em; margin-top: 4px; }
.absent { color: #cf222e; }
"#;

/// Sorts a `table.sortable` by the clicked column (see the module docs).
const SCRIPT: &str = r#"
(function () {
  "use strict";
  function key(cell) {
    var t = cell.textContent.trim();
    if (t === "" || t === "\u2013") return null;
    var m = /^[+\-\u2212]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?/i.exec(t);
    return m ? { n: parseFloat(m[0].replace("\u2212", "-")), t: t } : { n: null, t: t };
  }
  function compare(a, b) {
    if (a.n !== null && b.n !== null) return a.n - b.n;
    if (a.n !== null) return -1;
    if (b.n !== null) return 1;
    return a.t < b.t ? -1 : a.t > b.t ? 1 : 0;
  }
  function sort(table, col, th) {
    var down = th.getAttribute("aria-sort") === "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (r, i) {
      return { r: r, i: i, k: key(r.cells[col] || r.cells[r.cells.length - 1]) };
    });
    rows.sort(function (a, b) {
      if (a.k === null || b.k === null) {
        return (a.k === null) - (b.k === null) || a.i - b.i;
      }
      return (down ? -compare(a.k, b.k) : compare(a.k, b.k)) || a.i - b.i;
    });
    rows.forEach(function (x) { body.appendChild(x.r); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.title = "Sort by this column";
      th.addEventListener("click", function () { sort(table, col, th); });
    });
  });
})();
"#;

/// The whole page. `files` are the report's other files, where the figures are found.
pub fn render(page: &Page, files: &Files) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n\
         <p class=\"intro\">",
        esc(&page.title),
        esc(&page.title)
    );
    inline(&mut out, &page.intro, files);
    out.push_str("</p>\n<nav>");
    let secs = ordered(page);
    for s in &secs {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", s.id, esc(&s.title));
    }
    out.push_str("</nav>\n");
    for s in secs {
        let class = if s.id == "verdict" {
            " class=\"verdict\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<section id=\"{}\"{class}>\n<h2>{}</h2>",
            s.id,
            esc(&s.title)
        );
        for b in &s.blocks {
            block(&mut out, b, files);
        }
        out.push_str("</section>\n");
    }
    let _ = write!(
        out,
        "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::page::{code, lit, val, Table};

    const HOSTILE: &str = "<a href='x'>&\"";

    fn page() -> Page {
        let figures = Section {
            id: "figures",
            title: "Figures".into(),
            blocks: vec![Block::Para(vec![Inline::Image {
                alt: vec![val(HOSTILE)],
                src: "figures/x.png".into(),
            }])],
        };
        let mut sections = vec![Section {
            id: "verdict",
            title: "Verdict <1>".into(),
            blocks: vec![
                Block::Para(vec![lit("a < b "), code(HOSTILE)]),
                Block::List(vec![vec![Inline::Strong(HOSTILE.into()), val(HOSTILE)]]),
            ],
        }];
        sections.push(Section {
            id: "runs",
            title: "Runs".into(),
            blocks: vec![Block::Table(Table {
                heads: vec![HOSTILE.into()],
                rows: vec![vec![vec![val(HOSTILE)]]],
                sortable: true,
            })],
        });
        sections.push(figures);
        Page {
            title: HOSTILE.into(),
            intro: vec![val(HOSTILE)],
            sections,
        }
    }

    #[test]
    fn esc_escapes_the_five_characters() {
        assert_eq!(esc("<&>\"'x"), "&lt;&amp;&gt;&quot;&#39;x");
    }

    #[test]
    fn every_text_is_escaped_and_sections_follow_the_order() {
        let mut files = Files::new();
        files.insert("figures/x.png".into(), b"\x89PNG".to_vec());
        let html = render(&page(), &files);
        assert!(!html.contains(HOSTILE), "{html}");
        assert!(!html.contains("href='x'"));
        assert!(html.contains("&lt;a href=&#39;x&#39;&gt;&amp;&quot;"));
        assert!(html.contains("<h2>Verdict &lt;1&gt;</h2>"));
        assert!(html.contains("src=\"data:image/png;base64,iVBORw==\""));
        // Figures before runs, whatever the page's order.
        assert!(html.find("id=\"figures\"") < html.find("id=\"runs\""));
    }

    #[test]
    fn a_figure_with_an_svg_is_inlined_as_svg() {
        let mut files = Files::new();
        files.insert("figures/x.png".into(), b"\x89PNG".to_vec());
        files.insert(
            "figures/x.svg".into(),
            b"<svg width=\"2\"><rect/></svg>\n".to_vec(),
        );
        let html = render(&page(), &files);
        assert!(html.contains("<svg role=\"img\" aria-label=\"&lt;a href="));
        assert!(html.contains(" width=\"2\"><rect/></svg><figcaption>"));
        assert!(!html.contains("data:image/png"));
    }
}
