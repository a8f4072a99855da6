//! Bus configuration XML (`system.conf`, `session.conf`, `*-local.conf`,
//! the `system.d` / `session.d` fragments): which further directories and
//! files a bus reads.
//!
//! The compiled-in directory list is not the whole story: any config file
//! may add `<servicedir>`, `<includedir>` and `<include>`, and an attacker
//! who adds a servicedir in `system-local.conf` or drops a fragment into
//! `system.d` would hide a service from a scan of the standard directories
//! only. [`parse`] takes one file's bytes and lists what it points at, in
//! document order, relative paths resolved against the file's directory
//! as dbus-daemon does; [`discover`] follows includes and included
//! directories recursively inside a root, cycle-safe (files and directories
//! are visited once by device and inode) and depth-capped.
//!
//! The XML is read with `roxmltree`, its entities as dbus-daemon's expat
//! reads them (`sources::xml_entities`): internal entities expanded, and
//! bounded (a document that would grow past
//! `xml_entities::MAX_EXPANDED_BYTES` is an error, not parsed); external
//! ones never read; an unknown `&name;` skipped where expat skips it (the
//! standard bus-config DOCTYPE names an external DTD, so there it reads
//! as empty), which a skipped reference names in a non-fatal error.
//! Reads go through `sources::fs_safe`
//! (root-confined, regular files only, `O_NONBLOCK`, capped); unlike the
//! table's own content reads, symlinks are followed *inside the root* here,
//! because the bus follows them too and refusing would let a link hide a
//! servicedir. Which bus a file serves and what the directories hold is left
//! to `sources::service_dirs`.
//!
//! The same walk collects every `<allow>`/`<deny>` rule of every `<policy>`
//! in the order dbus-daemon merges them (`bus/config-parser.c` appends an
//! included file's rules at the point of inclusion), so `dbus_policy_rules`
//! sees exactly the files the bus reads, without a second XML reader.
use crate::sources::fs_safe::{self, FsError, Root};
use crate::sources::xml_entities::{self, EntityError};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Real configs are a few KiB; this leaves room for big policy files while
/// keeping one query's memory bounded.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// How deep `<include>`/`<includedir>` chains are followed.
pub const MAX_DEPTH: usize = 16;

/// One directive of a config file that makes the bus read more files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `<servicedir>`: `.service` files are loaded from it.
    ServiceDir(PathBuf),
    /// `<includedir>`: every `*.conf` in it is included.
    IncludeDir(PathBuf),
    /// `<include>`: one more config file.
    Include { path: PathBuf, ignore_missing: bool },
    /// `<standard_session_servicedirs/>`.
    StandardSessionServiceDirs,
    /// `<standard_system_servicedirs/>`.
    StandardSystemServiceDirs,
}

/// Which connections a `<policy>` applies to (`bus/policy.c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyContext {
    /// `context="default"`: every connection, applied first.
    Default,
    /// `context="mandatory"`: every connection, applied last.
    Mandatory,
    /// `user="…"` (a name, a uid or `*`).
    User(String),
    /// `group="…"`.
    Group(String),
    /// `at_console="true|false"`.
    AtConsole(bool),
    /// Anything dbus-daemon would refuse (no or an unknown context), as
    /// written.
    Invalid(String),
}

impl PolicyContext {
    /// Rank in dbus-daemon's order of application: default rules, then
    /// group, user, at_console, and mandatory rules last; within a rank,
    /// reading order. A later matching rule overrides an earlier one.
    pub fn rank(&self) -> u8 {
        match self {
            PolicyContext::Default => 0,
            PolicyContext::Group(_) => 1,
            PolicyContext::User(_) => 2,
            PolicyContext::AtConsole(_) => 3,
            PolicyContext::Mandatory => 4,
            PolicyContext::Invalid(_) => 5,
        }
    }
}

