//! Table specs in the shape osquery's registry wants them: the route rows
//! `TablePlugin::routes` produces, sent at registration and again as the
//! answer to a `columns` call. Deriving both from the spec keeps them equal.
use crate::spec::TableSpec;
use crate::tables::Registry;
use std::collections::BTreeMap;

/// One route row per column, as osquery's C++ `TablePlugin::routes` writes
/// it: `op` carries the option bits as a decimal string.
pub fn table_routes(spec: &TableSpec) -> Vec<BTreeMap<String, String>> {
    spec.columns
        .iter()
        .map(|c| {
            BTreeMap::from([
                ("id".to_string(), "column".to_string()),
                ("name".to_string(), c.name.clone()),
                ("type".to_string(), c.ty.as_str().to_string()),
                ("op".to_string(), c.option_bits().to_string()),
            ])
        })
        .collect()
}

/// The `registry` argument of `registerExtension`: every table osquery may
/// host (embedded-only stand-ins such as `users` would collide with
/// built-ins and make the whole registration fail).
pub fn registration(
    registry: &Registry,
) -> BTreeMap<String, BTreeMap<String, Vec<BTreeMap<String, String>>>> {
    let tables = registry
        .extension_tables()
        .map(|t| (t.spec.name.clone(), table_routes(&t.spec)))
        .collect();
    BTreeMap::from([("table".to_string(), tables)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn routes_follow_the_spec_and_skip_embedded_tables() {
        let registry = Registry::new(Settings::default()).unwrap();
        let reg = registration(&registry);
        let tables = &reg["table"];
        assert!(tables.contains_key("dbus_service_files"));
        assert!(!tables.contains_key("users"));
        assert!(!tables.contains_key("groups"));
        let routes = &tables["dbus_service_files"];
        let path = routes.iter().find(|r| r["name"] == "path").unwrap();
        assert_eq!(path["id"], "column");
        assert_eq!(path["type"], "TEXT");
        assert_eq!(path["op"], "9"); // index | optimized
        let uid = routes.iter().find(|r| r["name"] == "uid").unwrap();
        assert_eq!((uid["type"].as_str(), uid["op"].as_str()), ("BIGINT", "0"));
    }
}
