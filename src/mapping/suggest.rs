//! `mapping suggest`: a draft mapping for a sample export. Columns are matched to platform
//! fields by name in English, French, German, Spanish, Italian, Portuguese and Dutch, then
//! checked against sample values; every guess is marked `# unsure` so the engineer knows
//! what to look at. The draft always passes `config::parse_mapping`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::format::{self, Format, FormatError, SourceOptions};

/// Names per platform field or common attribute, in the seven languages.
const SYNONYMS: &[(&str, &[&str])] = &[
    (
        "employee_id",
        &[
            "employee id",
            "employee number",
            "employee no",
            "emp id",
            "emp no",
            "personnel number",
            "personnel no",
            "staff id",
            "staff number",
            "worker id",
            "person id",
            "id",
            "employee",
            "badge number",
            "matricule",
            "numero de matricule",
            "n matricule",
            "id salarie",
            "numero salarie",
            "identifiant salarie",
            "personalnummer",
            "mitarbeiternummer",
            "mitarbeiter id",
            "personalnr",
            "numero de empleado",
            "id empleado",
            "numero empleado",
            "legajo",
            "matricola",
            "numero dipendente",
            "codice dipendente",
            "matricula",
            "numero do funcionario",
            "numero funcionario",
            "personeelsnummer",
            "medewerkernummer",
            "werknemernummer",
        ],
    ),
    (
        "email",
        &[
            "email",
            "e mail",
            "emails 0 value",
            "email address",
            "work email",
            "business email",
            "mail",
            "courriel",
            "adresse email",
            "adresse e mail",
            "adresse mail",
            "mail professionnel",
            "e mail adresse",
            "emailadresse",
            "dienstliche e mail",
            "correo",
            "correo electronico",
            "email corporativo",
            "posta elettronica",
            "indirizzo email",
            "email aziendale",
            "endereco de email",
            "endereco de e mail",
            "e mail corporativo",
            "e mailadres",
            "emailadres",
        ],
    ),
    (
        "first_name",
        &[
            "name first",
            "name given",
            "names first",
            "first name",
            "firstname",
            "given name",
            "forename",
            "prenom",
            "vorname",
            "nombre",
            "nome",
            "primeiro nome",
            "voornaam",
        ],
    ),
    (
        "last_name",
        &[
            "name last",
            "name family",
            "names last",
            "last name",
            "lastname",
            "surname",
            "family name",
            "nom",
            "nom de famille",
            "nachname",
            "familienname",
            "apellido",
            "apellidos",
            "cognome",
            "sobrenome",
            "apelido",
            "achternaam",
        ],
    ),
    ("language", &["lang", "language", "preferred language", "locale", "langue", "langue preferee", "sprache", "idioma", "lingua", "taal"]),
    (
        "active",
        &[
            "active",
            "is active",
            "status",
            "employment status",
            "actif",
            "statut",
            "aktiv",
            "beschaftigungsstatus",
            "activo",
            "estado",
            "attivo",
            "stato",
            "ativo",
            "situacao",
            "actief",
        ],
    ),
    ("department", &["department", "dept", "departement", "service", "abteilung", "departamento", "reparto", "dipartimento", "afdeling"]),
    (
        "title",
        &[
            "job title",
            "title",
            "position",
            "titre",
            "poste",
            "fonction",
            "intitule du poste",
            "berufsbezeichnung",
            "stellenbezeichnung",
            "position",
            "cargo",
            "puesto",
            "titolo",
            "mansione",
            "ruolo",
            "funcao",
            "functie",
            "functietitel",
        ],
    ),
    (
        "manager_id",
        &[
            "manager id",
            "manager",
            "manager employee id",
            "line manager",
            "supervisor",
            "responsable",
            "matricule manager",
            "manager matricule",
            "vorgesetzter",
            "fuhrungskraft",
            "gerente",
            "jefe",
            "responsabile",
            "gestor",
            "leidinggevende",
        ],
    ),
    (
        "location",
        &["location", "site", "office", "lieu", "etablissement", "standort", "ubicacion", "sede", "localizacao", "locatie", "vestiging"],
    ),
    (
        "hire_date",
        &[
            "hire date",
            "start date",
            "date of hire",
            "date d embauche",
            "date d entree",
            "eintrittsdatum",
            "fecha de alta",
            "fecha de ingreso",
            "data di assunzione",
            "data de admissao",
            "datum in dienst",
            "indiensttreding",
        ],
    ),
    (
        "cost_center",
        &[
            "cost center",
            "cost centre",
            "centre de cout",
            "centre de couts",
            "kostenstelle",
            "centro de coste",
            "centro de costo",
            "centro di costo",
            "centro de custo",
            "kostenplaats",
        ],
    ),
];