/// One `<allow>` or `<deny>` inside a `<policy>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub context: PolicyContext,
    pub allow: bool,
    /// Attributes as written, in document order.
    pub attributes: Vec<(String, String)>,
    /// Document position, to interleave with includes.
    pub pos: usize,
}

/// What one config file says, for discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusConfig {
    /// `<type>` (system, session, …), when present.
    pub bus_type: Option<String>,
    pub directives: Vec<Directive>,
    /// Document position of each directive (parallel to `directives`).
    pub directive_pos: Vec<usize>,
    /// Every policy rule, in document order.
    pub rules: Vec<PolicyRule>,
    /// `<listen>` addresses, in document order: how a running bus's socket
    /// is recognised in its clients' starter environment.
    pub listen: Vec<String>,
    /// Entity references that read as nothing, as dbus-daemon reads them
    /// (external entities, unknown names under an external DTD).
    pub skipped_entities: Vec<String>,
}

/// The `<policy>` element's context.
fn policy_context(node: roxmltree::Node) -> PolicyContext {
    if let Some(c) = node.attribute("context") {
        return match c {
            "default" => PolicyContext::Default,
            "mandatory" => PolicyContext::Mandatory,
            other => PolicyContext::Invalid(format!("context={other}")),
        };
    }
    if let Some(u) = node.attribute("user") {
        return PolicyContext::User(u.to_string());
    }
    if let Some(g) = node.attribute("group") {
        return PolicyContext::Group(g.to_string());
    }
    match node.attribute("at_console") {
        Some("true") => PolicyContext::AtConsole(true),
        Some("false") => PolicyContext::AtConsole(false),
        Some(other) => PolicyContext::Invalid(format!("at_console={other}")),
        None => PolicyContext::Invalid(String::new()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: not UTF-8", crate::sources::fs_safe::render_path(.path))]
    NotUtf8 { path: PathBuf },
    #[error("{}: {source}", crate::sources::fs_safe::render_path(.path))]
    Entities {
        path: PathBuf,
        #[source]
        source: EntityError,
    },
    /// Not fatal: the file was read, with these references as nothing.
    #[error("{}: entity references read as empty, as dbus-daemon reads them: {}", crate::sources::fs_safe::render_path(.path), .names.iter().map(|n| format!("&{n};")).collect::<Vec<_>>().join(" "))]
    SkippedEntities { path: PathBuf, names: Vec<String> },
    #[error("{}: XML: {source}", crate::sources::fs_safe::render_path(.path))]
    Xml {
        path: PathBuf,
        #[source]
        source: roxmltree::Error,
    },
    #[error("{}: larger than {MAX_CONFIG_BYTES} bytes; not parsed", crate::sources::fs_safe::render_path(.path))]
    TooLarge { path: PathBuf },
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: includes {}, which cannot be read: {source}", crate::sources::fs_safe::render_path(.path), crate::sources::fs_safe::render_path(.include))]
    Include {
        path: PathBuf,
        include: PathBuf,
        /// Kept whole (not as text): whether the OS refused the read or
        /// the file is absent decides whether a scan was blind.
        #[source]
        source: FsError,
    },
    #[error("{}: includes nested deeper than {MAX_DEPTH}; not followed", crate::sources::fs_safe::render_path(.path))]
    TooDeep { path: PathBuf },
}

impl ConfigError {
    /// The file the error is about (for an include: the including file).
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::NotUtf8 { path }
            | ConfigError::Entities { path, .. }
            | ConfigError::SkippedEntities { path, .. }
            | ConfigError::Xml { path, .. }
            | ConfigError::TooLarge { path }
            | ConfigError::Include { path, .. }
            | ConfigError::TooDeep { path } => path,
            ConfigError::Fs(e) => e.path(),
        }
    }
}

