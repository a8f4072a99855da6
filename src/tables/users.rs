//! `users`: osquery's Linux `users` table for the embedded host, so pack SQL
//! that joins on `users` runs unchanged without osquery. Never registered
//! with a real core, which has its own.
use crate::context::QueryContext;
use crate::row::Row;
use crate::settings::Settings;
use crate::sources::accounts;
use crate::spec::columns::users as c;

pub fn generate(settings: &Settings, ctx: &QueryContext) -> Vec<Row> {
    let parsed = match accounts::read_passwd(&settings.root) {
        Ok(p) => p,
        Err(e) => {
            if !crate::blind::report_os_error("cannot read the account list", &e, &at(&e)) {
                log::debug!("users: {e}");
            }
            return Vec::new();
        }
    };
    let wanted = ctx.eq_values("uid");
    parsed
        .entries
        .into_iter()
        .filter(|a| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&a.uid.to_string()))
        })
        .map(|a| {
            let mut row = Row::new(&c::SCHEMA);
            row.set(c::UID, a.uid)
                .set(c::GID, a.gid)
                // osquery reports the id reinterpreted as signed 32-bit.
                .set(c::UID_SIGNED, a.uid as i32)
                .set(c::GID_SIGNED, a.gid as i32)
                .set(c::USERNAME, a.username)
                .set(c::DESCRIPTION, a.description)
                .set(c::DIRECTORY, a.directory)
                .set(c::SHELL, a.shell)
                .set(c::UUID, "");
            row
        })
        .collect()
}

/// Where an account-list failure struck, as a blind spot shows it.
fn at(e: &accounts::AccountsError) -> String {
    let accounts::AccountsError::Fs(fs) = e;
    crate::sources::fs_safe::render_path(fs.path())
}
