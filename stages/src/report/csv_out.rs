//! The report's CSV files: a header and rows of typed [`Cell`]s, written with the `csv` crate.
//!
//! The format is the one the files had when the tables were polars frames (report versions
//! 1–3), byte for byte, because users and the published `reports/` read them:
//! - `,` between fields, `\n` after every record, the header first;
//! - null is an empty field; an empty string is `""`, so the two stay apart;
//! - a field with a `,`, `"`, `\n` or `\r` is quoted, with `"` doubled inside;
//! - floats in the shortest form that reads back to the same bits, with `.0` on integral
//!   values and an exponent for very large or small ones (`65.0`, `0.6000000000000001`,
//!   `1e+16`, `1.2e-7`), `NaN`, `inf`, `-inf`: the `zmij` formatter, the one polars' CSV
//!   writer used;
//! - integers in decimal, booleans as `true` / `false`.

use std::borrow::Cow;

use super::ReportError;

/// One field of a CSV record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(u64),
    Float(f64),
    Bool(bool),
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(s: &'a str) -> Self {
        Cell::Text(s)
    }
}

impl From<u64> for Cell<'_> {
    fn from(x: u64) -> Self {
        Cell::Int(x)
    }
}

impl From<u32> for Cell<'_> {
    fn from(x: u32) -> Self {
        Cell::Int(x.into())
    }
}

impl From<f64> for Cell<'_> {
    fn from(x: f64) -> Self {
        Cell::Float(x)
    }
}

impl From<bool> for Cell<'_> {
    fn from(x: bool) -> Self {
        Cell::Bool(x)
    }
}

impl<'a, T: Into<Cell<'a>>> From<Option<T>> for Cell<'a> {
    fn from(x: Option<T>) -> Self {
        x.map_or(Cell::Null, Into::into)
    }
}

/// A table as CSV: `header`, then one record per row (each as long as the header, or an
/// error).
pub fn to_csv<'a, S: AsRef<str>>(
    header: &[S],
    rows: impl IntoIterator<Item = Vec<Cell<'a>>>,
) -> Result<Vec<u8>, ReportError> {
    let err = |e: csv::Error| ReportError::Table(format!("writing CSV: {e}"));
    // The fields come quoted as they must be ([`text_field`]): the crate's own `Necessary`
    // style writes an empty string as an empty field, which is null here.
    let mut w = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Never)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let header = header.iter().map(|h| text_field(h.as_ref()).into_owned());
    w.write_record(header).map_err(err)?;
    let mut float = zmij::Buffer::new();
    for row in rows {
        for cell in row {
            match cell {
                Cell::Null => w.write_field(""),
                Cell::Text(s) => w.write_field(text_field(s).as_bytes()),
                Cell::Int(x) => w.write_field(x.to_string()),
                Cell::Float(x) => w.write_field(float.format(x)),
                Cell::Bool(x) => w.write_field(if x { "true" } else { "false" }),
            }
            .map_err(err)?;
        }
        w.write_record(None::<&[u8]>).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| ReportError::Table(format!("writing CSV: {}", e.error())))
}

/// A text field: quoted when it holds a `,`, `"`, `\n` or `\r` (a `"` inside doubled), and an
/// empty string as `""`, apart from null.
fn text_field(s: &str) -> Cow<'_, str> {
    if s.is_empty() {
        "\"\"".into()
    } else if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(rows: Vec<Vec<Cell>>) -> String {
        String::from_utf8(to_csv(&["a", "b", "c"], rows).unwrap()).unwrap()
    }

    #[test]
    fn header_then_records() {
        assert_eq!(csv(vec![]), "a,b,c\n");
        assert_eq!(
            csv(vec![
                vec![Cell::Int(1), Cell::Bool(true), Cell::Bool(false)],
                vec![Cell::Null, Cell::Null, Cell::Null],
            ]),
            "a,b,c\n1,true,false\n,,\n"
        );
    }

    #[test]
    fn text_is_quoted_only_where_needed_and_empty_text_is_not_null() {
        let rows = vec![
            vec!["plain · ü".into(), "a,b".into(), "say \"hi\"".into()],
            vec!["line\nbreak".into(), "cr\r".into(), " padded ".into()],
            vec![Cell::Text(""), Cell::Null, Cell::Text("")],
            vec![Cell::Null, Cell::Text(""), Cell::Text("x")],
        ];
        assert_eq!(
            csv(rows),
            "a,b,c\nplain · ü,\"a,b\",\"say \"\"hi\"\"\"\n\"line\nbreak\",\"cr\r\", padded \n\
             \"\",,\"\"\n,\"\",x\n"
        );
    }

    #[test]
    fn floats_as_polars_wrote_them() {
        let cases: &[(f64, &str)] = &[
            (65.0, "65.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.6000000000000001, "0.6000000000000001"),
            (-25.0, "-25.0"),
            (2500.0, "2500.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1e-5, "0.00001"),
            (1.2e-7, "1.2e-7"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (x, want) in cases {
            let got = csv(vec![vec![Cell::Float(*x), Cell::Null, Cell::Null]]);
            assert_eq!(got, format!("a,b,c\n{want},,\n"), "{x:e}");
        }
    }

    #[test]
    fn options_are_null_when_none() {
        let row: Vec<Cell> = vec![Some(2.5).into(), None::<f64>.into(), Some(7u64).into()];
        assert_eq!(csv(vec![row]), "a,b,c\n2.5,,7\n");
    }
}
