//! How an export is read: its format and the options a mapping's `[source]` table sets. The
//! format stage owns these; `config` reads them from the files and checks them.

use serde::Deserialize;
use serde::de::IntoDeserializer;

use super::Limits;

/// An export's format (`file.format`, or what its name implies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Csv,
    Xlsx,
    Xls,
    Ods,
    Json,
    #[serde(alias = "jsonl")]
    Ndjson,
}

impl Format {
    /// A format's name as written in `file.format` ("jsonl" is ndjson).
    pub fn parse(s: &str) -> Option<Format> {
        // Through serde, so the names and aliases are the ones the config files accept.
        Format::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(s)).ok()
    }

    /// The format a file name implies; `.gz` and `.zip` wrappers are looked through.
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        // An OpenPGP export is read once decrypted (`source::pgp`): its name says what is inside.
        let lower = [".gpg", ".pgp", ".asc"].iter().find_map(|e| lower.strip_suffix(e)).unwrap_or(&lower);
        let base = lower.trim_end_matches(".gz").trim_end_matches(".zip");
        let ext = base.rsplit('.').next()?;
        Format::parse(ext).or(match ext {
            "tsv" | "txt" => Some(Format::Csv),
            _ => None,
        })
    }
}

/// How to read the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// None = auto-detect.
    pub delimiter: Option<u8>,
    /// WHATWG encoding label; None = UTF-8 with BOM sniffing (UTF-8/UTF-16).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    pub sheet: Option<String>,
    /// 1-based.
    pub header_row: u64,
    /// JSON pointer to the records array.
    pub records: Option<String>,
    /// Bounds on what the file may make us read or hold.
    pub limits: Limits,
}