/// An element's text as dbus-daemon takes it (`bus/config-loader-expat.c`
/// gathers every piece of character data up to the next tag, and
/// `bus_config_parser_content` uses it as is): every text and CDATA child
/// joined, so a comment splitting a path does not cut it, and *not*
/// trimmed, so ` /opt/x ` is a path relative to the file's directory that
/// begins with a space, as the bus reads it. Empty when there is none
/// (dbus-daemon then sees no content at all).
fn content(node: roxmltree::Node) -> String {
    node.children()
        .filter(roxmltree::Node::is_text)
        .filter_map(|t| t.text())
        .collect()
}

/// Parses one config file. `path` is where it lives inside the root: its
/// directory anchors relative paths, and errors name it.
pub fn parse(bytes: &[u8], path: &Path) -> Result<BusConfig, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    let prepared = xml_entities::prepare(text).map_err(|source| ConfigError::Entities {
        path: path.to_path_buf(),
        source,
    })?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        // Markup in entities makes nodes; the expansion bound keeps them
        // few, this keeps them countable.
        nodes_limit: 4 * 1024 * 1024,
        ..roxmltree::ParsingOptions::default()
    };
    let doc =
        roxmltree::Document::parse_with_options(&prepared.text, options).map_err(|source| {
            ConfigError::Xml {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let resolve = |node: roxmltree::Node| -> Option<PathBuf> {
        let t = content(node);
        (!t.is_empty()).then(|| base.join(t))
    };
    let mut out = BusConfig {
        skipped_entities: prepared.skipped,
        ..BusConfig::default()
    };
    // Every element, not only children of <busconfig>: dbus-daemon would
    // refuse a misplaced one, but listing too much is safe.
    for (pos, node) in doc
        .descendants()
        .filter(roxmltree::Node::is_element)
        .enumerate()
    {
        let verdict = match node.tag_name().name() {
            "allow" => Some(true),
            "deny" => Some(false),
            _ => None,
        };
        if let Some(allow) = verdict {
            // Rules count only inside a <policy> (dbus-daemon refuses
            // them elsewhere).
            if let Some(policy) = node
                .parent_element()
                .filter(|p| p.tag_name().name() == "policy")
            {
                out.rules.push(PolicyRule {
                    context: policy_context(policy),
                    allow,
                    attributes: node
                        .attributes()
                        .map(|a| (a.name().to_string(), a.value().to_string()))
                        .collect(),
                    pos,
                });
            }
            continue;
        }
        let d = match node.tag_name().name() {
            // dbus-daemon keeps the last <type> it reads.
            "type" => {
                let t = content(node);
                if !t.is_empty() {
                    out.bus_type = Some(t);
                }
                continue;
            }
            "listen" => {
                let t = content(node);
                if !t.is_empty() {
                    out.listen.push(t);
                }
                continue;
            }
            "servicedir" => resolve(node).map(Directive::ServiceDir),
            "includedir" => resolve(node).map(Directive::IncludeDir),
            // A path relative to the SELinux policy root is not known
            // from files alone; such includes hold SELinux contexts.
            "include" if node.attribute("selinux_root_relative") == Some("yes") => None,
            "include" => resolve(node).map(|p| Directive::Include {
                path: p,
                // Read only on SELinux systems: absence is normal.
                ignore_missing: node.attribute("ignore_missing") == Some("yes")
                    || node.attribute("if_selinux_enabled") == Some("yes"),
            }),
            "standard_session_servicedirs" => Some(Directive::StandardSessionServiceDirs),
            "standard_system_servicedirs" => Some(Directive::StandardSystemServiceDirs),
            _ => None,
        };
        if let Some(d) = d {
            out.directives.push(d);
            out.directive_pos.push(pos);
        }
    }
    Ok(out)
}

/// Where discovery starts: a config file, or a directory read like an
/// `<includedir>` (the standard `system.d`, so a fragment is found even
/// when the main config no longer includes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    File(PathBuf),
    Dir(PathBuf),
}

/// A directive found while following the configs, with the caller's tag
/// (the bus) of the start it was reached from and the file naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<T> {
    pub directive: Directive,
    pub tag: T,
    pub from: PathBuf,
}

