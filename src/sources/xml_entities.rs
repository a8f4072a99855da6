//! The entities of a bus configuration's `<!DOCTYPE …>`, read the way
//! dbus-daemon's XML parser reads them, so that a policy written with
//! entities yields the rules the bus applies.
//!
//! dbus-daemon parses its configuration with expat and no handler for
//! external entities (`bus/config-loader-expat.c`). What expat then does,
//! and [`prepare`] reproduces:
//!
//! - internal general entities (`<!ENTITY name "…">` in the internal
//!   subset) are expanded, markup in them included; the first declaration
//!   of a name wins;
//! - external entities (`SYSTEM`/`PUBLIC`) are never read: a reference in
//!   content expands to nothing, a reference in an attribute value is an
//!   error;
//! - a reference to an undeclared entity is an error, unless the DOCTYPE
//!   names an external subset or the internal subset references a
//!   parameter entity (and the document is not `standalone="yes"`): then
//!   the reference is skipped, as if empty. Every bus configuration
//!   carries the standard `PUBLIC … busconfig.dtd` DOCTYPE, so there an
//!   unknown `&x;` simply vanishes from the value;
//! - declarations after a parameter-entity reference are not processed,
//!   and parameter entities are not expanded.
//!
//! The expansion itself is left to `roxmltree` (which expands internal
//! entities, markup and character references included): [`prepare`]
//! replaces the document's DOCTYPE by one holding only what expat would
//! declare (the internal entities, an empty one for each external or
//! skipped name), keeping every newline so line numbers in errors still
//! match. Before that, the size the document would have once every
//! reference is expanded is computed from the declarations, and a document
//! that would grow past [`MAX_EXPANDED_BYTES`] is refused with an error
//! rather than expanded: the nested-entity trick ("billion laughs") must
//! not cost a query its memory. (Expat refuses such documents too, past an
//! amplification factor of 100.) Hand-written: no maintained crate reads a
//! DTD's internal subset this way, and the subset's grammar is small.
use std::borrow::Cow;
use std::collections::HashMap;

/// How large a configuration may grow once its entities are expanded.
/// Real ones use no entities; this leaves room for any honest use while
/// bounding what one file can cost.
pub const MAX_EXPANDED_BYTES: u64 = 16 * 1024 * 1024;

/// Why a document's entities cannot be read as dbus-daemon would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityError {
    #[error("unterminated DOCTYPE")]
    Doctype,
    #[error(
        "entity references would expand the document to {bytes} bytes, more than the \
         {MAX_EXPANDED_BYTES} read; not parsed"
    )]
    TooLarge { bytes: u64 },
    #[error("entity &{0}; refers to itself")]
    Recursive(String),
    #[error("reference to external entity &{0}; in an attribute (dbus-daemon refuses the file)")]
    ExternalInAttribute(String),
}

/// A document ready for `roxmltree`, and the references that expand to
/// nothing, as expat reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared<'a> {
    pub text: Cow<'a, str>,
    /// `&name;` references that are skipped (external entities in
    /// content, undeclared names where expat tolerates them), each once,
    /// in order of first appearance.
    pub skipped: Vec<String>,
}

/// One general entity as declared: its literal value as written (quotes
/// excluded), or `None` for an external one.
#[derive(Debug)]
struct Entity<'a> {
    value: Option<&'a str>,
    quote: char,
}

/// What the DOCTYPE declares.
struct Doctype<'a> {
    /// Its byte range in the document.
    start: usize,
    end: usize,
    /// Undeclared references are skipped rather than refused.
    tolerant: bool,
    entities: HashMap<&'a str, Entity<'a>>,
    /// Declaration order, for the rewritten DOCTYPE.
    order: Vec<&'a str>,
}

const PREDEFINED: [&str; 5] = ["lt", "gt", "amp", "apos", "quot"];

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'-' | b'.') || c >= 0x80
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The index just past the `>` that ends a markup declaration starting at
/// `i`, quoted literals skipped.
fn skip_decl(b: &[u8], mut i: usize) -> Option<usize> {
    let mut quote = None;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c @ (b'"' | b'\'')) => quote = Some(c),
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn skip_name(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    i
}

