//! `groups`: osquery's Linux `groups` table for the embedded host, the
//! partner of `users` in the hunt's owner joins.
use crate::context::QueryContext;
use crate::row::Row;
use crate::settings::Settings;
use crate::sources::accounts;
use crate::spec::columns::groups as c;

pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let parsed = match accounts::read_group(&settings.root) {
        Ok(p) => p,
        Err(e) => {
            if !crate::blind::report_os_error("cannot read the account list", &e, &at(&e)) {
                log::debug!("groups: {e}");
            }
            return Vec::new();
        }
    };
    let wanted = ctx.eq_values("gid");
    parsed
        .entries
        .into_iter()
        .filter(|g| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&g.gid.to_string()))
        })
        .map(|g| {
            let mut row = Row::new(&c::SCHEMA);
            row.set(c::GID, g.gid)
                .set(c::GID_SIGNED, g.gid as i32)
                .set(c::GROUPNAME, g.groupname);
            row
        })
        .collect()
}

/// Where an account-list failure struck, as a blind spot shows it.
fn at(e: &accounts::AccountsError) -> String {
    let accounts::AccountsError::Fs(fs) = e;
    crate::sources::fs_safe::render_path(fs.path())
}