/// A policy rule found while following the configs, in the order the
/// bus merges rules (`seq`), with the file holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundRule<T> {
    pub rule: PolicyRule,
    pub tag: T,
    pub from: PathBuf,
    pub seq: usize,
}

/// Everything reachable from a set of starts.
#[derive(Debug)]
pub struct Discovery<T> {
    pub found: Vec<Found<T>>,
    /// Every `<allow>`/`<deny>`, in merge order.
    pub rules: Vec<FoundRule<T>>,
    /// Files that could not be read or parsed (missing starts and
    /// `ignore_missing` includes are not errors), and files read with
    /// entity references skipped (`ConfigError::SkippedEntities`, the
    /// only error whose file still counts).
    pub errors: Vec<ConfigError>,
}

struct Walker<'a, T> {
    root: &'a Root,
    files: HashSet<(u64, u64)>,
    dirs: HashSet<(u64, u64)>,
    out: Discovery<T>,
}

/// Follows every start, in order, and each file's includes depth-first in
/// document order, as the bus reads them. Each file and directory is
/// visited once, under the first tag that reached it.
pub fn discover<T: Copy>(root: &Root, starts: &[(Start, T)]) -> Discovery<T> {
    let mut w = Walker {
        root,
        files: HashSet::new(),
        dirs: HashSet::new(),
        out: Discovery {
            found: Vec::new(),
            rules: Vec::new(),
            errors: Vec::new(),
        },
    };
    for (start, tag) in starts {
        match start {
            Start::File(p) => {
                if let Err(e) = w.file(p, *tag, 0) {
                    if !is_missing(&e) {
                        w.out.errors.push(e);
                    }
                }
            }
            Start::Dir(p) => w.dir(p, *tag, 0),
        }
    }
    w.out
}

fn is_missing(e: &ConfigError) -> bool {
    matches!(e, ConfigError::Fs(f) if f.is_not_found())
}

