//! Turning a campaign's template and one health worker's record into the text
//! of an SMS.
//!
//! Templates are [Tera](https://keats.github.io/tera/) files in `templates/sms/`,
//! embedded in the binary and overridable from a directory at start-up. Three
//! things make this module stricter than a web page renderer:
//!
//! - **Cost.** A campaign goes to hundreds of thousands of numbers: one
//!   non-GSM-7 character turns every message into UCS-2 (70 characters per
//!   part instead of 160), and one extra segment doubles the bill. Templates
//!   therefore use `nama_pendek` (at most [`SHORT_NAME_MAX_CHARS`]
//!   characters) and [`Renderer::validate`] rejects a template whose source or
//!   sample rendering is not GSM-7 or is too long. The worker's own values
//!   (a name typed into WhatsApp with an emoji, a curly apostrophe, a `ç`)
//!   are reduced to GSM-7 before rendering
//!   ([`to_gsm7_data`](crate::domain::sms::to_gsm7_data)), so data never
//!   makes a notice UCS-2: the template is checked, the data is converted.
//! - **Phishing.** Look-alike domains, shorteners and `wa.me` links imitated
//!   this campaign in 2021. Our messages link to [`ALLOWED_DOMAIN`] only, so
//!   recipients can learn "a PEDULICOVID message never links anywhere else".
//! - **Recycled numbers.** A number the worker gave up may now belong to a
//!   stranger, so a message shows at most the last four digits of a NIK.
//!
//! Values are data, never template code: a name such as `{{ x }}` or `<b>`
//! is printed as written, with HTML autoescaping off (this is SMS). Control
//! characters in values become spaces before rendering. A name left with no
//! letter or digit (emoji only) is printed as [`NAME_FALLBACK`].
//!
//! # Built-in templates, rendered for [`RenderContext::sample`]
//!
//! GSM-7 units, one segment each (a 20-character `nama_pendek` still fits
//! one segment: 153–156 units). The test
//! `sample_renderings_are_the_documented_ones` keeps this table honest.
//!
//! | template | units | sample rendering |
//! |---|---|---|
//! | `pengingat` | 146 | Siti Rahayu (NIK ****0012), Anda belum registrasi Vaksin COVID-19 nakes. Ayo daftar & pilih jadwal/lokasi di pedulilindungi.id atau *119#. Gratis. |
//! | `registrasi_ulang` | 144 | Siti Rahayu (NIK ****0012), nomor ini terdaftar untuk Vaksin COVID-19 nakes. Pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis. |
//! | `registrasi_ulang_tanpa_nik` | 137 | Siti Rahayu, nomor ini didaftarkan ulang untuk Vaksin COVID-19 nakes. Pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis. |
//! | `undangan_registrasi` | 147 | Siti Rahayu (NIK ****0012), Anda nakes calon penerima Vaksin COVID-19. Daftar & pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis. |

use std::collections::BTreeMap;
use std::path::Path;

use crate::domain::sms::{
    into_gsm7_data, is_gsm7_char, is_printable_gsm7_ascii, Encoding, SmsText,
};

/// The only domain a message may link to: the official registration site.
pub const ALLOWED_DOMAIN: &str = "pedulilindungi.id";

/// Longest `nama_pendek`, in characters. Chosen so that the built-in
/// templates stay in one GSM-7 segment for any name.
pub const SHORT_NAME_MAX_CHARS: usize = 20;

/// What `nama` and `nama_pendek` print for a worker whose name has no
/// letter or digit left once reduced to GSM-7 (a WhatsApp name of emoji
/// only, a placeholder such as `-`): "Sir/Madam", the usual polite address.
/// Every built-in template starts with the name, so an empty one would open
/// the message with "(NIK …" or a bare comma.
pub const NAME_FALLBACK: &str = "Bapak/Ibu";

/// Built-in templates, embedded so the binary works from any directory.
/// Paths are relative to this file, so they also resolve when this module is
/// compiled through `#[path]` from elsewhere.
const BUILTIN: &[(&str, &str)] = &[
    ("pengingat", include_str!("../templates/sms/pengingat.tera")),
    (
        "registrasi_ulang",
        include_str!("../templates/sms/registrasi_ulang.tera"),
    ),
    (
        "registrasi_ulang_tanpa_nik",
        include_str!("../templates/sms/registrasi_ulang_tanpa_nik.tera"),
    ),
    (
        "undangan_registrasi",
        include_str!("../templates/sms/undangan_registrasi.tera"),
    ),
];

/// A template whose name ends with this renders without `nik_akhir`: it is
/// for a number nobody has validated yet (a chatbot re-registration in the
/// `immediate` mode), which must never see NIK digits. The variable is
/// absent, not empty, so an (override) template that still uses it fails
/// to render (the message is flagged `render_failed`), never leaks.
pub const NO_NIK_SUFFIX: &str = "_tanpa_nik";

/// File-name suffix of a template in an override directory.
const TEMPLATE_SUFFIX: &str = ".tera";

/// Values a template may use. Built from a health worker's record.
///
/// The fields hold raw record values; [`Renderer::render`] cleans them
/// (control characters, invisible characters), reduces them to GSM-7
/// ([`to_gsm7_data`](crate::domain::sms::to_gsm7_data)) and derives the
/// short name, so callers need not.
#[derive(Debug, Clone)]
pub struct RenderContext {
    /// Name as registered, titles included (`nama`; shortened as `nama_pendek`).
    pub full_name: String,
    /// Last four NIK digits (`nik_akhir`). Should anything longer arrive here,
    /// only its last four digits are ever rendered.
    pub nik_last4: String,
    /// Health-profession group, e.g. "Perawat" (`profesi`).
    pub profession: String,
    /// Code of the facility (fasyankes) where the worker works (`fasyankes`).
    pub facility_code: String,
    /// Province of the workplace, e.g. "DKI Jakarta" (`provinsi`).
    pub province_name: String,
}

impl RenderContext {
    /// A typical health worker, used to check templates before a campaign
    /// starts: validation renders this context and measures the result.
    pub fn sample() -> RenderContext {
        RenderContext {
            full_name: "Siti Rahayu".to_owned(),
            nik_last4: "0012".to_owned(),
            profession: "Perawat".to_owned(),
            facility_code: "P3174050101".to_owned(),
            province_name: "DKI Jakarta".to_owned(),
        }
    }