/// Employment status words of HR exports (Workday, Personio, SAP SuccessFactors, BambooHR,
/// HiBob, ADP …) in the seven languages, folded (see `fold`): the language, whether the word
/// means the person keeps an account (`true`) or has left (`false`), and whether it is one
/// of the usual words of that language that a draft lists even when the sample lacks it (a
/// Personio export says `onboarding` for a few people only, maybe none in the first rows).
/// A word not here is never guessed: the draft leaves it out of the map and says so, and
/// its rows are refused (their people kept as last synced) until the engineer decides.
const STATUS_WORDS: &[(&str, &str, bool, bool)] = &[
    ("en", "active", true, true),
    ("en", "inactive", false, true),
    ("en", "onboarding", true, true),
    ("en", "leave", true, true),
    ("en", "on leave", true, true),
    ("en", "terminated", false, true),
    ("en", "employed", true, false),
    ("en", "current", true, false),
    ("en", "hired", true, false),
    ("en", "pre hire", true, false),
    ("en", "new hire", true, false),
    ("en", "leave of absence", true, false),
    ("en", "paid leave", true, false),
    ("en", "unpaid leave", true, false),
    ("en", "parental leave", true, false),
    ("en", "maternity leave", true, false),
    ("en", "sick leave", true, false),
    ("en", "garden leave", true, false),
    ("en", "probation", true, false),
    ("en", "furlough", true, false),
    ("en", "furloughed", true, false),
    ("en", "full time", true, false),
    ("en", "part time", true, false),
    ("en", "termination", false, false),
    ("en", "left", false, false),
    ("en", "leaver", false, false),
    ("en", "former", false, false),
    ("en", "former employee", false, false),
    ("en", "resigned", false, false),
    ("en", "retired", false, false),
    ("en", "retiree", false, false),
    ("en", "dismissed", false, false),
    ("en", "deceased", false, false),
    ("en", "separated", false, false),
    ("en", "withdrawn", false, false),
    ("en", "exited", false, false),
    ("en", "offboarded", false, false),
    ("en", "contract ended", false, false),
    ("en", "discarded", false, false),
    ("fr", "actif", true, true),
    ("fr", "inactif", false, true),
    ("fr", "en conge", true, true),
    ("fr", "sorti", false, true),
    ("fr", "en poste", true, false),
    ("fr", "en activite", true, false),
    ("fr", "salarie", true, false),
    ("fr", "conge", true, false),
    ("fr", "conge parental", true, false),
    ("fr", "conge maternite", true, false),
    ("fr", "arret maladie", true, false),
    ("fr", "en integration", true, false),
    ("fr", "periode d essai", true, false),
    ("fr", "temps plein", true, false),
    ("fr", "temps partiel", true, false),
    ("fr", "sortie", false, false),
    ("fr", "parti", false, false),
    ("fr", "partie", false, false),
    ("fr", "licencie", false, false),
    ("fr", "licenciee", false, false),
    ("fr", "demissionnaire", false, false),
    ("fr", "demission", false, false),
    ("fr", "retraite", false, false),
    ("fr", "retraitee", false, false),
    ("fr", "decede", false, false),
    ("fr", "fin de contrat", false, false),
    ("fr", "ancien salarie", false, false),
    ("de", "aktiv", true, true),
    ("de", "inaktiv", false, true),
    ("de", "beurlaubt", true, true),
    ("de", "ausgetreten", false, true),
    ("de", "beschaftigt", true, false),
    ("de", "angestellt", true, false),
    ("de", "im dienst", true, false),
    ("de", "elternzeit", true, false),
    ("de", "in elternzeit", true, false),
    ("de", "mutterschutz", true, false),
    ("de", "probezeit", true, false),
    ("de", "vollzeit", true, false),
    ("de", "teilzeit", true, false),
    ("de", "ausgeschieden", false, false),
    ("de", "gekundigt", false, false),
    ("de", "ehemalig", false, false),
    ("de", "ehemaliger mitarbeiter", false, false),
    ("de", "ruhestand", false, false),
    ("de", "im ruhestand", false, false),
    ("de", "rentner", false, false),
    ("de", "verstorben", false, false),
    ("de", "beendet", false, false),
    ("es", "activo", true, true),
    ("es", "inactivo", false, true),
    ("es", "excedencia", true, true),
    ("es", "cesado", false, true),
    ("es", "activa", true, false),
    ("es", "empleado", true, false),
    ("es", "alta", true, false),
    ("es", "en alta", true, false),
    ("es", "de permiso", true, false),
    ("es", "permiso", true, false),
    ("es", "en excedencia", true, false),
    ("es", "baja medica", true, false),
    ("es", "baja por maternidad", true, false),
    ("es", "tiempo completo", true, false),
    ("es", "tiempo parcial", true, false),
    ("es", "inactiva", false, false),
    ("es", "cesada", false, false),
    ("es", "despedido", false, false),
    ("es", "despedida", false, false),
    ("es", "jubilado", false, false),
    ("es", "jubilada", false, false),
    ("es", "fallecido", false, false),
    ("es", "dado de baja", false, false),
    ("es", "baja definitiva", false, false),
    ("es", "ex empleado", false, false),
    ("it", "attivo", true, true),
    ("it", "inattivo", false, true),
    ("it", "in congedo", true, true),
    ("it", "cessato", false, true),
    ("it", "attiva", true, false),
    ("it", "in servizio", true, false),
    ("it", "assunto", true, false),
    ("it", "congedo", true, false),
    ("it", "aspettativa", true, false),
    ("it", "in aspettativa", true, false),
    ("it", "maternita", true, false),
    ("it", "tempo pieno", true, false),
    ("it", "inattiva", false, false),
    ("it", "cessata", false, false),
    ("it", "dimesso", false, false),
    ("it", "dimessa", false, false),
    ("it", "licenziato", false, false),
    ("it", "licenziata", false, false),
    ("it", "pensionato", false, false),
    ("it", "pensionata", false, false),
    ("it", "in pensione", false, false),
    ("it", "deceduto", false, false),
    ("pt", "ativo", true, true),
    ("pt", "inativo", false, true),
    ("pt", "afastado", true, true),
    ("pt", "desligado", false, true),
    ("pt", "ativa", true, false),
    ("pt", "admitido", true, false),
    ("pt", "em atividade", true, false),
    ("pt", "afastada", true, false),
    ("pt", "licenca", true, false),
    ("pt", "de licenca", true, false),
    ("pt", "em licenca", true, false),
    ("pt", "ferias", true, false),
    ("pt", "em ferias", true, false),
    ("pt", "tempo integral", true, false),
    ("pt", "inativa", false, false),
    ("pt", "desligada", false, false),
    ("pt", "demitido", false, false),
    ("pt", "demitida", false, false),
    ("pt", "aposentado", false, false),
    ("pt", "aposentada", false, false),
    ("pt", "rescindido", false, false),
    ("pt", "falecido", false, false),
    ("nl", "actief", true, true),
    ("nl", "inactief", false, true),
    ("nl", "met verlof", true, true),
    ("nl", "uit dienst", false, true),
    ("nl", "in dienst", true, false),
    ("nl", "verlof", true, false),
    ("nl", "ouderschapsverlof", true, false),
    ("nl", "proeftijd", true, false),
    ("nl", "voltijd", true, false),
    ("nl", "deeltijd", true, false),
    ("nl", "vertrokken", false, false),
    ("nl", "ontslagen", false, false),
    ("nl", "gepensioneerd", false, false),
    ("nl", "overleden", false, false),
    ("nl", "beeindigd", false, false),
];

