//! One namespace's routing state: the tables and the rules over them.
//!
//! Stands for `struct netns_ipv4`'s `fib_table_hash` and `rules_ops`, and
//! `fib_lookup()`/`__fib_lookup()` (`net/ipv4/fib_rules.c`), which walk the
//! rules and return the first table's answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fib::{Fib, Lookup};
use super::rules::{default_rules, FibRule, RuleAction};
use super::{FlowKey, Route, RouteError};

/// `RT_TABLE_LOCAL`: the host's own and broadcast addresses.
pub const RT_TABLE_LOCAL: u32 = 255;
/// `RT_TABLE_MAIN`: where `ip route add` puts routes by default.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_TABLE_DEFAULT`: consulted last by the default rules.
pub const RT_TABLE_DEFAULT: u32 = 253;

/// Tables and rules. See the module documentation.
#[derive(Clone, Debug)]
pub struct Rib {
    tables: BTreeMap<u32, Arc<Fib>>,
    rules: Vec<FibRule>,
    /// A rule was ever added (`fib_has_custom_rules`): until then the
    /// kernel keeps table local merged into main, and a lookup's answer
    /// names table main.
    custom_rules: bool,
}

impl Default for Rib {
    fn default() -> Self {
        Rib::new()
    }
}

impl Rib {
    /// A new namespace's state: empty `local` and `main` tables and the
    /// three default rules.
    pub fn new() -> Rib {
        let mut tables = BTreeMap::new();
        tables.insert(RT_TABLE_LOCAL, Arc::new(Fib::new()));
        tables.insert(RT_TABLE_MAIN, Arc::new(Fib::new()));
        Rib {
            tables,
            rules: default_rules(),
            custom_rules: false,
        }
    }

    /// Table `id`, if it exists.
    pub fn table(&self, id: u32) -> Option<&Arc<Fib>> {
        self.tables.get(&id)
    }

    /// Table `id` for change, created empty when missing (`fib_new_table()`).
    pub fn table_mut(&mut self, id: u32) -> &mut Fib {
        Arc::make_mut(self.tables.entry(id).or_default())
    }

    /// Every table with its id, in id order.
    pub fn tables(&self) -> impl Iterator<Item = (u32, &Arc<Fib>)> {
        self.tables.iter().map(|(k, v)| (*k, v))
    }

    /// Every table, for change.
    pub fn tables_mut(&mut self) -> impl Iterator<Item = &mut Fib> {
        self.tables.values_mut().map(Arc::make_mut)
    }

    /// Kernel: `fib_unmerge()`'s effect on a lookup's table id: the table
    /// a route of `table` is reported in (local is main until a rule is
    /// added).
    pub fn answer_table(&self, table: u32) -> u32 {
        if !self.custom_rules && table == RT_TABLE_LOCAL {
            RT_TABLE_MAIN
        } else {
            table
        }
    }

    /// The rules in priority order.
    pub fn rules(&self) -> &[FibRule] {
        &self.rules
    }

    /// Kernel: `fib_nl_newrule()`. Inserts `rule` after the rules of the
    /// same priority; a rule equal to one that exists is `EEXIST`.
    pub fn add_rule(&mut self, rule: FibRule) -> Result<(), RouteError> {
        if self.rules.contains(&rule) {
            return Err(RouteError::Invalid("rule exists"));
        }
        let at = self.rules.partition_point(|r| r.priority <= rule.priority);
        self.rules.insert(at, rule);
        self.custom_rules = true;
        Ok(())
    }

    /// Kernel: `fib_nl_delrule()`. Removes the first rule `pred` selects
    /// (`ENOENT` when none).
    pub fn del_rule(&mut self, pred: impl Fn(&FibRule) -> bool) -> Option<FibRule> {
        let at = self.rules.iter().position(pred)?;
        Some(self.rules.remove(at))
    }

    /// Kernel: `fib_default_rule_pref()`. The priority `ip rule add` gives
    /// a rule without one: one less than the second rule's, when that is
    /// not 0; else 0.
    pub fn default_priority(&self) -> u32 {
        self.rules
            .get(1)
            .map_or(0, |r| r.priority.saturating_sub(1))
    }

    /// Kernel: `fib_lookup()` with rules (`fib_rules_lookup()`): the first
    /// rule that matches and answers decides; `ENETUNREACH` when none does.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Result<&Route, RouteError> {
        self.lookup_seen(key, |_, _| {})
    }

    /// [`Rib::lookup`], telling `seen` each rule that matched the flow and
    /// what its table answered (`None`: the rule's action decided, or it
    /// names a table that does not exist). The walk is the same; with a
    /// closure that does nothing it compiles to [`Rib::lookup`]'s code.
    #[inline]
    pub fn lookup_seen<'a>(
        &'a self,
        key: &FlowKey,
        mut seen: impl FnMut(&FibRule, Option<&Lookup<'a>>),
    ) -> Result<&'a Route, RouteError> {
        for rule in self.rules.iter().filter(|r| r.matches(key)) {
            let table = match rule.action {
                RuleAction::Table(t) => t,
                RuleAction::Nop => {
                    seen(rule, None);
                    continue;
                }
                _ => {
                    seen(rule, None);
                    return Err(rule
                        .action_error(key.daddr)
                        .unwrap_or(RouteError::Blackhole(key.daddr)));
                }
            };
            let Some(fib) = self.tables.get(&table) else {
                seen(rule, None);
                continue;
            };
            let found = fib.lookup_flow(key);
            seen(rule, Some(&found));
            if tracing::level_enabled!(tracing::Level::INFO) {
                self.trace_lookup(table, key, &found);
            }
            match found {
                Lookup::Found(r) => return Ok(r),
                Lookup::Error(_, e) => return Err(e),
                Lookup::Continue => {}
            }
        }
        Err(RouteError::NetUnreachable(key.daddr))
    }

    /// Tracepoint `fib_table_lookup` (`include/trace/events/fib.h`): table
    /// `table`'s answer for `key` — the route's device and gateway (`-`
    /// and 0.0.0.0 without one) and `err`, 0 for a route, `-EAGAIN` for
    /// none (the next rule is asked), an error route's `-errno`. Until a
    /// rule is added, local is merged into main (`fib_unmerge()`): one
    /// lookup, reported as main's.
    #[cold]
    #[inline(never)]
    fn trace_lookup(&self, table: u32, key: &FlowKey, found: &Lookup<'_>) {
        let (route, err) = match found {
            Lookup::Found(r) => (Some(*r), 0),
            Lookup::Error(r, e) => (Some(*r), -e.errno().code()),
            Lookup::Continue if !self.custom_rules && table == RT_TABLE_LOCAL => return,
            Lookup::Continue => (None, -crate::error::Errno::EAGAIN.code()),
        };
        let nh = route.and_then(|r| r.dst.as_deref());
        tracing::info!(
            name: "fib_table_lookup",
            target: crate::trace::FIB,
            tb_id = self.answer_table(table),
            oif = key.oif,
            proto = key.proto,
            src = %key.saddr,
            sport = key.sport,
            dst = %key.daddr,
            dport = key.dport,
            tos = key.tos,
            dev = %nh.map_or("-", |d| d.dev.name()),
            gw = %nh.and_then(|d| d.gateway).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            err,
            "fib_table_lookup"
        );
    }
}
