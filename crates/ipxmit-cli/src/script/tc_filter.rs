//! `tc filter` lines in scripts: tc(8)'s words, its messages and its
//! output.
//!
//! Stands for iproute2's `tc/tc_filter.c` (`tc_filter_modify`,
//! `tc_filter_list`, `print_filter`); the classifiers' words are parsed by
//! [`ipxmit::sched::cls::parse_filter`], what the kernel decides is
//! [`ipxmit::Stack::filter_add`] and [`ipxmit::Stack::filter_delete`].

use ipxmit::dev::NetDevice;
use ipxmit::sched::class::TC_H_ROOT;
use ipxmit::sched::cls::{parse_filter, FilterShow, FilterSpec, ETH_P_ALL, ETH_P_IP};

use super::tc::TcCommand;
use super::tc_class::parse_classid;

/// tc's message for a keyword without its value.
const INCOMPLETE: &str = "Command line is not complete. Try option \"help\"";

/// The words of `tc_filter_modify()` before the kind.
#[derive(Default)]
struct Words<'a> {
    dev: Option<&'a str>,
    parent: u32,
    protocol: Option<u16>,
    pref: u32,
    handle: Option<&'a str>,
    kind: Option<&'a str>,
    opts: Vec<&'a str>,
}

/// tc's `ll_proto_a2n()` for the protocols a filter names.
fn protocol(v: &str) -> Option<u16> {
    match v {
        "all" => Some(ETH_P_ALL),
        "ip" => Some(ETH_P_IP),
        "arp" => Some(0x0806),
        "ipv6" => Some(0x86dd),
        "802.1q" | "802.1Q" => Some(0x8100),
        n => match n.strip_prefix("0x") {
            Some(h) => u16::from_str_radix(h, 16).ok(),
            None => n.parse().ok(),
        },
    }
}

/// Reads the words before the kind.
fn words<'a>(r: &[&'a str]) -> Result<Words<'a>, String> {
    let mut w = Words::default();
    let mut it = r.iter().copied();
    while let Some(word) = it.next() {
        match word {
            "dev" => w.dev = Some(it.next().ok_or(INCOMPLETE)?),
            "root" => w.parent = TC_H_ROOT,
            "parent" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                w.parent = parse_classid(v).ok_or(format!("Invalid parent ID \"{v}\""))?;
            }
            "handle" => w.handle = Some(it.next().ok_or(INCOMPLETE)?),
            "protocol" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                w.protocol = Some(protocol(v).ok_or("Illegal \"protocol\"")?);
            }
            "prio" | "pref" | "priority" | "preference" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                w.pref = v.parse().map_err(|_| "Illegal \"priority\"")?;
            }
            "chain" => {
                let v = it.next().ok_or(INCOMPLETE)?;
                if v != "0" {
                    return Err("ipxmit: only chain 0 is modelled".into());
                }
            }
            kind => {
                w.kind = Some(kind);
                w.opts = it.collect();
                break;
            }
        }
    }
    Ok(w)
}

/// `tc filter add|replace|change|del ...` (after `filter`).
pub fn parse(cmd: &str, rest: &[&str], json: bool) -> Result<TcCommand, String> {
    let w = words(rest)?;
    let need_dev = || {
        w.dev
            .map(str::to_owned)
            .ok_or_else(|| "Not enough information: \"dev\" argument is required.".to_owned())
    };
    match cmd {
        "add" | "replace" | "change" => {
            let dev = need_dev()?;
            let kind = w.kind.unwrap_or("");
            let (kind, (matcher, classid, handle)) = parse_filter(kind, w.handle, &w.opts)?;
            let spec = FilterSpec {
                pref: w.pref,
                protocol: w.protocol.unwrap_or(ETH_P_ALL),
                kind,
                handle,
                matcher,
                classid,
            };
            Ok(TcCommand::FilterAdd {
                dev,
                parent: w.parent,
                spec,
            })
        }
        "del" | "delete" => {
            let dev = need_dev()?;
            let handle = match (w.handle, w.kind) {
                (Some(_), None) => {
                    return Err("Must specify filter type when using \"handle\"".into())
                }
                (Some(_), Some(k)) => parse_filter(k, w.handle, &[])?.1 .2,
                (None, _) => 0,
            };
            Ok(TcCommand::FilterDel {
                dev,
                parent: w.parent,
                pref: w.pref,
                handle,
            })
        }
        c if ["show", "list", "ls", "lst"].contains(&c) => Ok(TcCommand::FilterShow {
            dev: w.dev.map(str::to_owned),
            parent: (w.parent != 0).then_some(w.parent),
            pref: (w.pref != 0).then_some(w.pref),
            json,
        }),
        other => Err(format!(
            "Command \"{other}\" is unknown, try \"tc filter help\"."
        )),
    }
}

/// Kernel: `tc_dump_tfilter()`: `tc [-j] filter show dev D [parent P]
/// [prio N]`: the filters of the device's root (each line saying `parent
/// H:`), or of the qdisc or class `parent` names anywhere in its tree
/// (none without a device, as tc).
pub fn show(dev: Option<&NetDevice>, parent: Option<u32>, pref: Option<u32>, json: bool) -> String {
    let mut text = String::new();
    let mut objs: Vec<String> = Vec::new();
    let Some(d) = dev else {
        return if json { "[]\n".into() } else { text };
    };
    // Without a parent: the root's filters (an `mq` root takes none).
    let root = (d.mq_root().is_none()).then(|| d.queues()[0].qdisc_handle());
    let Some((qh, cl)) = parent
        .map(|p| (p & 0xffff_0000, p & 0xffff))
        .or(root.map(|h| (h, 0)))
    else {
        return if json { "[]\n".into() } else { text };
    };
    for txq in d.trees() {
        let h = txq.qdisc_handle();
        txq.with_qdisc(|tree| {
            let q = match qh == h {
                true => Some(tree),
                false => super::tc::grafted(tree)
                    .into_iter()
                    .find(|&(_, ch, _)| ch == qh)
                    .map(|(_, _, c)| c),
            };
            let chain = match (q, cl) {
                (Some(q), 0) => q.filters(),
                (Some(q), cl) => q.class_filters(qh | cl),
                (None, _) => None,
            };
            if let Some(chain) = chain {
                let how = FilterShow {
                    parent: parent.is_none().then_some(qh),
                    pref,
                };
                text += &chain.show(&how);
                objs.extend(chain.show_json(&how));
            }
        });
    }
    if json {
        format!("[{}]\n", objs.join(","))
    } else {
        text
    }
}