/// What a status value means: a known status word, or a flag of more than one letter
/// (`yes`, `nein`, `1`…). A lone letter is not trusted once words are about: ADP's `T` is
/// "terminated", not "true".
fn status_of(v: &str) -> Option<(bool, &'static str)> {
    let f = fold(v);
    if let Some((lang, _, active, _)) = STATUS_WORDS.iter().find(|(_, w, _, _)| *w == f) {
        return Some((*active, lang));
    }
    if f.chars().count() > 1 || f.chars().all(|c| c.is_ascii_digit()) {
        return crate::mapping::parse_flag(v).map(|b| (b, ""));
    }
    None
}

/// The `active` line for a status column, from its sample values: a column of plain flags
/// is read as it is; a column of words gets a map of each sampled word with what it means,
/// plus the usual words of its language(s) the sample lacks. Values it does not know are
/// left out and listed in an `unsure` comment line above: never guessed.
fn active_line(col: &str, vals: &[String], unsure: &str) -> String {
    // Flags only (Yes/No, T/F, 1/0): the platform's own reading of flags applies.
    let word = |v: &String| STATUS_WORDS.iter().any(|(_, w, _, _)| *w == fold(v));
    if !vals.is_empty() && vals.iter().all(|v| crate::mapping::parse_flag(v).is_some() && !word(v)) {
        return format!("active = {}{unsure}", q(col));
    }
    let mut entries: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut langs: Vec<&str> = Vec::new();
    for v in vals {
        if v.chars().any(char::is_control) {
            unknown.push(v.clone());
            continue;
        }
        match status_of(v) {
            Some((active, lang)) => {
                entries.push(format!("{} = {active}", q(v)));
                seen.push(fold(v));
                if !lang.is_empty() && !langs.contains(&lang) {
                    langs.push(lang);
                }
            }
            None => unknown.push(v.clone()),
        }
    }
    // Written like the sample: "Active" for "Active", "active" for "active".
    let capital = vals.iter().find(|v| status_of(v).is_some()).is_some_and(|v| v.chars().next().is_some_and(char::is_uppercase));
    for (lang, word, active, core) in STATUS_WORDS {
        if *core && langs.contains(lang) && !seen.iter().any(|s| s == word) {
            let shown = if capital { title(word) } else { word.to_string() };
            entries.push(format!("{} = {active}", q(&shown)));
        }
    }
    let mut out = String::new();
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().take(12).map(|u| format!("\"{}\"", crate::text::excerpt(u))).collect();
        let more = if unknown.len() > 12 { format!(" and {} more", unknown.len() - 12) } else { String::new() };
        out.push_str(&format!(
            "# unsure: {}{more} of column {} {} rostersync knows: add each to the map as true (keeps an account) or false (has left); until then their rows are refused and their people kept as last synced\n",
            shown.join(", "),
            q(col),
            if unknown.len() == 1 { "is not a status word" } else { "are not status words" }
        ));
    }
    if entries.is_empty() {
        out.push_str(&format!(
            "active = {}   # unsure: no sample value is a known status; add map = {{ … }} with true or false for each",
            q(col)
        ));
        return out;
    }
    out.push_str(&format!("active = {{ column = {}, map = {{ {} }} }}{unsure}", q(col), entries.join(", ")));
    out
}

