//! osquery's query-context JSON, as it arrives with every `generate` call.
#![no_main]
use libfuzzer_sys::fuzz_target;
use osquery_dbus::context::QueryContext;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ctx) = QueryContext::from_json(text) {
        // The accessors tables use must hold up on whatever parsed.
        for col in ["path", "pid", "directory", ""] {
            let _ = ctx.eq_values(col);
            let _ = ctx.uses(col);
            for c in ctx.constraints(col) {
                let _ = c.op.code();
            }
        }
    }
});
