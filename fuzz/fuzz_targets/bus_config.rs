//! The bus-config XML parser (entities as expat reads them, roxmltree,
//! includes and servicedirs): bytes from `system.d`/`session.d` fragments
//! and the like.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::sources::{bus_config, xml_entities};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = bus_config::parse(data, Path::new("/etc/dbus-1/system.d/fuzz.conf"));
    // A relative location exercises the directory anchoring too.
    let _ = bus_config::parse(data, Path::new("fuzz.conf"));
    // The expansion bound holds for what roxmltree then builds: no document
    // that passes it expands past it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(prepared) = xml_entities::prepare(text) else {
        return;
    };
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    if let Ok(doc) = roxmltree::Document::parse_with_options(&prepared.text, options) {
        let expanded: usize = doc
            .descendants()
            .map(|n| {
                let text = if n.is_text() {
                    n.text().map_or(0, str::len)
                } else {
                    0
                };
                text + n.attributes().map(|a| a.value().len()).sum::<usize>()
            })
            .sum();
        assert!(expanded as u64 <= xml_entities::MAX_EXPANDED_BYTES);
    }
});