/// "on leave" → "On Leave".
fn title(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const PLATFORM: [&str; 6] = ["employee_id", "email", "first_name", "last_name", "language", "active"];

/// Lowercase, accents folded, anything but letters and digits turned into single spaces.
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.to_lowercase().chars() {
        let f: &str = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
            'ç' => "c",
            'è' | 'é' | 'ê' | 'ë' => "e",
            'ì' | 'í' | 'î' | 'ï' => "i",
            'ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
            'ù' | 'ú' | 'û' | 'ü' => "u",
            'ý' | 'ÿ' => "y",
            'ß' => "ss",
            'æ' => "ae",
            'œ' => "oe",
            c if c.is_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => " ",
        };
        out.push_str(f);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Attribute key for a column: snake_case ASCII.
fn key_for(column: &str, taken: &BTreeSet<String>, i: usize) -> String {
    let base: String = fold(column).chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let base = base.trim_matches('_').to_string();
    let base = if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) { format!("column_{}", i + 1) } else { base };
    let mut k = base.clone();
    let mut n = 2;
    while taken.contains(&k) || PLATFORM.contains(&k.as_str()) {
        k = format!("{base}_{n}");
        n += 1;
    }
    k
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One matched column.
struct ColumnGuess {
    field: &'static str,
    column: usize,
    sure: bool,
    why: String,
}

/// The draft mapping for `path`, as TOML text.
pub fn draft(path: &Path, display_name: &str) -> Result<String, FormatError> {
    let format = format::detect(path, display_name)?;
    let mut opts = SourceOptions { header_row: 1, ..Default::default() };
    let mut notes: Vec<String> = Vec::new();
    let mut source_lines: Vec<String> = Vec::new();

    // The header: fix the encoding, skip a title row, find the JSON array.
    let header = match format::headers(path, display_name, format, &opts) {
        Ok(h) => h,
        Err(FormatError::HeaderNotUtf8 { .. }) if format == Format::Csv => {
            opts.encoding = Some(encoding_rs::WINDOWS_1252);
            source_lines.push(
                "encoding = \"windows-1252\"      # unsure: the file is not UTF-8; windows-1252 is what Excel writes in Western Europe"
                    .into(),
            );
            format::headers(path, display_name, format, &opts)?
        }
        Err(FormatError::NotAnArray { .. }) if format == Format::Json => {
            let pointer = find_array(path, display_name)?;
            source_lines.push(format!("records = {}", q(&pointer)));
            opts.records = Some(pointer);
            format::headers(path, display_name, format, &opts)?
        }
        Err(e) => return Err(e),
    };
    let mut header = header;
    let wide = |h: &[String]| h.iter().filter(|x| !x.trim().is_empty()).count() > 1;
    // A notes sheet first, a title row above the header: look further, and say so.
    let sheets: Vec<Option<String>> = match format {
        Format::Xlsx | Format::Xls | Format::Ods => format::sheet_names(path, display_name, format)?.into_iter().map(Some).collect(),
        Format::Csv => vec![None],
        _ => vec![],
    };
    if !wide(&header) {
        'search: for (k, sheet) in sheets.iter().enumerate() {
            for row in 1..=10 {
                if k == 0 && row == 1 {
                    continue;
                }
                let o = SourceOptions { header_row: row, sheet: sheet.clone(), ..opts.clone() };
                if let Ok(h) = format::headers(path, display_name, format, &o)
                    && wide(&h)
                {
                    header = h;
                    opts = o;
                    if let (true, Some(name)) = (k > 0, sheet) {
                        source_lines.push(format!("sheet = {}   # unsure: the first sheet holds no table", q(name)));
                    }
                    if row > 1 {
                        source_lines.push(format!(
                            "header_row = {row}   # unsure: the rows above look like a title; the column names are on row {row}"
                        ));
                    }
                    break 'search;
                }
            }
        }
    }
    if matches!(format, Format::Csv) {
        // State the delimiter the sniffer found, so the mapping does not depend on sniffing.
        let d = sniffed_delimiter(path, display_name, &opts);
        source_lines.insert(0, format!("delimiter = {}", q(&d)));
    }

    // Sample values, to check the name-based guesses.
    let samples = sample(path, display_name, format, &opts, &header, 200);
    let folded: Vec<String> = header.iter().map(|h| fold(h)).collect();
    let mut used = vec![false; header.len()];
    let mut picks: Vec<ColumnGuess> = Vec::new();
    // Exact names first, for every field, so "Email" wins over "Manager Email".
    for (field, names) in SYNONYMS {
        let names: Vec<String> = names.iter().map(|n| fold(n)).collect();
        if let Some(i) = (0..header.len()).find(|&i| !used[i] && names.contains(&folded[i])) {
            used[i] = true;
            picks.push(ColumnGuess { field, column: i, sure: true, why: String::new() });
        }
    }
    for (field, names) in SYNONYMS {
        if picks.iter().any(|p| p.field == *field) {
            continue;
        }
        let names: Vec<String> = names.iter().map(|n| fold(n)).filter(|n| n.len() >= 5).collect();
        let candidates: Vec<usize> =
            (0..header.len()).filter(|&i| !used[i] && names.iter().any(|n| folded[i].contains(n.as_str()))).collect();
        // "Manager Email", "emails[0].type": prefer the candidate whose values fit the field.
        let fits = |i: usize| match *field {
            "email" => share(&samples, i, |v| crate::mapping::check_email(v.trim()).is_ok()) > 0.5,
            "language" => share(&samples, i, |v| crate::mapping::language_code(v).is_some()) > 0.5,
            "active" => share(&samples, i, |v| status_of(v).is_some()) > 0.5,
            _ => true,
        };
        let hit = candidates.iter().copied().find(|&i| fits(i)).or(candidates.first().copied());
        if let Some(i) = hit {
            used[i] = true;
            picks.push(ColumnGuess {
                field,
                column: i,
                sure: false,
                why: format!("matched by a part of the name {}", q(header[i].trim())),
            });
        }
    }
    // Values: an email column nobody named.
    if !picks.iter().any(|p| p.field == "email")
        && let Some(i) =
            (0..header.len()).find(|&i| !used[i] && share(&samples, i, |v| crate::mapping::check_email(v.trim()).is_ok()) > 0.8)
    {
        used[i] = true;
        picks.push(ColumnGuess { field: "email", column: i, sure: false, why: "its values look like email addresses".into() });
    }
    let get = |f: &str| picks.iter().find(|p| p.field == f);

    let mut out = String::new();
    out.push_str(&format!("# Draft mapping for {display_name}, written by `rostersync mapping suggest`.\n"));
    out.push_str("# Check every line marked \"unsure\", then run `rostersync test CONNECTOR`.\n\n");
    let unique = if get("employee_id").is_some() { "employee_id" } else { "email" };
    out.push_str(&format!("unique_id = \"{unique}\""));
    if get("employee_id").is_none() {
        out.push_str("   # unsure: no employee id column found; people are matched by email");
    }
    out.push('\n');
    if !source_lines.is_empty() {
        out.push_str("\n[source]\n");
        for l in &source_lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str("\n[fields]\n");
    for field in PLATFORM {
        let Some(p) = get(field) else {
            match field {
                "first_name" | "last_name" => {
                    out.push_str(&format!(
                        "{field} = \"CHOOSE A COLUMN\"   # unsure: no column looks like a {}; the header has {}\n",
                        field.replace('_', " "),
                        header.iter().map(|h| q(h.trim())).collect::<Vec<_>>().join(", ")
                    ));
                    notes.push(field.into());
                }
                "language" => out.push_str("language = { default = \"en\" }   # no language column found: everyone gets the default\n"),
                "email" if unique == "email" => out.push_str("email = \"CHOOSE A COLUMN\"   # unsure: no column looks like an email\n"),
                _ => {}
            }
            continue;
        };
        let col = header[p.column].trim();
        let unsure = if p.sure { String::new() } else { format!("   # unsure: {}", p.why) };
        let line = match field {
            "email" => format!("email = {{ column = {}, transform = [\"trim\", \"lowercase\"] }}{unsure}", q(col)),
            "first_name" | "last_name" => format!("{field} = {{ column = {}, transform = [\"trim\"] }}{unsure}", q(col)),
            "language" => {
                let bad = values(&samples, p.column)
                    .into_iter()
                    .filter(|v| crate::mapping::language_code(v).is_none())
                    .take(3)
                    .collect::<Vec<_>>();
                let note = if bad.is_empty() {
                    unsure
                } else {
                    format!(
                        "   # unsure: values such as {} are not languages; add map = {{ … }}",
                        bad.iter().map(|b| q(b)).collect::<Vec<_>>().join(", ")
                    )
                };
                format!("language = {{ column = {}, default = \"en\" }}{note}", q(col))
            }
            "active" => active_line(col, &values(&samples, p.column), &unsure),
            _ => format!("{field} = {}{unsure}", q(col)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\n[attributes]\n");
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (i, h) in header.iter().enumerate() {
        if h.trim().is_empty() || picks.iter().any(|p| p.column == i && PLATFORM.contains(&p.field)) {
            continue;
        }
        let (key, mut unsure) = match picks.iter().find(|p| p.column == i) {
            Some(p) if !taken.contains(p.field) => {
                (p.field.to_string(), if p.sure { String::new() } else { format!("   # unsure: {}", p.why) })
            }
            _ => (key_for(h, &taken, i), String::new()),
        };
        taken.insert(key.clone());
        let vals = values(&samples, i);
        let date = date_format(&vals);
        let line = match date {
            Some((fmt, ambiguous)) => {
                if ambiguous {
                    unsure = "   # unsure: day/month order; every sample date fits both".into();
                }
                format!("{key} = {{ column = {}, date = {} }}{unsure}", q(h.trim()), q(fmt))
            }
            None => format!("{key} = {}{unsure}", q(h.trim())),
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The first rows' values, per header column (empty when the file cannot be sampled).
fn sample(path: &Path, name: &str, format: Format, opts: &SourceOptions, header: &[String], n: usize) -> Vec<Vec<Option<String>>> {
    let cols: Vec<String> = header.iter().filter(|h| !h.trim().is_empty()).cloned().collect();
    // Duplicate names cannot be requested; sampling is a hint, so give up on them.
    let Ok(records) = format::open(path, name, format, opts, &cols) else { return Vec::new() };
    let pos: Vec<Option<usize>> = header.iter().map(|h| cols.iter().position(|c| c == h)).collect();
    records.take(n).filter_map(|r| r.ok()).map(|r| pos.iter().map(|p| p.and_then(|k| r.get(k).map(str::to_string))).collect()).collect()
}

/// Distinct non-empty values of a column, in order of appearance.
fn values(samples: &[Vec<Option<String>>], i: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for row in samples {
        if let Some(Some(v)) = row.get(i) {
            let v = v.trim();
            if !v.is_empty() && !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// Share of non-empty sample values that satisfy `f`.
fn share(samples: &[Vec<Option<String>>], i: usize, f: impl Fn(&str) -> bool) -> f64 {
    let vals = values(samples, i);
    if vals.is_empty() {
        return 0.0;
    }
    vals.iter().filter(|v| f(v)).count() as f64 / vals.len() as f64
}

/// A strftime format every sample value fits, when the values are dates that are not already
/// ISO 8601; and whether day and month could be swapped.
fn date_format(vals: &[String]) -> Option<(&'static str, bool)> {
    if vals.is_empty() || vals.iter().all(|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()) {
        return None;
    }
    let fits = |fmt: &str| vals.iter().all(|v| chrono::NaiveDate::parse_from_str(v, fmt).is_ok());
    for (a, b) in [("%d/%m/%Y", "%m/%d/%Y"), ("%d.%m.%Y", "%m.%d.%Y"), ("%d-%m-%Y", "%m-%d-%Y")] {
        match (fits(a), fits(b)) {
            (true, true) => return Some((a, true)),
            (true, false) => return Some((a, false)),
            (false, true) => return Some((b, false)),
            _ => {}
        }
    }
    None
}

fn sniffed_delimiter(path: &Path, name: &str, opts: &SourceOptions) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(r) = crate::format::sniff_text(path, name, opts) {
        let _ = r.take(256 * 1024).read_to_end(&mut buf);
    }
    match crate::format::sniff_delimiter(&buf, opts.header_row) {
        b'\t' => "\\t".into(),
        d => (d as char).to_string(),
    }
}

/// The pointer of the first array of objects in a JSON document (breadth first).
fn find_array(path: &Path, name: &str) -> Result<String, FormatError> {
    let text = crate::format::sniff_text(path, name, &SourceOptions::default())?;
    let v: serde_json::Value = serde_json::from_reader(std::io::BufReader::new(text)).map_err(|e| FormatError::Malformed {
        file: name.into(),
        line: Some(e.line() as u64),
        message: format!("not valid JSON: {e}"),
    })?;
    let mut queue = std::collections::VecDeque::from([(String::new(), &v)]);
    while let Some((ptr, v)) = queue.pop_front() {
        match v {
            serde_json::Value::Array(a) if a.first().is_some_and(|x| x.is_object()) => return Ok(ptr),
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    queue.push_back((format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1")), v));
                }
            }
            _ => {}
        }
    }
    Err(FormatError::Malformed { file: name.into(), line: None, message: "no array of records anywhere in the document".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    fn check(name: &str) -> (String, crate::config::Mapping) {
        let text = draft(&fixture(name), name).unwrap();
        let m = crate::config::parse_mapping(&text, Path::new("draft.toml")).unwrap_or_else(|ps| panic!("{text}\n{ps:?}"));
        (text, m)
    }

    #[test]
    fn french_windows_1252_export() {
        let (text, m) = check("cp1252_semicolon.csv");
        assert!(text.contains("encoding = \"windows-1252\""), "{text}");
        assert!(text.contains("delimiter = \";\""), "{text}");
        assert!(text.contains("employee_id = \"Matricule\""), "{text}");
        assert!(text.contains("first_name = { column = \"Prénom\""), "{text}");
        assert!(text.contains("last_name = { column = \"Nom\""), "{text}");
        assert!(text.contains("email = { column = \"E-mail\""), "{text}");
        assert!(text.contains("language = { column = \"Langue\""), "{text}");
        assert!(text.contains("active = \"Actif\"\n"), "Oui/Non are flags already: {text}");
        assert_eq!(m.unique_id, crate::config::UniqueId::EmployeeId);
    }

    #[test]
    fn workbook_with_a_title_row_and_dates() {
        let (text, m) = check("employees.xlsx");
        assert!(text.contains("sheet = \"Employees\"   # unsure"), "{text}");
        assert!(text.contains("header_row = 2   # unsure"), "{text}");
        assert!(text.contains("employee_id = \"Personnel Number\"\n"), "{text}");
        assert!(text.contains("active = \"Active\"\n"), "{text}");
        assert!(text.contains("hire_date = \"Hire Date\"\n"), "date cells arrive as ISO dates, no format needed: {text}");
        assert_eq!((m.source.sheet.as_deref(), m.source.header_row), (Some("Employees"), 2));
    }

    #[test]
    fn nested_json_finds_the_array_and_paths() {
        let (text, m) = check("nested.json");
        assert!(text.contains("records = \"/data/employees\""), "{text}");
        assert!(text.contains("email = { column = \"emails[0].value\""), "{text}");
        assert!(text.contains("active = \"active\""), "{text}");
        assert_eq!(m.source.records.as_deref(), Some("/data/employees"));
    }

    /// The draft for a CSV file of these lines, and its `active` line(s).
    fn active_of(csv: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        std::fs::write(&p, csv).unwrap();
        let text = draft(&p, "x.csv").unwrap();
        crate::config::parse_mapping(&text, Path::new("d.toml")).unwrap_or_else(|ps| panic!("{text}\n{ps:?}"));
        let active = text.lines().filter(|l| l.starts_with("active") || l.contains("rostersync knows")).collect::<Vec<_>>().join("\n");
        (text, active)
    }

    #[test]
    fn status_words_are_mapped_by_meaning_never_guessed() {
        // Workday: a leaver is "Terminated", and must map to false.
        let (text, a) = active_of("Employee ID,First Name,Last Name,Worker Status\n1,A,B,Active\n2,C,D,Terminated\n3,E,F,On Leave\n");
        assert!(a.contains("\"Terminated\" = false") && a.contains("\"Active\" = true") && a.contains("\"On Leave\" = true"), "{text}");
        assert!(!a.contains("# unsure: \""), "every value is known: {text}");
        // Personio: onboarding is listed even when the sample has none (and leave).
        let (text, a) = active_of("Personalnummer,Vorname,Nachname,Status\n1,A,B,active\n2,C,D,inactive\n");
        assert!(a.contains("\"onboarding\" = true") && a.contains("\"leave\" = true") && a.contains("\"inactive\" = false"), "{text}");
        // German words, and a status nobody knows: left out, named, never true.
        let (text, a) = active_of("Personalnummer,Vorname,Nachname,Status\n1,A,B,Aktiv\n2,C,D,Ausgetreten\n3,E,F,Gesperrt\n");
        assert!(a.contains("\"Ausgetreten\" = false") && a.contains("\"Aktiv\" = true") && a.contains("\"Beurlaubt\" = true"), "{text}");
        assert!(a.contains("# unsure: \"Gesperrt\" of column \"Status\" is not a status word rostersync knows"), "{text}");
        assert!(!a.contains("\"Gesperrt\" ="), "an unknown status is never mapped: {text}");
        // ADP letters: "T" is terminated here, not "true"; nothing is guessed from letters.
        let (text, a) = active_of("Employee ID,First Name,Last Name,Status\n1,A,B,A\n2,C,D,T\n3,E,F,Active\n");
        assert!(a.contains("\"A\", \"T\" of column") && !a.contains("\"T\" = true"), "{text}");
        // Plain flags stay plain.
        let (_, a) = active_of("Employee ID,First Name,Last Name,Active\n1,A,B,Y\n2,C,D,N\n");
        assert_eq!(a, "active = \"Active\"");
        // Nothing known at all: no map of guesses.
        let (text, a) = active_of("Employee ID,First Name,Last Name,Status\n1,A,B,Q1\n2,C,D,Q2\n");
        assert!(a.contains("active = \"Status\"   # unsure") && !a.contains("= true,") && !a.contains("= false"), "{text}");
    }

    #[test]
    fn german_and_spanish_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("de.csv");
        std::fs::write(
            &p,
            "Personalnummer,Vorname,Nachname,E-Mail-Adresse,Abteilung,Eintrittsdatum,Correo\n1,Jörg,Schmidt,j@x.de,IT,31.12.2020,x@y.es\n",
        )
        .unwrap();
        let text = draft(&p, "de.csv").unwrap();
        crate::config::parse_mapping(&text, Path::new("d.toml")).unwrap();
        assert!(text.contains("employee_id = \"Personalnummer\""), "{text}");
        assert!(text.contains("first_name = { column = \"Vorname\""), "{text}");
        assert!(text.contains("last_name = { column = \"Nachname\""), "{text}");
        assert!(text.contains("email = { column = \"E-Mail-Adresse\""), "{text}");
        assert!(text.contains("department = \"Abteilung\""), "{text}");
        assert!(text.contains("hire_date = { column = \"Eintrittsdatum\", date = \"%d.%m.%Y\" }\n"), "{text}");
        assert!(text.contains("correo = \"Correo\""), "the second email column stays an attribute: {text}");
    }
}