    /// The printed value of each variable `wanted` (indexed by [`Var`]),
    /// `None` for the others: only what a template uses is cleaned and
    /// reduced. Template variable names are Indonesian because the people
    /// who write templates are.
    fn values(self, wanted: [bool; Var::COUNT]) -> [Option<String>; Var::COUNT] {
        let wants = |var: Var| wanted[var as usize];
        let mut values: [Option<String>; Var::COUNT] = Default::default();
        if wants(Var::Nama) || wants(Var::NamaPendek) {
            let mut name = data_value(self.full_name);
            if !name.chars().any(char::is_alphanumeric) {
                name = NAME_FALLBACK.to_owned();
            }
            if wants(Var::NamaPendek) {
                values[Var::NamaPendek as usize] = Some(short_name(&name, SHORT_NAME_MAX_CHARS));
            }
            values[Var::Nama as usize] = wants(Var::Nama).then_some(name);
        }
        // The values are moved in, a plain one as it came from the record.
        let mut set = |var: Var, value: String, print: fn(String) -> String| {
            if wants(var) {
                values[var as usize] = Some(print(value));
            }
        };
        set(Var::NikAkhir, self.nik_last4, |v| last_digits(v, 4));
        set(Var::Profesi, self.profession, data_value);
        set(Var::Fasyankes, self.facility_code, data_value);
        set(Var::Provinsi, self.province_name, data_value);
        values
    }

    /// The Tera context: every variable (`Context::insert` would serialise
    /// a copy of each value; the object is made of the values themselves).
    fn into_tera(self) -> tera::Context {
        let object = Var::ALL
            .into_iter()
            .zip(self.values([true; Var::COUNT]))
            .filter_map(|(var, value)| Some((var.name().to_owned(), tera::Value::String(value?))))
            .collect();
        tera::Context::from_value(tera::Value::Object(object)).expect("an object is a context")
    }
}

/// The variables a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    /// `nama_pendek`: the name shortened to [`SHORT_NAME_MAX_CHARS`].
    NamaPendek,
    /// `nama`: the name as registered, cleaned.
    Nama,
    /// `nik_akhir`: the NIK's last four digits.
    NikAkhir,
    /// `profesi`
    Profesi,
    /// `fasyankes`
    Fasyankes,
    /// `provinsi`
    Provinsi,
}

impl Var {
    const COUNT: usize = 6;
    const ALL: [Var; Var::COUNT] = [
        Var::NamaPendek,
        Var::Nama,
        Var::NikAkhir,
        Var::Profesi,
        Var::Fasyankes,
        Var::Provinsi,
    ];

    fn name(self) -> &'static str {
        match self {
            Var::NamaPendek => "nama_pendek",
            Var::Nama => "nama",
            Var::NikAkhir => "nik_akhir",
            Var::Profesi => "profesi",
            Var::Fasyankes => "fasyankes",
            Var::Provinsi => "provinsi",
        }
    }

    fn named(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|var| var.name() == name)
    }
}

/// A template of text and plain `{{ variable }}`s only, as every built-in
/// one is, rendered by joining its pieces: what tera's renderer does with
/// it (autoescaping is off and every value is a string; comments print
/// nothing; whitespace control is applied to the text when tera parses),
/// without building tera's context and walking its evaluator, a tenth of
/// the dispatcher's CPU a notice (BENCHMARKS.md, fourteenth pass). Any
/// other template (a filter, a condition, a loop, `extends`, a variable we
/// do not have) renders through tera, its errors included.
#[derive(Debug, Clone)]
struct Plain {
    pieces: Vec<Piece>,
    /// The variables the pieces use, indexed by [`Var`].
    wanted: [bool; Var::COUNT],
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Var(Var),
}

impl Plain {
    /// The plain form of `template`, if it has one. `no_nik`: the template
    /// renders without `nik_akhir` ([`NO_NIK_SUFFIX`]), so one that uses it
    /// is left to tera, which fails it.
    fn of(template: &tera::Template, no_nik: bool) -> Option<Plain> {
        use tera::ast::{Expr, ExprVal, Node};
        let mut pieces = Vec::with_capacity(template.ast.len());
        let mut wanted = [false; Var::COUNT];
        for node in &template.ast {
            match node {
                Node::Comment(..) => {}
                Node::Text(text) | Node::Raw(_, text, _) => pieces.push(Piece::Text(text.clone())),
                Node::VariableBlock(
                    _,
                    Expr {
                        val: ExprVal::Ident(name),
                        negated: false,
                        filters,
                    },
                ) if filters.is_empty() => {
                    let var = Var::named(name).filter(|v| !(no_nik && *v == Var::NikAkhir))?;
                    wanted[var as usize] = true;
                    pieces.push(Piece::Var(var));
                }
                _ => return None,
            }
        }
        Some(Plain { pieces, wanted })
    }

    fn render(&self, values: &[Option<String>; Var::COUNT]) -> String {
        let len = self.pieces.iter().map(|p| p.text(values).len()).sum();
        let mut out = String::with_capacity(len);
        for p in &self.pieces {
            out.push_str(p.text(values));
        }
        out
    }
}

impl Piece {
    fn text<'a>(&'a self, values: &'a [Option<String>; Var::COUNT]) -> &'a str {
        match self {
            Piece::Text(text) => text,
            Piece::Var(var) => values[*var as usize].as_deref().unwrap_or_default(),
        }
    }
}

/// Why a template cannot be used. Each variant is something the campaign
/// author must fix; none is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// No template of that name; lists the ones that exist so a typo is obvious.
    #[error("unknown template {name:?}; available: {available}")]
    Unknown { name: String, available: String },
    /// Tera failed at render time, e.g. an undefined variable or filter.
    #[error("template {name:?} failed to render: {reason}")]
    Render { name: String, reason: String },
    /// The source or the sample rendering holds a character outside GSM-7.
    #[error("template {name:?} is not GSM-7: character {ch:?} would make every message UCS-2")]
    NotGsm7 { name: String, ch: char },
    /// The sample rendering needs more segments than the campaign allows.
    #[error("template {name:?} needs {segments} SMS segments for a typical worker, more than the allowed {max}")]
    TooLong {
        name: String,
        segments: u32,
        max: u32,
    },
    /// A URL or domain other than [`ALLOWED_DOMAIN`] (or a URL hiding its host).
    #[error("template {name:?} links to {domain:?}; only pedulilindungi.id may be linked")]
    ForeignLink { name: String, domain: String },
    /// An override file or directory could not be read or parsed; `dir` names
    /// the file when one file is at fault.
    #[error("loading templates from {dir}: {reason}")]
    Load { dir: String, reason: String },
}