impl<T: Copy> Walker<'_, T> {
    fn file(&mut self, path: &Path, tag: T, depth: usize) -> Result<(), ConfigError> {
        let file = self.root.open_regular(path)?;
        let id = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .map_err(|source| FsError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if !self.files.insert(id) {
            return Ok(());
        }
        let (bytes, truncated) = fs_safe::read_capped(file, MAX_CONFIG_BYTES, path)?;
        if truncated {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let config = parse(&bytes, path)?;
        if !config.skipped_entities.is_empty() {
            self.out.errors.push(ConfigError::SkippedEntities {
                path: path.to_path_buf(),
                names: config.skipped_entities,
            });
        }
        let mut rules = config.rules.into_iter().peekable();
        for (d, pos) in config.directives.into_iter().zip(config.directive_pos) {
            // Rules before this directive were merged before what it
            // includes.
            while let Some(r) = rules.next_if(|r| r.pos < pos) {
                self.rule(r, tag, path);
            }
            match &d {
                Directive::Include {
                    path: inc,
                    ignore_missing,
                } => {
                    if depth + 1 > MAX_DEPTH {
                        self.out.errors.push(ConfigError::TooDeep {
                            path: path.to_path_buf(),
                        });
                    } else if let Err(e) = self.file(inc, tag, depth + 1) {
                        if is_missing(&e) && *ignore_missing {
                        } else if let ConfigError::Fs(fs) = e {
                            self.out.errors.push(ConfigError::Include {
                                path: path.to_path_buf(),
                                include: inc.clone(),
                                source: fs,
                            });
                        } else {
                            self.out.errors.push(e);
                        }
                    }
                }
                Directive::IncludeDir(dir) => {
                    if depth + 1 > MAX_DEPTH {
                        self.out.errors.push(ConfigError::TooDeep {
                            path: path.to_path_buf(),
                        });
                    } else {
                        self.dir(dir, tag, depth + 1);
                    }
                }
                _ => {}
            }
            self.out.found.push(Found {
                directive: d,
                tag,
                from: path.to_path_buf(),
            });
        }
        for r in rules {
            self.rule(r, tag, path);
        }
        Ok(())
    }

    fn rule(&mut self, rule: PolicyRule, tag: T, from: &Path) {
        let seq = self.out.rules.len();
        self.out.rules.push(FoundRule {
            rule,
            tag,
            from: from.to_path_buf(),
            seq,
        });
    }

    /// Includes every `*.conf` of `dir` in directory order, as dbus-daemon
    /// does (`include_dir` in `bus/config-parser.c` takes
    /// `_dbus_directory_get_next_file`'s order, unsorted; checked with
    /// dbus-daemon 1.14), so rules merge in the order the bus merges them.
    /// dbus-broker sorts the names instead, so where two fragments' rules
    /// conflict the two daemons may settle them differently. A missing
    /// directory is not an error (dbus-daemon skips it too).
    fn dir(&mut self, dir: &Path, tag: T, depth: usize) {
        let fd = match self.root.open_dir(dir) {
            Ok(fd) => fd,
            Err(e) => {
                if !e.is_not_found() && e.errno() != Some(rustix::io::Errno::NOTDIR) {
                    self.out.errors.push(e.into());
                }
                return;
            }
        };
        match rustix::fs::fstat(&fd) {
            Ok(st) if self.dirs.insert((st.st_dev, st.st_ino)) => {}
            Ok(_) => return,
            Err(e) => {
                self.out.errors.push(
                    FsError::Read {
                        path: dir.to_path_buf(),
                        source: e.into(),
                    }
                    .into(),
                );
                return;
            }
        }
        let names: Vec<Vec<u8>> = match rustix::fs::Dir::read_from(&fd) {
            Ok(reader) => reader
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_bytes().to_vec())
                .filter(|n| n.ends_with(b".conf"))
                .collect(),
            Err(e) => {
                self.out.errors.push(
                    FsError::Read {
                        path: dir.to_path_buf(),
                        source: e.into(),
                    }
                    .into(),
                );
                return;
            }
        };
        for n in names {
            let p = dir.join(OsStr::from_bytes(&n));
            if let Err(e) = self.file(&p, tag, depth) {
                if !is_missing(&e) {
                    self.out.errors.push(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCTYPE: &str = r#"<!-- a comment with <!DOCTYPE inside -->
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
"#;

    #[test]
    fn parses_directives_in_order_relative_to_the_file() {
        let xml = format!(
            "{DOCTYPE}<busconfig>\n<type>system</type>\n<standard_system_servicedirs/>\n\
<servicedir>/opt/evil/services</servicedir>\n<servicedir>/opt/<!-- split -->joined</servicedir>\n\
<servicedir> /opt/spaced </servicedir>\n<includedir>system.d</includedir>\n\
<include ignore_missing=\"yes\">/etc/dbus-1/system-local.conf</include>\n\
<include>../other.conf</include>\n<servicedir/>\n\
<include if_selinux_enabled=\"yes\" selinux_root_relative=\"yes\">contexts/dbus_contexts</include>\n\
<include if_selinux_enabled=\"yes\">/etc/selinux.conf</include>\n<policy context=\"default\"/></busconfig>"
        );
        let c = parse(xml.as_bytes(), Path::new("/usr/share/dbus-1/system.conf")).unwrap();
        assert_eq!(c.bus_type.as_deref(), Some("system"));
        assert_eq!(
            c.directives,
            [
                Directive::StandardSystemServiceDirs,
                Directive::ServiceDir("/opt/evil/services".into()),
                // A comment does not cut the text; blanks are kept, and a
                // leading one makes the path relative (dbus-daemon 1.14,
                // checked with `<listen>`, whose address fails on them).
                Directive::ServiceDir("/opt/joined".into()),
                Directive::ServiceDir("/usr/share/dbus-1/ /opt/spaced ".into()),
                Directive::IncludeDir("/usr/share/dbus-1/system.d".into()),
                Directive::Include {
                    path: "/etc/dbus-1/system-local.conf".into(),
                    ignore_missing: true
                },
                Directive::Include {
                    path: "/usr/share/dbus-1/../other.conf".into(),
                    ignore_missing: false
                },
                Directive::Include {
                    path: "/etc/selinux.conf".into(),
                    ignore_missing: true
                },
            ]
        );
    }

    /// Internal entities are expanded as dbus-daemon's expat expands
    /// them, so a policy written with one yields the rules the bus
    /// applies; external ones are never read; a skipped reference is
    /// named.
    #[test]
    fn entities_are_expanded_as_the_bus_expands_them() {
        let xml = r#"<!DOCTYPE busconfig [
<!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY evil SYSTEM "file:///etc/shadow">
<!ENTITY open '<allow own="*"/>'>
]>
<busconfig><servicedir>/x/&b;</servicedir>
<policy context="default">&open;<allow send_destination="org.&evil;x"/></policy></busconfig>"#;
        let e = parse(xml.as_bytes(), Path::new("/etc/dbus-1/system-local.conf")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/etc/dbus-1/system-local.conf: reference to external entity &evil;"),
            "{e}"
        );
        let xml = xml.replace("org.&evil;x", "org.x");
        let c = parse(xml.as_bytes(), Path::new("/a.conf")).unwrap();
        assert_eq!(
            c.directives,
            [Directive::ServiceDir(
                format!("/x/{}", "a".repeat(100)).into()
            )]
        );
        let own: Vec<_> = c.rules.iter().map(|r| r.attributes.clone()).collect();
        assert_eq!(
            own,
            [
                vec![("own".to_string(), "*".to_string())],
                vec![("send_destination".to_string(), "org.x".to_string())]
            ]
        );
        assert!(c.skipped_entities.is_empty());
        // Under the standard DOCTYPE an unknown name reads as nothing.
        let xml = format!(
            "{DOCTYPE}<busconfig><policy context=\"default\"><allow own=\"org.&x;Foo\"/></policy></busconfig>"
        );
        let c = parse(xml.as_bytes(), Path::new("/a.conf")).unwrap();
        assert_eq!(c.rules[0].attributes, [("own".into(), "org.Foo".into())]);
        assert_eq!(c.skipped_entities, ["x"]);
        // A `]>` inside an entity value does not end the DOCTYPE.
        let ok = r#"<!DOCTYPE busconfig [ <!ENTITY a "]>"> ]><busconfig><servicedir>/s</servicedir></busconfig>"#;
        let c = parse(ok.as_bytes(), Path::new("/a.conf")).unwrap();
        assert_eq!(c.directives, [Directive::ServiceDir("/s".into())]);
        assert!(parse(b"<!DOCTYPE busconfig [", Path::new("/a")).is_err());
        assert!(matches!(
            parse(b"<busconfig>\xff</busconfig>", Path::new("/a")),
            Err(ConfigError::NotUtf8 { .. })
        ));
        // Billion laughs: refused with the reason, never expanded.
        let mut lol = String::from("<!DOCTYPE busconfig [<!ENTITY l0 \"lol\">");
        for i in 1..10 {
            lol.push_str(&format!(
                "<!ENTITY l{i} \"{}\">",
                format!("&l{};", i - 1).repeat(10)
            ));
        }
        lol.push_str("]><busconfig><servicedir>/&l9;</servicedir></busconfig>");
        let e = parse(lol.as_bytes(), Path::new("/lol.conf")).unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Entities {
                source: EntityError::TooLarge { .. },
                ..
            }
        ));
        assert!(e.to_string().contains("not parsed"), "{e}");
    }

    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let w = |p: &str, s: &str| {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(
            "usr/share/dbus-1/system.conf",
            &format!(
                "{DOCTYPE}<busconfig><type>system</type><standard_system_servicedirs/>\
<includedir>system.d</includedir>\
<include ignore_missing=\"yes\">/etc/dbus-1/system-local.conf</include>\
<include ignore_missing=\"yes\">/etc/dbus-1/absent.conf</include></busconfig>"
            ),
        );
        w(
            "etc/dbus-1/system-local.conf",
            "<busconfig><servicedir>/opt/evil</servicedir><includedir>/etc/loop</includedir>\
<include>/etc/missing.conf</include></busconfig>",
        );
        // A cycle: loop/a.conf includes its own directory and itself.
        w(
            "etc/loop/a.conf",
            "<busconfig><includedir>/etc/loop</includedir><include>a.conf</include>\
<servicedir>/opt/a</servicedir></busconfig>",
        );
        w(
            "etc/loop/b.conf",
            "<busconfig><includedir>.</includedir></busconfig>",
        );
        w(
            "etc/loop/not-a-conf.txt",
            "<busconfig><servicedir>/no</servicedir></busconfig>",
        );
        w(
            "usr/share/dbus-1/system.d/p.conf",
            "<busconfig><policy/></busconfig>",
        );
        w("usr/share/dbus-1/system.d/bad.conf", "<busconfig>");
        tmp
    }

    #[test]
    fn discovery_follows_includes_and_survives_cycles() {
        let tmp = tree();
        let root = Root::open(tmp.path()).unwrap();
        let d = discover(
            &root,
            &[(Start::File("/usr/share/dbus-1/system.conf".into()), 1u8)],
        );
        let service_dirs: Vec<_> = d
            .found
            .iter()
            .filter_map(|f| match &f.directive {
                Directive::ServiceDir(p) => Some(p.to_str().unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(service_dirs, ["/opt/evil", "/opt/a"]);
        assert!(d.found.iter().all(|f| f.tag == 1));
        let errs: Vec<String> = d.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].starts_with("/usr/share/dbus-1/system.d/bad.conf: XML"));
        assert!(errs[1].starts_with(
            "/etc/dbus-1/system-local.conf: includes /etc/missing.conf, which cannot be read"
        ));
    }

    #[test]
    fn depth_is_capped() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..30 {
            std::fs::write(
                tmp.path().join(format!("{i}.conf")),
                format!("<busconfig><include>{}.conf</include></busconfig>", i + 1),
            )
            .unwrap();
        }
        let root = Root::open(tmp.path()).unwrap();
        let d = discover(&root, &[(Start::File("/0.conf".into()), ())]);
        assert!(d
            .errors
            .iter()
            .any(|e| matches!(e, ConfigError::TooDeep { .. })));
        assert_eq!(d.found.len(), MAX_DEPTH + 1);
    }

    #[test]
    fn policy_rules_in_document_order_only_inside_policy() {
        let c = parse(
            b"<busconfig><allow own=\"stray\"/>\
<policy context=\"default\"><deny own=\"*\"/></policy>\
<include>x.conf</include>\
<policy at_console=\"maybe\"><allow own=\"a\"/></policy></busconfig>",
            Path::new("/etc/dbus-1/system.conf"),
        )
        .unwrap();
        assert_eq!(c.rules.len(), 2, "the stray rule is not in a policy");
        assert_eq!(c.rules[0].context, PolicyContext::Default);
        assert!(!c.rules[0].allow);
        assert_eq!(
            c.rules[0].attributes,
            [("own".to_string(), "*".to_string())]
        );
        assert_eq!(
            c.rules[1].context,
            PolicyContext::Invalid("at_console=maybe".into())
        );
        // The include sits between the two rules.
        assert!(c.rules[0].pos < c.directive_pos[0] && c.directive_pos[0] < c.rules[1].pos);
    }
}