/// Whether the XML declaration says `standalone="yes"`.
fn standalone(text: &str) -> bool {
    let Some(decl) = text.strip_prefix("<?xml") else {
        return false;
    };
    let decl = &decl[..decl.find("?>").unwrap_or(decl.len())];
    decl.split("standalone")
        .nth(1)
        .map(|rest| {
            let rest = rest.trim_start().trim_start_matches('=').trim_start();
            rest.starts_with("\"yes\"") || rest.starts_with("'yes'")
        })
        .unwrap_or(false)
}

/// Finds the DOCTYPE in the prolog and reads its internal subset. `Ok(None)`
/// when there is none.
fn doctype(text: &str) -> Result<Option<Doctype<'_>>, EntityError> {
    let b = text.as_bytes();
    let mut i = 0;
    // Only the prolog may hold a DOCTYPE: skip blanks, PIs and comments.
    loop {
        i = skip_space(b, i);
        let rest = &b[i..];
        if rest.starts_with(b"<?") {
            i += find(rest, b"?>").ok_or(EntityError::Doctype)? + 2;
        } else if rest.starts_with(b"<!--") {
            i += find(rest, b"-->").ok_or(EntityError::Doctype)? + 3;
        } else if rest.starts_with(b"<!DOCTYPE") {
            break;
        } else {
            return Ok(None);
        }
    }
    let start = i;
    i = skip_name(b, skip_space(b, start + "<!DOCTYPE".len()));
    i = skip_space(b, i);
    let mut tolerant = b[i..].starts_with(b"SYSTEM") || b[i..].starts_with(b"PUBLIC");
    let mut entities = HashMap::new();
    let mut order = Vec::new();
    // Up to the internal subset or the end.
    let mut quote = None;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(EntityError::Doctype);
        };
        i += 1;
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => {
                return Ok(Some(Doctype {
                    start,
                    end: i,
                    tolerant,
                    entities,
                    order,
                }))
            }
            (None, b'[') => break,
            _ => {}
        }
    }
    // The internal subset.
    let mut processing = true;
    loop {
        i = skip_space(b, i);
        let rest = &b[i..];
        if rest.is_empty() {
            return Err(EntityError::Doctype);
        } else if rest[0] == b']' {
            i += 1;
            break;
        } else if rest.starts_with(b"<!--") {
            i += find(rest, b"-->").ok_or(EntityError::Doctype)? + 3;
        } else if rest.starts_with(b"<?") {
            i += find(rest, b"?>").ok_or(EntityError::Doctype)? + 2;
        } else if rest.starts_with(b"<!ENTITY") {
            let end = skip_decl(b, i).ok_or(EntityError::Doctype)?;
            let mut j = skip_space(b, i + "<!ENTITY".len());
            if b.get(j) != Some(&b'%') && processing {
                let name_end = skip_name(b, j);
                let name = &text[j..name_end];
                j = skip_space(b, name_end);
                let entity = match b.get(j) {
                    Some(&q @ (b'"' | b'\'')) => {
                        let close = b[j + 1..end]
                            .iter()
                            .position(|c| *c == q)
                            .ok_or(EntityError::Doctype)?;
                        Entity {
                            value: Some(&text[j + 1..j + 1 + close]),
                            quote: q as char,
                        }
                    }
                    _ => Entity {
                        value: None,
                        quote: '"',
                    },
                };
                if !name.is_empty() && !entities.contains_key(name) {
                    entities.insert(name, entity);
                    order.push(name);
                }
            }
            i = end;
        } else if rest.starts_with(b"<!") {
            i = skip_decl(b, i).ok_or(EntityError::Doctype)?;
        } else if rest[0] == b'%' {
            // A parameter-entity reference: expat reads no declaration
            // after it, and tolerates undeclared names.
            i += find(rest, b";").ok_or(EntityError::Doctype)? + 1;
            tolerant = true;
            processing = false;
        } else {
            return Err(EntityError::Doctype);
        }
    }
    let end = skip_decl(b, i).ok_or(EntityError::Doctype)?;
    Ok(Some(Doctype {
        start,
        end,
        tolerant,
        entities,
        order,
    }))
}

/// Where a reference sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Content,
    Attribute,
}