/// The set of SMS templates a running dispatcher can use: built-ins plus
/// overrides, parsed once at start-up.
#[derive(Debug, Clone)]
pub struct Renderer {
    /// Parsed templates, registered under their bare names (no `.tera`).
    tera: tera::Tera,
    /// Source of every template, kept for the GSM-7 and link checks, which
    /// must also see branches the sample rendering does not take.
    sources: BTreeMap<String, String>,
    /// The templates that have a [`Plain`] form, by name.
    plain: std::collections::HashMap<String, Plain>,
}

impl Renderer {
    /// Built-in templates (embedded from `templates/sms`), then every `*.tera`
    /// in `dir/sms/` if given and present, overriding a built-in of the same
    /// name. A missing directory is fine, so the default configuration needs
    /// no files; an unreadable or syntactically broken template is a
    /// [`TemplateError::Load`] naming the file, so a typo stops start-up
    /// instead of a campaign.
    pub fn load(dir: Option<&Path>) -> Result<Renderer, TemplateError> {
        let mut sources = builtin_sources();
        if let Some(dir) = dir {
            sources.extend(read_override_dir(&dir.join("sms"))?);
        }
        Renderer::from_sources(sources).map_err(|reason| TemplateError::Load {
            dir: dir.map_or_else(
                || "built-in templates".to_owned(),
                |d| d.display().to_string(),
            ),
            reason,
        })
    }

    /// The embedded templates only.
    pub fn builtin() -> Renderer {
        // The embedded templates are fixed at compile time and parsed by the
        // tests (`builtin_templates_validate_in_one_segment`), so this cannot
        // fail in a released binary.
        Renderer::from_sources(builtin_sources()).expect("built-in SMS templates parse")
    }

    /// Template names, sorted, without `.tera`: what a campaign may name.
    pub fn names(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// Whether a campaign may name this template.
    pub fn has(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Renders one message. The output is trimmed (template files end with a
    /// newline) and passed through [`SmsText::new`], which transliterates
    /// characters such as curly quotes that a name may bring along.
    pub fn render(&self, name: &str, ctx: &RenderContext) -> Result<SmsText, TemplateError> {
        self.render_owned(name, ctx.clone())
    }

    /// [`Self::render`] of a context the caller is done with: its values
    /// move into the template's context instead of being copied (the
    /// dispatcher's way, once a message).
    pub fn render_owned(&self, name: &str, ctx: RenderContext) -> Result<SmsText, TemplateError> {
        if !self.has(name) {
            return Err(self.unknown(name));
        }
        let mut text = match self.plain.get(name) {
            Some(plain) => plain.render(&ctx.values(plain.wanted)),
            None => self.render_tera(name, ctx)?,
        };
        trim_in_place(&mut text);
        Ok(SmsText::from_string(text))
    }

    /// `name` rendered by tera, untrimmed.
    fn render_tera(&self, name: &str, ctx: RenderContext) -> Result<String, TemplateError> {
        let mut tera_ctx = ctx.into_tera();
        if name.ends_with(NO_NIK_SUFFIX) {
            tera_ctx.remove(Var::NikAkhir.name());
        }
        self.tera
            .render(name, &tera_ctx)
            .map_err(|e| TemplateError::Render {
                name: name.to_owned(),
                reason: error_chain(&e),
            })
    }

    /// The check to run when a campaign is created, before anything is
    /// queued: the template exists, renders for [`RenderContext::sample`],
    /// its source and output are GSM-7, the output needs at most
    /// `max_segments` segments and every URL- or domain-looking token in
    /// source or output is [`ALLOWED_DOMAIN`]. Returns the sample rendering,
    /// for the operator to review.
    ///
    /// The source must be GSM-7 although [`SmsText::new`] would transliterate
    /// a curly quote: authors should see what will be sent.
    pub fn validate(&self, name: &str, max_segments: u32) -> Result<SmsText, TemplateError> {
        let source = self.sources.get(name).ok_or_else(|| self.unknown(name))?;
        if let Some(ch) = source.chars().find(|&c| !is_gsm7_char(c)) {
            return Err(TemplateError::NotGsm7 {
                name: name.to_owned(),
                ch,
            });
        }
        self.check_links(name, source)?;

        let text = self.render(name, &RenderContext::sample())?;
        if text.as_str().is_empty() {
            return Err(TemplateError::Render {
                name: name.to_owned(),
                reason: "renders to an empty message".to_owned(),
            });
        }
        if matches!(text.encoding(), Encoding::Ucs2) {
            // A value in the sample context is not GSM-7: report which one.
            let ch = text
                .as_str()
                .chars()
                .find(|&c| !is_gsm7_char(c))
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(TemplateError::NotGsm7 {
                name: name.to_owned(),
                ch,
            });
        }
        self.check_links(name, text.as_str())?;
        let segments = text.segments();
        if segments > max_segments {
            return Err(TemplateError::TooLong {
                name: name.to_owned(),
                segments,
                max: max_segments,
            });
        }
        Ok(text)
    }

    /// Parses all templates into one Tera instance. Each source is parsed
    /// before it gets here, so an error is about how templates relate
    /// (`extends` a missing parent, a missing macro file).
    fn from_sources(sources: BTreeMap<String, String>) -> Result<Renderer, String> {
        let mut tera = tera::Tera::default();
        // SMS is not HTML: `&` must stay `&`, not become `&amp;`.
        tera.autoescape_on(vec![]);
        // Tera's `get_env` would let a template file put a process secret
        // (a gateway key) into messages sent to strangers.
        tera.register_function("get_env", disabled_get_env);
        tera.add_raw_templates(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())))
            .map_err(|e| error_chain(&e))?;
        let plain = tera
            .templates
            .iter()
            .filter_map(|(name, template)| {
                let plain = Plain::of(template, name.ends_with(NO_NIK_SUFFIX))?;
                Some((name.clone(), plain))
            })
            .collect();
        Ok(Renderer {
            tera,
            sources,
            plain,
        })
    }

    /// Finds the first link in `text` that is not [`ALLOWED_DOMAIN`].
    fn check_links(&self, name: &str, text: &str) -> Result<(), TemplateError> {
        match foreign_link(text) {
            Some(domain) => Err(TemplateError::ForeignLink {
                name: name.to_owned(),
                domain,
            }),
            None => Ok(()),
        }
    }

    fn unknown(&self, name: &str) -> TemplateError {
        TemplateError::Unknown {
            name: name.to_owned(),
            available: self.names().join(", "),
        }
    }
}

/// Replacement for Tera's `get_env`: always an error.
fn disabled_get_env(
    _args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    Err(tera::Error::msg(
        "get_env is disabled: SMS templates may not read the environment",
    ))
}

fn builtin_sources() -> BTreeMap<String, String> {
    BUILTIN
        .iter()
        .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
        .collect()
}

/// Reads every `*.tera` file directly in `dir` (not hidden, not in
/// subdirectories), parsing each so a syntax error names its file.
fn read_override_dir(dir: &Path) -> Result<BTreeMap<String, String>, TemplateError> {
    let load_err = |path: &Path, reason: String| TemplateError::Load {
        dir: path.display().to_string(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(load_err(dir, e.to_string())),
    };
    let mut found = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| load_err(dir, e.to_string()))?;
        let path = entry.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue; // not UTF-8, so it cannot be named by a campaign anyway
        };
        let Some(name) = file_name.strip_suffix(TEMPLATE_SUFFIX) else {
            continue;
        };
        if name.is_empty() || name.starts_with('.') || path.is_dir() {
            continue; // editor swap files, `.tera` directories
        }
        let source = std::fs::read_to_string(&path).map_err(|e| load_err(&path, e.to_string()))?;
        // Parsed alone so the error can name the file; the whole set is parsed
        // again, together, in `from_sources`. `Template::new` is what Tera's
        // own `add_raw_template` calls (public, though documented as internal).
        tera::Template::new(name, Some(path.display().to_string()), &source)
            .map_err(|e| load_err(&path, error_chain(&e)))?;
        found.insert(name.to_owned(), source);
    }
    Ok(found)
}

