//! What an xlsx's shared-string table will make calamine hold. calamine reads the whole
//! table when it opens a workbook (every `<si>` as a `String`, after reserving the count
//! the `<sst uniqueCount>` attribute declares), before a single cell: a 7 MiB workbook whose
//! table inflates to 2 GB held 2.4 GB. So the table is measured first, streaming and holding
//! nothing, and its cost charged to the run's memory budget (`Held`) before calamine opens it.

use std::io::{Read, Seek};

use super::{FormatError, Limits};

/// The shared-string table of a workbook, as counted in its XML.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Table {
    /// Bytes of the part once inflated: an upper bound on the text of its strings.
    pub xml_bytes: u64,
    /// `<si>` elements: one `String` each.
    pub strings: u64,
    /// What `<sst uniqueCount="…">` declares: calamine reserves that many `String`s up front.
    pub declared: u64,
}

impl Table {
    /// Bytes calamine holds for it: the text, a `String` and an allocation per string, and the
    /// reserved vector.
    pub fn held(&self) -> u64 {
        const STRING: u64 = std::mem::size_of::<String>() as u64;
        self.xml_bytes.saturating_add(self.strings.saturating_mul(STRING + 16)).saturating_add(self.declared.saturating_mul(STRING))
    }
}

/// The workbook's shared-string table, if it has one (`xl/sharedStrings.xml`, in any case).
pub(crate) fn measure<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, file: &str, limits: &Limits) -> Result<Option<Table>, FormatError> {
    let Some(i) =
        (0..zip.len()).find(|&i| matches!(zip.name_for_index(i), Some(Ok(n)) if n.to_ascii_lowercase().ends_with("sharedstrings.xml")))
    else {
        return Ok(None);
    };
    let part = zip.by_index(i).map_err(|e| FormatError::Malformed {
        file: file.into(),
        line: None,
        message: format!("not a readable xlsx workbook: {e}; check [file] format or ask for a new export"),
    })?;
    // The declared sizes were checked against max_size; a part that inflates past them stops there too.
    let mut part = part.take(limits.max_size.saturating_add(1));
    let mut counter = Counter::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match part.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FormatError::Io { file: file.into(), source: e }),
        };
        counter.feed(&buf[..n]);
    }
    Ok(Some(counter.table))
}

/// Counts `<si>` start tags (`<si>`, `<si …>`, `<x:si>`) across chunk boundaries, and reads
/// `uniqueCount` from the `<sst …>` tag: a small state machine over the bytes, so that
/// nothing of the part is held.
#[derive(Default)]
struct Counter {
    table: Table,
    /// The bytes of the tag name being read, after `<` (a few at most are kept).
    name: Vec<u8>,
    in_name: bool,
    /// Inside the `<sst` tag: the bytes seen since it began (kept up to a bound).
    sst: Option<Vec<u8>>,
}

/// Longest name kept: a prefix and `si` or `sst`.
const NAME_MAX: usize = 32;
/// Bytes of the `<sst …>` tag kept to find `uniqueCount` (namespaces make it long).
const SST_MAX: usize = 4096;

impl Counter {
    fn feed(&mut self, bytes: &[u8]) {
        self.table.xml_bytes += bytes.len() as u64;
        for &b in bytes {
            if let Some(tag) = &mut self.sst {
                if b == b'>' {
                    self.table.declared = unique_count(tag);
                    self.sst = None;
                } else if tag.len() < SST_MAX {
                    tag.push(b);
                }
                continue;
            }
            if b == b'<' {
                self.in_name = true;
                self.name.clear();
            } else if self.in_name {
                if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'-' || b == b'.' {
                    if self.name.len() < NAME_MAX {
                        self.name.push(b);
                    }
                    continue;
                }
                self.in_name = false;
                let local = self.name.rsplit(|&c| c == b':').next().unwrap_or_default();
                if local == b"si" {
                    self.table.strings += 1;
                } else if local == b"sst" && self.table.declared == 0 {
                    self.sst = Some(vec![b]);
                    if b == b'>' {
                        self.sst = None;
                    }
                }
            }
        }
    }
}

/// The number in `uniqueCount="N"` of an `<sst …>` tag's attributes, 0 when absent.
fn unique_count(attrs: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(attrs);
    let Some(at) = text.find("uniqueCount") else { return 0 };
    let rest = text[at + "uniqueCount".len()..].trim_start().trim_start_matches('=').trim_start();
    let digits: String = rest.trim_start_matches(['"', '\'']).chars().take_while(char::is_ascii_digit).collect();
    // A number too long for u64 is as good as infinite: calamine would try to reserve it.
    digits.parse().unwrap_or(if digits.is_empty() { 0 } else { u64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(xml: &str, chunk: usize) -> Table {
        let mut c = Counter::default();
        for part in xml.as_bytes().chunks(chunk) {
            c.feed(part);
        }
        c.table
    }

    #[test]
    fn strings_and_the_declared_count_are_read_across_chunks() {
        let xml = r#"<?xml version="1.0"?><x:sst xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="9" uniqueCount="3"><x:si><x:t>a</x:t></x:si><x:si><x:r><x:t>b</x:t></x:r></x:si><x:si/><sheet/></x:sst>"#;
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(count(xml, chunk), Table { xml_bytes: xml.len() as u64, strings: 3, declared: 3 }, "chunk {chunk}");
        }
        let plain = r#"<sst uniqueCount = '2' count="2"><si><t>x</t></si><si ><t>y</t></si><sig/></sst>"#;
        assert_eq!(count(plain, 5).strings, 2, "<sig> is another element");
        assert_eq!(count(plain, 5).declared, 2);
    }

    #[test]
    fn a_declared_count_past_u64_is_infinite_and_the_cost_saturates() {
        assert_eq!(unique_count(br#" uniqueCount="99999999999999999999999""#), u64::MAX);
        assert_eq!(unique_count(br#" count="5""#), 0);
        assert_eq!(Table { xml_bytes: 10, strings: 0, declared: u64::MAX }.held(), u64::MAX);
        assert_eq!(Table { xml_bytes: 100, strings: 2, declared: 2 }.held(), 100 + 2 * 40 + 2 * 24);
    }
}
