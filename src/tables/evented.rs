//! What the evented tables share: the `time` lower bound they push down,
//! and what they answer when no collector runs in this process.
use crate::context::{Op, QueryContext};
use std::sync::Mutex;

/// The lower bound a `time >`, `>=` or `=` constraint puts on event times.
pub fn time_lower_bound(ctx: &QueryContext) -> Option<u64> {
    ctx.constraints("time")
        .iter()
        .filter_map(|c| {
            let v: f64 = c.expr.trim().parse().ok()?;
            let v = v.max(0.0);
            match c.op {
                Op::Gt => Some(v.floor() as u64 + 1),
                Op::Ge | Op::Eq => Some(v.ceil() as u64),
                _ => None,
            }
        })
        .max()
}

/// Says (once per process and table: a log line, not state) why an
/// evented table has no rows when nothing collects.
pub fn no_collector(table: &'static str) {
    static WARNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !warned.contains(&table) {
        warned.push(table);
        log::warn!(
            "{table}: no collector in this process; evented tables have history only \
             in the osquery extension and `osquery-dbus watch`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::collect;

    /// The specs say which tables are evented; each of those has a
    /// collector, and no other table does.
    #[test]
    fn evented_specs_are_the_collected_tables() {
        let evented: Vec<String> = crate::spec::load_all()
            .into_iter()
            .filter(|t| t.evented)
            .map(|t| t.name)
            .collect();
        assert_eq!(evented, [collect::PROCESS, collect::FILE]);
    }

    #[test]
    fn time_bounds() {
        let mut ctx = QueryContext::new();
        assert_eq!(time_lower_bound(&ctx), None);
        ctx.add_constraint("time", Op::Gt, "100");
        ctx.add_constraint("time", Op::Ge, "50");
        ctx.add_constraint("time", Op::Lt, "500");
        ctx.add_constraint("time", Op::Gt, "junk");
        assert_eq!(time_lower_bound(&ctx), Some(101));
    }
}