/// Tera puts the useful part (line, column, what was expected) in the error's
/// sources; the top-level message only says "Failed to parse".
fn error_chain(e: &tera::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    msg
}

/// Characters that cannot be seen but would still cost (and turn the message
/// UCS-2): zero-width spaces and joiners, bidi controls, soft hyphen, BOM.
/// They arrive in names copied from chat apps and word processors.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Makes a record value safe to print in an SMS: control characters (C0, DEL,
/// C1) and other whitespace become one space, invisible characters vanish,
/// and the ends are trimmed. A newline in a name would otherwise break the
/// message's layout; a NUL could truncate it at some gateways.
fn clean_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending_space = false;
    for c in value.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = true;
        } else if !is_invisible(c) {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    out
}

/// `s.trim()`, in place: a template file's closing newline goes without
/// copying the message.
fn trim_in_place(s: &mut String) {
    s.truncate(s.trim_end().len());
    let start = s.len() - s.trim_start().len();
    s.drain(..start);
}

/// A record value as a message prints it: [`clean_value`] (control
/// characters and line breaks out), then
/// [`to_gsm7_data`](crate::domain::sms::to_gsm7_data) (GSM-7 only, so the
/// value cannot make the message UCS-2), without copying a value that is
/// plain already.
fn data_value(value: String) -> String {
    // Nearly every value is printable GSM-7 ASCII, single-spaced and
    // trimmed already: both passes would return it unchanged, and this
    // check is one loop over its bytes instead of two over its characters.
    if is_printable_gsm7_ascii(&value) && !value.contains("  ") && value.trim() == value {
        return value;
    }
    into_gsm7_data(clean_value(&value))
}

/// Shortens a cleaned name to at most `max` characters, cutting at a word
/// boundary ("Dr. Raden Ajeng Kartini Sosroningrat" → "Dr. Raden Ajeng") and
/// dropping a dangling comma left by a cut before a degree ("Siti Nur Rahayu,
/// S.Kep., Ners" → "Siti Nur Rahayu"); a first word longer than `max` is cut
/// hard.
fn short_name(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    let mut out = String::new();
    let mut len = 0;
    for word in name.split(' ') {
        let sep = usize::from(!out.is_empty());
        let word_len = word.chars().count();
        if len + sep + word_len > max {
            break;
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(word);
        len += sep + word_len;
    }
    let trimmed = out.trim_end_matches([',', ';', ':', '-', ' ']);
    if trimmed.is_empty() {
        name.chars()
            .take(max)
            .collect::<String>()
            .trim_end()
            .to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The last `n` ASCII digits of `value`, ignoring anything else: a full NIK
/// passed by mistake still shows only its tail.
fn last_digits(value: String, n: usize) -> String {
    if value.len() == n && value.bytes().all(|b| b.is_ascii_digit()) {
        return value;
    }
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    value
        .chars()
        .filter(char::is_ascii_digit)
        .skip(digits.saturating_sub(n))
        .collect()
}

/// Characters that can be part of a URL-looking token in prose. Unicode
/// letters count, so "pedulilindungé.id" is seen as a (foreign) domain
/// rather than split into harmless pieces.
fn is_url_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '.' | '-' | '_' | '~' | '/' | ':' | '?' | '#' | '@' | '%' | '=' | '&' | '+'
        )
}

/// `host` has the shape of a domain name: two or more labels of letters,
/// digits or hyphens, the last all letters (a TLD, not "08.00").
fn is_domain_like(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic))
}

