//! `report.md`: the report's [`Page`] written as GitHub Markdown, in the page's order (the
//! verdict first). What the report says is decided in [`super::page`]; this module only spells
//! it, so `report.html` ([`super::html`]) and this file always agree.
//!
//! A value's `|` is escaped everywhere (it would end a table cell); the report's own wording
//! is written as it is.

use super::page::{Block, Inline, Page, Span};

/// A value in Markdown: `|` would end a table cell.
fn esc(s: &str) -> String {
    s.replace('|', "\\|")
}

/// One span as Markdown.
pub fn inline(span: &[Inline]) -> String {
    let mut out = String::new();
    for i in span {
        match i {
            Inline::Lit(s) => out.push_str(s),
            Inline::Val(s) => out.push_str(&esc(s)),
            Inline::Code(s) => {
                out.push('`');
                out.push_str(&esc(s));
                out.push('`');
            }
            Inline::Strong(s) => out.push_str(&format!("**{}**", esc(s))),
            Inline::Em(s) => out.push_str(&format!("*{}*", esc(s))),
            Inline::Link { text, href } => out.push_str(&format!("[{}]({href})", esc(text))),
            Inline::Image { alt, src } => out.push_str(&format!("![{}]({src})", inline(alt))),
        }
    }
    out
}

fn row(out: &mut String, cells: &[String]) {
    out.push_str(&format!("| {} |\n", cells.join(" | ")));
}

fn block(out: &mut String, b: &Block) {
    match b {
        Block::Para(span) => {
            out.push_str(&inline(span));
            out.push_str("\n\n");
        }
        Block::List(items) => {
            for item in items {
                out.push_str(&format!("- {}\n", inline(item)));
            }
            out.push('\n');
        }
        Block::Table(t) => {
            row(out, &t.heads);
            out.push_str(&format!("|{}\n", "---|".repeat(t.heads.len())));
            for r in &t.rows {
                let cells: Vec<String> = r.iter().map(|c: &Span| inline(c)).collect();
                row(out, &cells);
            }
            out.push('\n');
        }
        Block::Subheading(s) => out.push_str(&format!("### {s}\n\n")),
    }
}

/// The whole Markdown document.
pub fn render(page: &Page) -> String {
    let mut out = format!("# {}\n\n{}\n\n", page.title, inline(&page.intro));
    for sec in &page.sections {
        out.push_str(&format!("## {}\n\n", sec.title));
        for b in &sec.blocks {
            block(&mut out, b);
        }
    }
    out
}