/// Every general entity reference in markup text read from `Content`, with
/// where it sits; references inside comments, CDATA and processing
/// instructions are not references, and character references are not
/// entities.
fn references(text: &str) -> Vec<(&str, Place)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Text,
        Tag,
        Value(u8),
    }
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut state = State::Text;
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        match state {
            State::Text if rest.starts_with(b"<!--") => {
                i += find(rest, b"-->").map_or(rest.len(), |n| n + 3);
                continue;
            }
            State::Text if rest.starts_with(b"<![CDATA[") => {
                i += find(rest, b"]]>").map_or(rest.len(), |n| n + 3);
                continue;
            }
            State::Text if rest.starts_with(b"<?") => {
                i += find(rest, b"?>").map_or(rest.len(), |n| n + 2);
                continue;
            }
            State::Text if rest[0] == b'<' => state = State::Tag,
            State::Tag if rest[0] == b'>' => state = State::Text,
            State::Tag if matches!(rest[0], b'"' | b'\'') => state = State::Value(rest[0]),
            State::Value(q) if rest[0] == q => state = State::Tag,
            State::Text | State::Value(_) if rest[0] == b'&' && rest.get(1) != Some(&b'#') => {
                let end = skip_name(b, i + 1);
                if end > i + 1 && b.get(end) == Some(&b';') {
                    let place = if state == State::Text {
                        Place::Content
                    } else {
                        Place::Attribute
                    };
                    out.push((&text[i + 1..end], place));
                    i = end + 1;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The facts about each entity that decide how the document reads.
struct Sizes<'d, 'a> {
    doctype: &'d Doctype<'a>,
    /// Expanded length of each entity's replacement text.
    len: HashMap<&'a str, u64>,
    /// Whether using the entity in content leads to an external reference
    /// in an attribute (through markup in its replacement text).
    bad: HashMap<&'a str, Option<String>>,
    /// Whether expanding the entity reaches an external entity.
    external: HashMap<&'a str, bool>,
    busy: Vec<&'a str>,
}

impl<'a> Sizes<'_, 'a> {
    fn expanded_len(&mut self, name: &'a str) -> Result<u64, EntityError> {
        if let Some(&n) = self.len.get(name) {
            return Ok(n);
        }
        let Some(value) = self.doctype.entities.get(name).and_then(|e| e.value) else {
            return Ok(0); // external or undeclared: expands to nothing
        };
        if self.busy.contains(&name) {
            return Err(EntityError::Recursive(name.to_string()));
        }
        self.busy.push(name);
        let mut n = value.len() as u64;
        for (r, _) in references(value) {
            let sub = self.expanded_len(r)?;
            n = n.saturating_add(sub).saturating_sub(r.len() as u64 + 2);
            if n > MAX_EXPANDED_BYTES {
                break; // already too large; no need to add further
            }
        }
        self.busy.pop();
        self.len.insert(name, n);
        Ok(n)
    }

    fn reaches_external(&mut self, name: &'a str) -> bool {
        if let Some(&x) = self.external.get(name) {
            return x;
        }
        self.external.insert(name, false); // a loop is reported elsewhere
        let x = match self.doctype.entities.get(name) {
            Some(Entity { value: None, .. }) => true,
            Some(Entity { value: Some(v), .. }) => references(v)
                .into_iter()
                .any(|(r, _)| self.reaches_external(r)),
            None => false,
        };
        self.external.insert(name, x);
        x
    }

    /// The external entity an attribute would reach when `name` is used
    /// in content.
    fn external_in_attribute(&mut self, name: &'a str) -> Option<String> {
        if let Some(x) = self.bad.get(name) {
            return x.clone();
        }
        self.bad.insert(name, None);
        let value = self.doctype.entities.get(name).and_then(|e| e.value)?;
        let mut found = None;
        for (r, place) in references(value) {
            found = match place {
                Place::Attribute if self.reaches_external(r) => Some(r.to_string()),
                Place::Content => self.external_in_attribute(r),
                Place::Attribute => None,
            };
            if found.is_some() {
                break;
            }
        }
        self.bad.insert(name, found.clone());
        found
    }
}

/// Rewrites `text` so that `roxmltree` reads its entities as expat does
/// for dbus-daemon (see the module doc), or says why it cannot.
pub fn prepare(text: &str) -> Result<Prepared<'_>, EntityError> {
    let Some(dt) = doctype(text)? else {
        // No DOCTYPE, no declared entity: `roxmltree` refuses an unknown
        // reference, as expat does here.
        return Ok(Prepared {
            text: Cow::Borrowed(text),
            skipped: Vec::new(),
        });
    };
    let tolerant = dt.tolerant && !standalone(text);
    let body = &text[dt.end..];
    let refs = references(body);
    let mut sizes = Sizes {
        doctype: &dt,
        len: HashMap::new(),
        bad: HashMap::new(),
        external: HashMap::new(),
        busy: Vec::new(),
    };
    let mut total = text.len() as u64;
    let mut skipped: Vec<String> = Vec::new();
    let mut undeclared: Vec<&str> = Vec::new();
    let skip = |name: &str, skipped: &mut Vec<String>| {
        if !skipped.iter().any(|s| s == name) {
            skipped.push(name.to_string());
        }
    };
    // References inside entity values count as well: an undeclared name
    // may hide in one.
    let nested: Vec<&str> = dt
        .order
        .iter()
        .filter_map(|n| dt.entities[n].value)
        .flat_map(|v| references(v).into_iter().map(|(r, _)| r))
        .collect();
    for name in refs.iter().map(|(r, _)| *r).chain(nested) {
        if PREDEFINED.contains(&name) || dt.entities.contains_key(name) {
            continue;
        }
        if tolerant && !undeclared.contains(&name) {
            undeclared.push(name);
        }
    }
    for (name, place) in &refs {
        let len = sizes.expanded_len(name)?;
        total = total
            .saturating_add(len)
            .saturating_sub(name.len() as u64 + 2);
        if total > MAX_EXPANDED_BYTES {
            return Err(EntityError::TooLarge { bytes: total });
        }
        match place {
            Place::Attribute if sizes.reaches_external(name) => {
                return Err(EntityError::ExternalInAttribute(name.to_string()))
            }
            Place::Content => {
                if let Some(e) = sizes.external_in_attribute(name) {
                    return Err(EntityError::ExternalInAttribute(e));
                }
            }
            Place::Attribute => {}
        }
        let declared = dt.entities.get(name);
        if declared.is_some_and(|e| e.value.is_none())
            || (declared.is_none() && undeclared.contains(name))
        {
            skip(name, &mut skipped);
        }
    }
    let mut decls = String::from("<!DOCTYPE busconfig [");
    for name in &dt.order {
        let e = &dt.entities[name];
        match e.value {
            Some(v) => decls.push_str(&format!("<!ENTITY {name} {q}{v}{q}>", q = e.quote)),
            None => decls.push_str(&format!("<!ENTITY {name} \"\">")),
        }
    }
    for name in &undeclared {
        decls.push_str(&format!("<!ENTITY {name} \"\">"));
    }
    decls.push_str("]>");
    let mut out = String::with_capacity(text.len() + decls.len());
    out.push_str(&text[..dt.start]);
    out.push_str(&decls);
    // Keep the DOCTYPE's newlines so line numbers in errors still match.
    out.extend(text[dt.start..dt.end].chars().filter(|c| *c == '\n'));
    out.push_str(body);
    Ok(Prepared {
        text: Cow::Owned(out),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd""#;

    /// [`prepare`], owning its text.
    fn prep(s: impl AsRef<str>) -> Result<Prepared<'static>, EntityError> {
        prepare(s.as_ref()).map(|p| Prepared {
            text: Cow::Owned(p.text.into_owned()),
            skipped: p.skipped,
        })
    }

    fn doc(p: &Prepared) -> String {
        let d = roxmltree::Document::parse_with_options(
            &p.text,
            roxmltree::ParsingOptions {
                allow_dtd: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut out = String::new();
        for n in d.descendants() {
            if n.is_element() {
                out.push_str(&format!("<{}", n.tag_name().name()));
                for a in n.attributes() {
                    out.push_str(&format!(" {}={:?}", a.name(), a.value()));
                }
                out.push('>');
            } else if n.is_text() {
                out.push_str(n.text().unwrap_or_default());
            }
        }
        out
    }

    /// Each case checked against expat 2.5 with no external-entity
    /// handler, as dbus-daemon runs it.
    #[test]
    fn entities_read_as_expat_reads_them() {
        let p = prep("<!DOCTYPE b [<!ENTITY p \"<allow own='x'/>\">]>\n<b>&p;</b>").unwrap();
        assert_eq!(doc(&p), "<b><allow own=\"x\">");
        assert!(p.skipped.is_empty());
        // First declaration wins.
        let p = prep("<!DOCTYPE b [<!ENTITY a \"x\"><!ENTITY a \"y\">]><b>&a;</b>").unwrap();
        assert_eq!(doc(&p), "<b>x");
        // With an external subset, an unknown name is skipped, in content
        // and in attributes.
        let p = prep(format!("{PUBLIC}><b><allow own=\"org.&x;Foo\"/>a&y;b</b>")).unwrap();
        assert_eq!(doc(&p), "<b><allow own=\"org.Foo\">ab");
        assert_eq!(p.skipped, ["x", "y"]);
        // Without one, or when standalone, it is an error.
        let p = prep("<!DOCTYPE b><b><allow own=\"org.&x;Foo\"/></b>").unwrap();
        assert!(roxmltree::Document::parse(&p.text).is_err());
        let p = prep(format!(
            "<?xml version=\"1.0\" standalone='yes'?>{PUBLIC}><b>&x;</b>"
        ))
        .unwrap();
        assert!(p.skipped.is_empty());
        // An external entity is never read: nothing in content, an error
        // in an attribute.
        let p = prep(format!(
            "{PUBLIC} [<!ENTITY e SYSTEM \"file:///etc/shadow\">]><b>a&e;b</b>"
        ))
        .unwrap();
        assert_eq!(doc(&p), "<b>ab");
        assert_eq!(p.skipped, ["e"]);
        let e = prep(format!(
            "{PUBLIC} [<!ENTITY e SYSTEM \"file:///etc/shadow\">]><b><allow own=\"&e;\"/></b>"
        ))
        .unwrap_err();
        assert_eq!(e, EntityError::ExternalInAttribute("e".into()));
        // Declarations after a parameter-entity reference are not read.
        let p = prepare(
            "<!DOCTYPE b [<!ENTITY % pe SYSTEM \"x.ent\"> %pe; <!ENTITY z \"zz\">]><b>&z;&q;</b>",
        )
        .unwrap();
        assert_eq!(doc(&p), "<b>");
        assert_eq!(p.skipped, ["z", "q"]);
        // Comments and CDATA hold no references.
        let p = prep(format!("{PUBLIC}><b><!-- &x; --><![CDATA[&y;]]></b>")).unwrap();
        assert_eq!(doc(&p), "<b>&y;");
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn line_numbers_survive_the_rewrite() {
        let p = prep(format!("{PUBLIC} [\n<!ENTITY a \"1\">\n]>\n<b>&a;</b>")).unwrap();
        assert_eq!(p.text.lines().count(), 5);
        assert!(p.text.lines().nth(4).unwrap().contains("<b>&a;</b>"));
        assert_eq!(prep("<b/>").unwrap().text, "<b/>");
        assert_eq!(prep("<!DOCTYPE b ["), Err(EntityError::Doctype));
    }

    #[test]
    fn billion_laughs_is_refused_before_expansion() {
        let mut d = String::from("<!DOCTYPE b [<!ENTITY l0 \"lollollollollollollollollollol\">");
        for i in 1..9 {
            d.push_str(&format!(
                "<!ENTITY l{i} \"{}\">",
                format!("&l{};", i - 1).repeat(10)
            ));
        }
        d.push_str("]><b>&l8;</b>");
        match prep(&d) {
            Err(EntityError::TooLarge { bytes }) => assert!(bytes > MAX_EXPANDED_BYTES),
            other => panic!("{other:?}"),
        }
        // Wide rather than deep: many references to one large entity.
        let big = "x".repeat(64 * 1024);
        let d = format!(
            "<!DOCTYPE b [<!ENTITY b \"{big}\">]><b>{}</b>",
            "&b;".repeat(300)
        );
        assert!(matches!(prep(&d), Err(EntityError::TooLarge { .. })));
        // A loop is named.
        let d = "<!DOCTYPE b [<!ENTITY a \"&b;\"><!ENTITY b \"&a;\">]><b>&a;</b>";
        assert!(matches!(prep(d), Err(EntityError::Recursive(_))));
        // Modest honest use passes.
        let d = format!(
            "<!DOCTYPE b [<!ENTITY b \"{big}\">]><b>{}</b>",
            "&b;".repeat(10)
        );
        assert!(prep(&d).is_ok());
    }
}