/// The first link in `text` whose host is not [`ALLOWED_DOMAIN`] (or its
/// `www.`), if any. A token is a link if it has a scheme (`http://`,
/// `https://`, any `x://`), starts with `www.`, or its host part looks like
/// a domain (`bit.ly/x`, `wa.me`, `info@kemkes.go.id`). The host is taken
/// after any `@`, so `http://pedulilindungi.id@evil.com` is caught.
///
/// This fails closed: a template abbreviation written without a space after
/// its dot ("S.Kep") looks like a domain and is rejected; rephrase it. Names
/// are not checked (they are data), only template sources and the sample.
fn foreign_link(text: &str) -> Option<String> {
    for raw in text.split(|c: char| !is_url_char(c)) {
        let token = raw.trim_matches(|c: char| !c.is_alphanumeric());
        if token.is_empty() {
            continue;
        }
        let lower = token.to_lowercase();
        let (rest, has_scheme) = match lower.find("://") {
            Some(i) => (&lower[i + 3..], true),
            None => (lower.as_str(), false),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        let host = host
            .split(':')
            .next()
            .unwrap_or_default()
            .trim_end_matches('.');
        let is_link = has_scheme || host.starts_with("www.") || is_domain_like(host);
        if !is_link {
            continue;
        }
        let official = host == ALLOWED_DOMAIN || host.strip_prefix("www.") == Some(ALLOWED_DOMAIN);
        if !official {
            return Some(if host.is_empty() {
                lower
            } else {
                host.to_owned()
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A made-up but well-formed NIK (DKI Jakarta, Jakarta Selatan, a woman
    /// born 5 July 1985); the sample context carries its last four digits.
    const SAMPLE_NIK: &str = "3174054507850012";

    fn ctx_named(name: &str) -> RenderContext {
        RenderContext {
            full_name: name.to_owned(),
            ..RenderContext::sample()
        }
    }

    #[test]
    fn a_no_nik_template_never_shows_nik_digits() {
        let r = with_templates(&[
            (
                "leaky_tanpa_nik",
                "{{ nama_pendek }} NIK ****{{ nik_akhir }}",
            ),
            ("leaky", "{{ nama_pendek }} NIK ****{{ nik_akhir }}"),
        ]);
        let ctx = RenderContext {
            nik_last4: "4321".into(),
            ..RenderContext::sample()
        };
        // The same source renders the digits under another name…
        assert!(r.render("leaky", &ctx).unwrap().as_str().contains("4321"));
        // …and fails, rather than leak, as a `_tanpa_nik` template.
        assert!(matches!(
            r.render("leaky_tanpa_nik", &ctx),
            Err(TemplateError::Render { .. })
        ));
        let text = r.render("registrasi_ulang_tanpa_nik", &ctx).unwrap();
        assert!(!text.as_str().contains("4321") && !text.as_str().contains("NIK"));
    }

    /// A renderer holding the built-ins plus the given extra templates.
    fn with_templates(templates: &[(&str, &str)]) -> Renderer {
        let mut sources = builtin_sources();
        for (name, source) in templates {
            sources.insert((*name).to_owned(), (*source).to_owned());
        }
        Renderer::from_sources(sources).expect("test templates parse")
    }

    fn write(dir: &Path, file: &str, content: &[u8]) {
        std::fs::create_dir_all(dir.join("sms")).unwrap();
        std::fs::write(dir.join("sms").join(file), content).unwrap();
    }

    #[test]
    fn builtin_templates_validate_in_one_segment() {
        let renderer = Renderer::builtin();
        assert_eq!(
            renderer.names(),
            [
                "pengingat",
                "registrasi_ulang",
                "registrasi_ulang_tanpa_nik",
                "undangan_registrasi"
            ]
        );
        for name in renderer.names() {
            let text = renderer.validate(&name, 1).unwrap();
            assert!(matches!(text.encoding(), Encoding::Gsm7), "{name}");
            assert!(text.as_str().contains("pedulilindungi.id"), "{name}");
            assert!(text.as_str().contains("*119#"), "{name}");
            assert!(!text.as_str().starts_with("PEDULICOVID"), "{name}");
            assert_eq!(text.as_str(), text.as_str().trim(), "{name}");
        }
    }

    #[test]
    fn sample_renderings_are_the_documented_ones() {
        // Keep in step with the table in the module docs.
        let expected = [
            ("pengingat", 146, "Siti Rahayu (NIK ****0012), Anda belum registrasi Vaksin COVID-19 nakes. Ayo daftar & pilih jadwal/lokasi di pedulilindungi.id atau *119#. Gratis."),
            ("registrasi_ulang", 144, "Siti Rahayu (NIK ****0012), nomor ini terdaftar untuk Vaksin COVID-19 nakes. Pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis."),
            ("registrasi_ulang_tanpa_nik", 137, "Siti Rahayu, nomor ini didaftarkan ulang untuk Vaksin COVID-19 nakes. Pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis."),
            ("undangan_registrasi", 147, "Siti Rahayu (NIK ****0012), Anda nakes calon penerima Vaksin COVID-19. Daftar & pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis."),
        ];
        let renderer = Renderer::builtin();
        for (name, units, text) in expected {
            let sms = renderer.render(name, &RenderContext::sample()).unwrap();
            println!(
                "{name}: {} units, {} segment(s)\n  {}",
                sms.units(),
                sms.segments(),
                sms.as_str()
            );
            assert_eq!(sms.as_str(), text, "{name}");
            assert_eq!(sms.units(), units, "{name}");
        }
    }

    #[test]
    fn typical_names_up_to_25_characters_fit_one_segment() {
        let renderer = Renderer::builtin();
        let names = [
            "Ni Luh Putu Ayu Saraswati",      // 25, cut to 20 at a word
            "Muhammad Ma\u{2019}ruf Hidayat", // curly apostrophe, transliterated
            "Wahyuningsihrahmawatiyu",        // one 23-character word: hard cut
            "Siti Rahayu, S.Kep., Ners",
        ];
        for name in renderer.names() {
            for worker in names {
                let sms = renderer.render(&name, &ctx_named(worker)).unwrap();
                assert!(
                    matches!(sms.encoding(), Encoding::Gsm7),
                    "{name} / {worker}"
                );
                assert_eq!(sms.segments(), 1, "{name} / {worker}: {}", sms.as_str());
            }
        }
    }

    /// Names as they really arrive (WhatsApp display names, Word, phone
    /// keyboards), with what `nama_pendek` prints for them.
    const REAL_NAMES: &[(&str, &str)] = &[
        ("Muhammad Ma\u{2019}ruf", "Muhammad Ma'ruf"), // curly apostrophe
        ("\u{201C}Ucok\u{201D} Siregar", "\"Ucok\" Siregar"), // curly quotes
        ("Tri\u{2013}Wahyuni \u{2014} Bidan", "Tri-Wahyuni - Bidan"), // dashes
        ("Siti Rahayu\u{2026}", "Siti Rahayu..."),     // ellipsis
        ("Siti\u{00A0}Rahayu\u{202F}", "Siti Rahayu"), // no-break spaces
        ("Dewi Lestari \u{1F60A}\u{1F489}", "Dewi Lestari"), // emoji
        (
            "dr. Ani \u{1F469}\u{200D}\u{2695}\u{FE0F} \u{1F1EE}\u{1F1E9}",
            "dr. Ani",
        ), // ZWJ, flag
        ("Budi [Puskesmas]", "Budi [Puskesmas]"),      // extension characters
        ("Hélène Çakır", "Hélène Çakir"),              // GSM-7 accents kept, ı folded
        ("François Nguyễn", "Francois Nguyen"),        // folded to base letters
    ];

    #[test]
    fn real_world_names_render_gsm7_in_one_segment() {
        let renderer = Renderer::builtin();
        for &(raw, shown) in REAL_NAMES {
            for template in renderer.names() {
                let sms = renderer.render(&template, &ctx_named(raw)).unwrap();
                assert_eq!(sms.encoding(), Encoding::Gsm7, "{template} / {raw:?}");
                assert_eq!(sms.segments(), 1, "{template} / {raw:?}");
                assert!(
                    sms.as_str().starts_with(&format!("{shown}, "))
                        || sms.as_str().starts_with(&format!("{shown} (NIK")),
                    "{template} / {raw:?}: {}",
                    sms.as_str()
                );
            }
        }
        // Every value, not only the name, is reduced before rendering.
        let all = with_templates(&[(
            "semua",
            "{{ nama }}|{{ profesi }}|{{ provinsi }}|{{ fasyankes }}",
        )]);
        let ctx = RenderContext {
            full_name: "Ani \u{1F600}".into(),
            profession: "Bidan \u{2013} Senior \u{2B50}".into(),
            province_name: "Sulawesi Selatan \u{1F334}".into(),
            facility_code: "P31\u{2011}74".into(),
            ..RenderContext::sample()
        };
        assert_eq!(
            all.render("semua", &ctx).unwrap().as_str(),
            "Ani|Bidan - Senior|Sulawesi Selatan|P31-74"
        );
    }

    #[test]
    fn a_name_with_no_letter_left_renders_the_fallback_greeting() {
        let renderer = Renderer::builtin();
        for raw in [
            "\u{1F600}\u{1F600}",
            "\u{738B}\u{5C0F}\u{660E}",
            "-",
            " \u{200B} ",
        ] {
            let undangan = renderer
                .render("undangan_registrasi", &ctx_named(raw))
                .unwrap();
            assert_eq!(
                undangan.as_str(),
                "Bapak/Ibu (NIK ****0012), Anda nakes calon penerima Vaksin COVID-19. Daftar & pilih jadwal/lokasi vaksin di pedulilindungi.id atau *119#. Gratis.",
                "{raw:?}"
            );
            let tanpa_nik = renderer
                .render("registrasi_ulang_tanpa_nik", &ctx_named(raw))
                .unwrap();
            assert!(
                tanpa_nik.as_str().starts_with("Bapak/Ibu, nomor ini"),
                "{raw:?}"
            );
            assert_eq!(
                (undangan.encoding(), undangan.segments()),
                (Encoding::Gsm7, 1)
            );
        }
        // A name that keeps a letter is never replaced.
        let sms = renderer
            .render("pengingat", &ctx_named("\u{1F600} A \u{1F600}"))
            .unwrap();
        assert!(sms.as_str().starts_with("A (NIK"), "{}", sms.as_str());
    }

    #[test]
    fn long_names_and_values_stay_within_two_segments() {
        let long = RenderContext {
            full_name: "Prof. Dr. dr. Raden Mas Haryo Bagus Kusumonegoro Wicaksono Adiningrat, Sp.PD-KPTI, FINASIM".to_owned(),
            nik_last4: "0012".to_owned(),
            profession: "Tenaga Teknis Kefarmasian".to_owned(),
            facility_code: "P3174050101".to_owned(),
            province_name: "Kepulauan Bangka Belitung".to_owned(),
        };
        let renderer = Renderer::builtin();
        for name in renderer.names() {
            let sms = renderer.render(&name, &long).unwrap();
            assert!(sms.segments() <= 2, "{name}: {}", sms.as_str());
            // `nama_pendek` keeps the built-ins in one segment even here.
            assert_eq!(sms.segments(), 1, "{name}: {}", sms.as_str());
        }
        let all_values = with_templates(&[(
            "semua",
            "{{ nama }} ({{ profesi }}, {{ fasyankes }}, {{ provinsi }}), NIK ****{{ nik_akhir }}: Vaksin COVID-19 di pedulilindungi.id atau *119#.",
        )]);
        assert!(all_values.render("semua", &long).unwrap().segments() <= 2);
    }

    #[test]
    fn values_are_printed_literally_never_escaped_or_evaluated() {
        let renderer = with_templates(&[("nama", "Halo {{ nama }}!")]);
        let name = "<b>Ani</b> & {{ x }} {% if true %}ya{% endif %} {# c #}";
        let sms = renderer.render("nama", &ctx_named(name)).unwrap();
        assert_eq!(sms.as_str(), format!("Halo {name}!"));
    }

    #[test]
    fn control_characters_in_values_become_single_spaces() {
        let renderer = with_templates(&[(
            "semua",
            "[{{ nama }}|{{ nama_pendek }}|{{ profesi }}|{{ provinsi }}|{{ fasyankes }}]",
        )]);
        let ctx = RenderContext {
            full_name: "Siti\nRahayu\t\0Putri\r\n\u{1b}[31m\u{7f}\u{85}\u{9b}X".to_owned(),
            nik_last4: "0012".to_owned(),
            profession: "\tPerawat\n".to_owned(),
            facility_code: "P31\u{0}74".to_owned(),
            province_name: "DKI\u{200B} Jakarta\u{FEFF}".to_owned(),
        };
        let sms = renderer.render("semua", &ctx).unwrap();
        assert_eq!(
            sms.as_str(),
            "[Siti Rahayu Putri [31m X|Siti Rahayu Putri|Perawat|DKI Jakarta|P31 74]"
        );
        assert!(!sms.as_str().chars().any(char::is_control));
    }

    #[test]
    fn only_the_last_four_nik_digits_appear() {
        let renderer = with_templates(&[("nik", "NIK ****{{ nik_akhir }}")]);
        for name in renderer.names() {
            let sms = renderer.render(&name, &RenderContext::sample()).unwrap();
            assert!(!sms.as_str().contains(SAMPLE_NIK), "{name}");
            assert!(!sms.as_str().contains(&SAMPLE_NIK[..12]), "{name}");
        }
        // Even a full NIK handed over by mistake shows only its tail.
        let ctx = RenderContext {
            nik_last4: SAMPLE_NIK.to_owned(),
            ..RenderContext::sample()
        };
        assert_eq!(
            renderer.render("nik", &ctx).unwrap().as_str(),
            "NIK ****0012"
        );
        assert_eq!(&SAMPLE_NIK[12..], RenderContext::sample().nik_last4);
    }

    #[test]
    fn unknown_template_lists_the_available_ones() {
        let renderer = Renderer::builtin();
        for err in [
            renderer
                .render("undangan", &RenderContext::sample())
                .unwrap_err(),
            renderer.validate("undangan", 1).unwrap_err(),
        ] {
            match &err {
                TemplateError::Unknown { name, available } => {
                    assert_eq!(name, "undangan");
                    assert_eq!(
                        available,
                        "pengingat, registrasi_ulang, registrasi_ulang_tanpa_nik, undangan_registrasi"
                    );
                }
                other => panic!("expected Unknown, got {other:?}"),
            }
            assert!(err.to_string().contains("undangan_registrasi"));
        }
        assert!(!renderer.has("undangan"));
        assert!(renderer.has("pengingat"));
    }

    #[test]
    fn an_override_directory_replaces_a_builtin_and_adds_templates() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "pengingat.tera",
            b"Ingat, {{ nama_pendek }}: pedulilindungi.id\n",
        );
        write(dir.path(), "baru.tera", b"Baru {{ nik_akhir }}");
        write(dir.path(), "catatan.txt", b"{{ rusak"); // not a template: ignored
        write(dir.path(), ".pengingat.tera.swp", b"{{ rusak"); // editor leftovers
        let renderer = Renderer::load(Some(dir.path())).unwrap();
        assert_eq!(
            renderer.names(),
            [
                "baru",
                "pengingat",
                "registrasi_ulang",
                "registrasi_ulang_tanpa_nik",
                "undangan_registrasi"
            ]
        );
        let sms = renderer
            .render("pengingat", &RenderContext::sample())
            .unwrap();
        assert_eq!(sms.as_str(), "Ingat, Siti Rahayu: pedulilindungi.id");
        assert_eq!(renderer.validate("baru", 1).unwrap().as_str(), "Baru 0012");
    }

    #[test]
    fn a_missing_directory_means_builtins_only() {
        let dir = tempfile::tempdir().unwrap();
        let builtin = Renderer::builtin().names();
        assert_eq!(Renderer::load(None).unwrap().names(), builtin);
        assert_eq!(Renderer::load(Some(dir.path())).unwrap().names(), builtin);
        let gone = dir.path().join("tidak-ada");
        assert_eq!(Renderer::load(Some(&gone)).unwrap().names(), builtin);
    }

    #[test]
    fn a_broken_template_file_is_a_load_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "rusak.tera", b"Halo {{ nama_pendek ");
        let err = Renderer::load(Some(dir.path())).unwrap_err();
        match &err {
            TemplateError::Load { dir: file, reason } => {
                assert!(file.ends_with("rusak.tera"), "{file}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected Load, got {other:?}"),
        }
        assert!(err.to_string().contains("rusak.tera"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "biner.tera", b"Halo \xff\xfe");
        let err = Renderer::load(Some(dir.path())).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Load { dir, .. } if dir.ends_with("biner.tera")),
            "{err:?}"
        );
    }

    #[test]
    fn a_template_extending_a_missing_parent_is_a_load_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "anak.tera", b"{% extends \"induk\" %}");
        let err = Renderer::load(Some(dir.path())).unwrap_err();
        assert!(matches!(err, TemplateError::Load { .. }), "{err:?}");
    }

    #[test]
    fn links_other_than_pedulilindungi_fail_validation() {
        let cases = [
            ("Daftar di bit.ly/x sekarang", "bit.ly"),
            (
                "Daftar di http://pedulilindungia.com",
                "pedulilindungia.com",
            ),
            ("Cek https://pedulilindingi.id/daftar.", "pedulilindingi.id"),
            ("Hubungi wa.me/6281110500567", "wa.me"),
            ("Buka www.kemkes.go.id", "www.kemkes.go.id"),
            ("Buka http://pedulilindungi.id@evil.com", "evil.com"),
            (
                "Buka pedulilindungi.id.evil.com/x",
                "pedulilindungi.id.evil.com",
            ),
            ("Buka https://1.2.3.4/x", "1.2.3.4"),
            ("Cek PEDULILINDUNGI.ID.XYZ", "pedulilindungi.id.xyz"),
            ("Cek pedulilindungé.id", "pedulilindungé.id"),
            ("Tanya info@kemkes.go.id", "kemkes.go.id"),
            (
                "{% if provinsi == \"Aceh\" %}s.id/a{% endif %}pedulilindungi.id",
                "s.id",
            ),
        ];
        for (source, domain) in cases {
            let renderer = with_templates(&[("t", source)]);
            match renderer.validate("t", 1) {
                Err(TemplateError::ForeignLink { domain: found, .. }) => {
                    assert_eq!(found, domain, "{source}")
                }
                other => panic!("{source}: expected ForeignLink, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_official_domain_and_ordinary_prose_pass_the_link_check() {
        for text in [
            "Ayo cek di: PeduliLindungi.id.",
            "https://pedulilindungi.id/vaksin?x=1",
            "www.pedulilindungi.id",
            "(pedulilindungi.id), *119# atau SMS 1199",
            "Jadwal jam 08.00-18.00 WIB, a.n. Kemenkes. Vaksin COVID-19. Gratis.",
            "NIK ****0012, dr. Siti Rahayu",
        ] {
            assert_eq!(foreign_link(text), None, "{text}");
        }
    }

    #[test]
    fn a_curly_quote_in_the_source_fails_as_not_gsm7() {
        let renderer =
            with_templates(&[("t", "Vaksin \u{201c}gratis\u{201d} di pedulilindungi.id")]);
        match renderer.validate("t", 1) {
            Err(TemplateError::NotGsm7 { name, ch }) => {
                assert_eq!(name, "t");
                assert_eq!(ch, '\u{201c}');
            }
            other => panic!("expected NotGsm7, got {other:?}"),
        }
        // An emoji in the source is caught the same way.
        let renderer = with_templates(&[("t", "Ayo vaksin \u{1F489}")]);
        assert!(matches!(
            renderer.validate("t", 1),
            Err(TemplateError::NotGsm7 {
                ch: '\u{1F489}',
                ..
            })
        ));
    }

    #[test]
    fn a_template_over_the_segment_limit_is_too_long() {
        let long = format!("{{{{ nama }}}} {} pedulilindungi.id", "x".repeat(160));
        let renderer = with_templates(&[("t", long.as_str())]);
        match renderer.validate("t", 1) {
            Err(TemplateError::TooLong { segments, max, .. }) => {
                assert_eq!((segments, max), (2, 1));
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
        assert_eq!(renderer.validate("t", 2).unwrap().segments(), 2);
    }

    #[test]
    fn render_errors_are_reported_not_panicked() {
        let renderer = with_templates(&[
            ("t", "Halo {{ nik }}"),
            ("env", "{{ get_env(name=\"PATH\") }}"),
            ("kosong", "  {# hanya komentar #}\n"),
        ]);
        let err = renderer.validate("t", 1).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render { reason, .. } if reason.contains("nik")),
            "{err}"
        );
        let err = renderer
            .render("env", &RenderContext::sample())
            .unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render { reason, .. } if reason.contains("get_env is disabled")),
            "{err}"
        );
        let err = renderer.validate("kosong", 1).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render { reason, .. } if reason.contains("empty")),
            "{err}"
        );
    }

    #[test]
    fn short_names_cut_at_a_word_boundary() {
        let cases = [
            ("Siti Rahayu", "Siti Rahayu"),
            ("Dr. Raden Ajeng Kartini Sosroningrat", "Dr. Raden Ajeng"),
            ("Siti Rahayu, S.Kep., Ners", "Siti Rahayu, S.Kep."),
            ("Siti Nur Rahayu, S.Kep., Ners", "Siti Nur Rahayu"),
            ("Wahyuningsihrahmawatiyu Putri", "Wahyuningsihrahmawat"),
            ("Ni Luh Putu Ayu Saraswati", "Ni Luh Putu Ayu"),
            ("Ayu Saraswati Dewi P", "Ayu Saraswati Dewi P"), // exactly 20
            ("", ""),
        ];
        for (name, short) in cases {
            assert_eq!(short_name(name, SHORT_NAME_MAX_CHARS), short, "{name}");
        }
        let renderer = with_templates(&[("p", "{{ nama_pendek }}")]);
        let sms = renderer
            .render("p", &ctx_named("Dr. Raden Ajeng Kartini Sosroningrat"))
            .unwrap();
        assert_eq!(sms.as_str(), "Dr. Raden Ajeng");
    }

    /// Templates with a [`Plain`] form beyond the built-ins: every
    /// variable, whitespace control, comments, raw text, a variable twice.
    const PLAIN_EXTRAS: &[(&str, &str)] = &[
        (
            "all",
            "{# every variable #}\n{{nama}}|{{ nama_pendek }}|{{ nik_akhir }}|{{ profesi }}|{{ fasyankes }}|{{ provinsi }}\n",
        ),
        (
            "ws",
            "  {{- nama_pendek -}}  ,  {#- note -#} {{ provinsi -}}\n\n {% raw %}{{ nama }}{% endraw %} {{ nama }}{{ nama }}",
        ),
        ("bare_tanpa_nik", "{{ nama_pendek }}, {{ profesi }}."),
    ];

    #[test]
    fn plain_templates_skip_tera_and_the_others_do_not() {
        let r = with_templates(&[
            PLAIN_EXTRAS[0],
            PLAIN_EXTRAS[1],
            PLAIN_EXTRAS[2],
            ("filtered", "{{ nama | upper }}"),
            ("conditional", "{% if profesi %}{{ profesi }}{% endif %}"),
            ("unknown_variable", "{{ nama }} {{ alamat }}"),
            ("dotted", "{{ nama.x }}"),
            ("nik_tanpa_nik", "{{ nama }} {{ nik_akhir }}"),
        ]);
        for name in Renderer::builtin().names() {
            assert!(r.plain.contains_key(&name), "{name}");
        }
        for name in ["all", "ws", "bare_tanpa_nik"] {
            assert!(r.plain.contains_key(name), "{name}");
        }
        for name in [
            "filtered",
            "conditional",
            "unknown_variable",
            "dotted",
            "nik_tanpa_nik",
        ] {
            assert!(!r.plain.contains_key(name), "{name}");
        }
        // Tera renders those as before, and fails those it always failed.
        let ctx = RenderContext::sample();
        assert_eq!(r.render("filtered", &ctx).unwrap().as_str(), "SITI RAHAYU");
        assert_eq!(r.render("conditional", &ctx).unwrap().as_str(), "Perawat");
        for name in ["unknown_variable", "dotted", "nik_tanpa_nik"] {
            assert!(
                matches!(r.render(name, &ctx), Err(TemplateError::Render { .. })),
                "{name}"
            );
        }
        assert_eq!(
            r.render("ws", &ctx).unwrap().as_str(),
            "Siti Rahayu,DKI Jakarta{{ nama }} Siti RahayuSiti Rahayu"
        );
    }

    proptest! {
        #[test]
        fn cleaned_values_have_no_control_characters_and_short_names_fit(name in "\\PC{0,20}[\\x00-\\x1f\\x7f-\\x9f \\t\\n]{0,3}\\PC{0,30}") {
            let cleaned = clean_value(&name);
            prop_assert!(!cleaned.chars().any(char::is_control));
            prop_assert!(!cleaned.contains("  "));
            prop_assert_eq!(cleaned.trim(), cleaned.as_str());
            let short = short_name(&cleaned, SHORT_NAME_MAX_CHARS);
            prop_assert!(short.chars().count() <= SHORT_NAME_MAX_CHARS);
            prop_assert!(cleaned.starts_with(&short));
            prop_assert_eq!(cleaned.is_empty(), short.is_empty());
        }

        #[test]
        fn the_shortcut_for_plain_values_changes_nothing(value in "[ -~\t\n\r\x00\x7f]{0,30}|[ -~é\u{200B}]{0,20}") {
            prop_assert_eq!(data_value(value.clone()), into_gsm7_data(clean_value(&value)));
        }

        #[test]
        fn last_digits_keeps_the_last_n_digits(value in "[0-9]{3,5}|[0-9a-z ]{0,8}") {
            let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
            let expected: String = digits[digits.len().saturating_sub(4)..].iter().collect();
            prop_assert_eq!(last_digits(value, 4), expected);
        }

        #[test]
        fn the_plain_way_renders_what_tera_renders(
            name in "\\PC{0,40}|[A-Za-z ,.'-]{0,30}",
            nik in "[0-9]{4}|[0-9a-z ]{0,8}",
            profession in "\\PC{0,12}",
            facility in "[A-Z0-9 ]{0,12}",
            province in "\\PC{0,16}",
        ) {
            let r = with_templates(PLAIN_EXTRAS);
            let ctx = RenderContext {
                full_name: name,
                nik_last4: nik,
                profession,
                facility_code: facility,
                province_name: province,
            };
            for (template, plain) in &r.plain {
                let ours = plain.render(&ctx.clone().values(plain.wanted));
                let theirs = r.render_tera(template, ctx.clone()).unwrap();
                prop_assert_eq!(ours, theirs, "{}", template);
            }
        }

        #[test]
        fn any_name_renders_into_builtins_as_gsm7(name in "\\PC{0,60}") {
            // Two segments at most: twenty extension characters (2 units
            // each) in `nama_pendek` would still need the second.
            let renderer = Renderer::builtin();
            for template in renderer.names() {
                let sms = renderer.render(&template, &ctx_named(&name)).unwrap();
                prop_assert_eq!(sms.encoding(), Encoding::Gsm7, "{}: {:?}", template, name);
                prop_assert!(sms.segments() <= 2, "{}: {}", template, sms.as_str());
            }
        }

        #[test]
        fn any_gsm7_name_renders_into_builtins_within_two_segments(name in "[A-Za-z .,'\\[\\]{}|~^-]{0,60}") {
            let renderer = Renderer::builtin();
            for template in renderer.names() {
                let sms = renderer.render(&template, &ctx_named(&name)).unwrap();
                prop_assert!(sms.segments() <= 2, "{}: {}", template, sms.as_str());
            }
        }
    }
}
