//! Numbers read as Excel displays them where a cell's number format pads them with zeros:
//! an id column formatted "00000" shows 123 as `00123`, and that is the id the customer
//! knows (and the one a CSV export of the same sheet writes). calamine gives the value 123
//! and, apart, each cell's style; the padded cells are found in a first pass over the
//! sheet's styles (skipped when no style of the workbook pads), kept as runs of rows per
//! column, and applied as cells are read.
//!
//! Only fixed-width zero padding is read ("0000", in the format's first section); any other
//! format (decimals, thousands separators, literal text) shows a number otherwise than an id
//! and is left as the number. xls and ods: calamine gives no number formats for their cells,
//! so a zero-padded number there reads as the number (docs/runs.md says so).

use std::collections::HashMap;

use calamine::DataRef;

/// The width a number format pads whole numbers to with zeros, when that is all it does:
/// "00000" is 5; "0", "General", "0.00", "#,##0", "\"ID\"000" are none.
pub(crate) fn zero_padded_width(format_code: &str) -> Option<u8> {
    let first = format_code.split(';').next().unwrap_or_default().trim();
    let n = first.len();
    ((2..=40).contains(&n) && first.bytes().all(|b| b == b'0')).then_some(n as u8)
}

/// Cells whose format pads, as runs of rows per column (an id column is one run).
#[derive(Debug, Default)]
pub(crate) struct Padded {
    /// Column → runs (first row, last row, width), in row order.
    columns: HashMap<u32, Vec<(u32, u32, u8)>>,
}

impl Padded {
    /// Adds cell (r, c) with its width; cells come in sheet order (rows ascending).
    pub fn add(&mut self, r: u32, c: u32, width: u8) {
        let runs = self.columns.entry(c).or_default();
        match runs.last_mut() {
            Some((_, end, w)) if *w == width && (*end == r || end.checked_add(1) == Some(r)) => *end = r,
            _ => runs.push((r, r, width)),
        }
    }

    fn width(&self, r: u32, c: u32) -> Option<u8> {
        let runs = self.columns.get(&c)?;
        let i = runs.partition_point(|(_, end, _)| *end < r);
        runs.get(i).filter(|(start, _, _)| *start <= r).map(|(_, _, w)| *w)
    }

    /// The text of cell (r, c) as displayed: a whole number in a padded cell gets its zeros.
    pub fn display(&self, r: u32, c: u32, d: &DataRef, text: String) -> String {
        let whole = match d {
            DataRef::Int(i) => *i >= 0,
            DataRef::Float(f) => *f >= 0.0 && f.fract() == 0.0,
            _ => false,
        };
        match self.width(r, c) {
            Some(w) if whole && text.len() < usize::from(w) => format!("{text:0>width$}", width = usize::from(w)),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_zero_padding_is_a_width() {
        assert_eq!(zero_padded_width("00000"), Some(5));
        assert_eq!(zero_padded_width("000000;@"), Some(6), "the first section, for numbers");
        for other in ["0", "General", "0.00", "#,##0", "\"ID\"000", "00.0", "@", "0%", "0.00E+00"] {
            assert_eq!(zero_padded_width(other), None, "{other}");
        }
    }

    #[test]
    fn padded_cells_show_their_zeros_and_others_do_not() {
        let mut p = Padded::default();
        for r in 1..=4 {
            p.add(r, 0, 5);
        }
        p.add(6, 0, 8);
        p.add(6, 2, 5);
        assert_eq!(p.columns[&0], vec![(1, 4, 5), (6, 6, 8)], "one run per width");
        assert_eq!(p.display(2, 0, &DataRef::Float(123.0), "123".into()), "00123");
        assert_eq!(p.display(2, 0, &DataRef::Int(7), "7".into()), "00007");
        assert_eq!(p.display(6, 0, &DataRef::Float(123.0), "123".into()), "00000123");
        assert_eq!(p.display(5, 0, &DataRef::Float(123.0), "123".into()), "123", "row 5 is not padded");
        assert_eq!(p.display(2, 1, &DataRef::Float(123.0), "123".into()), "123", "another column");
        assert_eq!(p.display(2, 0, &DataRef::Float(1.5), "1.5".into()), "1.5", "not a whole number");
        assert_eq!(p.display(2, 0, &DataRef::Float(1234567.0), "1234567".into()), "1234567", "wider than the format");
        assert_eq!(p.display(2, 0, &DataRef::String("12".into()), "12".into()), "12", "text is as written");
    }
}
