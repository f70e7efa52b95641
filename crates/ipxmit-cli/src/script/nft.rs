//! `nft` lines: nft(8) commands on the stack's [`ipxmit::nft::Nft`],
//! answered and printed as nft 1.0.6 does.
//!
//! A line's words after `nft` (split with the shell's rules) are joined
//! with single spaces into one nft command, which is tokenized as nft's
//! scanner does (`{ } , ;` stand alone, `"..."` is a string), then parsed
//! here; rules are parsed by [`super::nft_rule`] and listings printed by
//! [`super::nft_list`].

use ipxmit::nft::{
    BaseChain, ChainHook, ChainType, DataType, Family, MapData, Nft, NftError, Policy, Position,
    Ruleset, SetOpts, SetUpdate, Stmt,
};
use std::sync::Arc;

use ipxmit::Stack;

/// One token of an nft command and where it starts and ends in the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tok {
    /// The text (a string without its quotes).
    pub text: String,
    /// A `"..."` string.
    pub quoted: bool,
    /// Byte offsets in the command.
    pub span: (usize, usize),
}

/// What is wrong with an nft command: the message and the span nft marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftParseError {
    /// The message after `Error: `.
    pub msg: String,
    /// Where (byte offsets), for the caret line.
    pub span: (usize, usize),
}

/// The object a `list` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListWhat {
    /// `list ruleset`.
    Ruleset,
    /// `list table [FAMILY] NAME`.
    Table(Family, Tok),
    /// `list chain [FAMILY] TABLE NAME`.
    Chain(Family, Tok, Tok),
    /// `list set [FAMILY] TABLE NAME`.
    Set(Family, Tok, Tok),
}

/// What an nft command does.
#[derive(Clone, Debug)]
pub enum Action {
    /// `add|create table`.
    AddTable(bool),
    /// `delete table`.
    DeleteTable,
    /// `flush table`.
    FlushTable,
    /// `add|create chain`.
    AddChain(Tok, Option<BaseChain>, bool),
    /// `delete chain`.
    DeleteChain(Tok),
    /// `flush chain`.
    FlushChain(Tok),
    /// `add|insert rule`.
    AddRule(Tok, Vec<Stmt>, Position),
    /// `delete rule ... handle N`.
    DeleteRule(Tok, u64, (usize, usize)),
    /// `add set`, `add map` (with its data type), `flags interval`, and
    /// its other options.
    AddSet(Tok, Vec<DataType>, bool, Option<MapData>, SetOpts),
    /// `add element`: the set and the tokens of its elements (typed by
    /// the set when the command runs).
    AddElements(Tok, Vec<Tok>),
    /// `list ...`.
    List(ListWhat),
}

/// A parsed nft command.
#[derive(Clone, Debug)]
pub struct NftCommand {
    /// The command as nft reads it (the words joined by single spaces).
    pub text: String,
    /// `-a`: show handles.
    pub handles: bool,
    /// `-j`: list as JSON.
    pub json: bool,
    /// The table's family and name (unused by `list`).
    pub family: Family,
    /// The table.
    pub table: Option<Tok>,
    /// What to do.
    pub action: Action,
}

/// Two commands are the same when their text and options are (the text
/// determines the rest).
impl PartialEq for NftCommand {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text && self.handles == o.handles && self.json == o.json
    }
}

impl Eq for NftCommand {}

/// Splits an nft command into tokens.
pub fn lex(cmd: &str) -> Result<Vec<Tok>, NftParseError> {
    let b = cmd.as_bytes();
    let (mut toks, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (text, quoted) = if matches!(c, b'{' | b'}' | b',' | b';') {
            i += 1;
            (cmd[start..i].to_string(), false)
        } else if c == b'"' {
            let end = cmd[i + 1..].find('"').ok_or(NftParseError {
                msg: "syntax error, unexpected junk".into(),
                span: (i, b.len()),
            })?;
            i += end + 2;
            (cmd[start + 1..i - 1].to_string(), true)
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"{},;\"".contains(&b[i]) {
                i += 1;
            }
            (cmd[start..i].to_string(), false)
        };
        toks.push(Tok {
            text,
            quoted,
            span: (start, i),
        });
    }
    Ok(toks)
}

/// A cursor over the tokens of one command.
pub struct P<'a> {
    /// The tokens.
    pub toks: &'a [Tok],
    /// The next one.
    pub i: usize,
    /// The command's length (where "newline" is).
    pub end: usize,
}

impl<'a> P<'a> {
    /// The next token, not taken.
    pub fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.i)
    }

    /// The next token's text, or "".
    pub fn peek_text(&self) -> &'a str {
        self.peek().map_or("", |t| t.text.as_str())
    }

    /// Takes the next token.
    pub fn take(&mut self) -> Result<&'a Tok, NftParseError> {
        let t = self.toks.get(self.i).ok_or_else(|| self.unexpected())?;
        self.i += 1;
        Ok(t)
    }

    /// Takes the next token if it is `w`.
    pub fn eat(&mut self, w: &str) -> bool {
        let yes = self.peek().is_some_and(|t| t.text == w && !t.quoted);
        if yes {
            self.i += 1;
        }
        yes
    }

    /// Takes `w` or fails.
    pub fn expect(&mut self, w: &str) -> Result<(), NftParseError> {
        if self.eat(w) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// `syntax error, unexpected X` at the next token.
    pub fn unexpected(&self) -> NftParseError {
        match self.peek() {
            Some(t) => NftParseError {
                msg: format!("syntax error, unexpected {}", t.text),
                span: t.span,
            },
            None => NftParseError {
                msg: "syntax error, unexpected newline".into(),
                span: (self.end, self.end + 1),
            },
        }
    }

    /// An error at token `t`.
    pub fn err(t: &Tok, msg: impl Into<String>) -> NftParseError {
        NftParseError {
            msg: msg.into(),
            span: t.span,
        }
    }
}

/// Parses the words after `nft`.
pub fn parse(words: &[String]) -> Result<NftCommand, String> {
    let (mut handles, mut json) = (false, false);
    let mut rest = words;
    while let Some((w, r)) = rest.split_first() {
        match w.as_str() {
            "-a" | "--handle" => handles = true,
            "-j" | "--json" => json = true,
            "-n" | "-s" | "--stateless" | "-nn" | "-p" => {}
            w if w.starts_with('-') => return Err(format!("Error: unknown option '{w}'")),
            _ => break,
        }
        rest = r;
    }
    let text = rest.join(" ");
    let toks = lex(&text).map_err(|e| render(&text, &e))?;
    let mut p = P {
        toks: &toks,
        i: 0,
        end: text.len(),
    };
    let r = command(&mut p, handles, &text);
    r.map(|c| NftCommand { json, ..c })
        .map_err(|e| render(&text, &e))
}

/// nft's error text: the message, the command, a caret line under the span.
pub fn render(cmd: &str, e: &NftParseError) -> String {
    let (a, b) = e.span;
    let carets = "^".repeat(b.saturating_sub(a).max(1));
    format!("Error: {}\n{cmd}\n{}{carets}", e.msg, " ".repeat(a))
}

fn command(p: &mut P<'_>, handles: bool, text: &str) -> Result<NftCommand, NftParseError> {
    let verb = p.take()?.text.clone();
    let obj = p.take()?;
    let mut c = NftCommand {
        text: text.to_string(),
        handles,
        json: false,
        family: Family::Ip,
        table: None,
        action: Action::List(ListWhat::Ruleset),
    };
    if verb == "list" {
        c.action = Action::List(list(p, obj)?);
        return end(p, c);
    }
    c.family = family(p)?;
    c.table = Some(p.take()?.clone());
    c.action = match (verb.as_str(), obj.text.as_str()) {
        ("add" | "create", "table") => Action::AddTable(verb == "create"),
        ("delete", "table") => Action::DeleteTable,
        ("flush", "table") => Action::FlushTable,
        ("add" | "create", "chain") => {
            let name = p.take()?.clone();
            let base = chain_spec(p, c.family)?;
            Action::AddChain(name, base, verb == "create")
        }
        ("delete", "chain") => Action::DeleteChain(p.take()?.clone()),
        ("flush", "chain") => Action::FlushChain(p.take()?.clone()),
        ("add" | "insert", "rule") => add_rule(p, verb == "insert")?,
        ("delete", "rule") => {
            let chain = p.take()?.clone();
            p.expect("handle")?;
            let t = p.take()?;
            Action::DeleteRule(chain, num(t)?, t.span)
        }
        ("add" | "create", "set" | "map") => {
            let name = p.take()?.clone();
            let (ty, interval, data, opts) = set_spec(p)?;
            if (obj.text == "map") != data.is_some() {
                return Err(P::err(
                    obj,
                    format!("syntax error, unexpected {}", obj.text),
                ));
            }
            Action::AddSet(name, ty, interval, data, opts)
        }
        ("add" | "create", "element") => {
            let name = p.take()?.clone();
            let rest = p.toks[p.i..].to_vec();
            p.i = p.toks.len();
            Action::AddElements(name, rest)
        }
        _ => {
            return Err(P::err(
                obj,
                format!("syntax error, unexpected {}", obj.text),
            ))
        }
    };
    end(p, c)
}

fn end(p: &mut P<'_>, c: NftCommand) -> Result<NftCommand, NftParseError> {
    match p.peek() {
        None => Ok(c),
        Some(_) => Err(p.unexpected()),
    }
}

fn num(t: &Tok) -> Result<u64, NftParseError> {
    crate::script::parse::parse_num(&t.text)
        .map_err(|_| P::err(t, format!("syntax error, unexpected {}", t.text)))
}

fn family(p: &mut P<'_>) -> Result<Family, NftParseError> {
    let f = match p.peek_text() {
        "ip" => Family::Ip,
        "netdev" => Family::Netdev,
        "inet" | "ip6" | "arp" | "bridge" => {
            let t = p.take()?;
            return Err(P::err(
                t,
                format!("family {} is not supported by ipxmit", t.text),
            ));
        }
        _ => return Ok(Family::Ip),
    };
    p.i += 1;
    Ok(f)
}

fn list(p: &mut P<'_>, obj: &Tok) -> Result<ListWhat, NftParseError> {
    Ok(match obj.text.as_str() {
        "ruleset" => ListWhat::Ruleset,
        "table" => {
            let f = family(p)?;
            ListWhat::Table(f, p.take()?.clone())
        }
        "chain" | "set" => {
            let f = family(p)?;
            let t = p.take()?.clone();
            let name = p.take()?.clone();
            match obj.text.as_str() {
                "set" => ListWhat::Set(f, t, name),
                _ => ListWhat::Chain(f, t, name),
            }
        }
        _ => {
            return Err(P::err(
                obj,
                format!("syntax error, unexpected {}", obj.text),
            ))
        }
    })
}

fn add_rule(p: &mut P<'_>, insert: bool) -> Result<Action, NftParseError> {
    let chain = p.take()?.clone();
    let mut at = None;
    if p.eat("handle") || p.eat("position") || p.eat("index") {
        at = Some(num(p.take()?)?);
    }
    let pos = if insert {
        Position::Insert(at)
    } else {
        Position::Append(at)
    };
    let stmts = super::nft_rule::parse_rule(p)?;
    Ok(Action::AddRule(chain, stmts, pos))
}

/// `{ type T hook H [device D] priority P; [policy V;] }`, or nothing.
fn chain_spec(p: &mut P<'_>, fam: Family) -> Result<Option<BaseChain>, NftParseError> {
    if !p.eat("{") {
        return Ok(None);
    }
    if p.eat("}") {
        return Ok(None);
    }
    p.expect("type")?;
    let ty = match p.take()?.text.as_str() {
        "filter" => ChainType::Filter,
        "route" => ChainType::Route,
        "nat" => ChainType::Nat,
        _ => return Err(P::err(&p.toks[p.i - 1], "unknown chain type")),
    };
    p.expect("hook")?;
    let ht = p.take()?;
    let hook = match ht.text.as_str() {
        "output" => ChainHook::Output,
        "postrouting" => ChainHook::Postrouting,
        "egress" => ChainHook::Egress,
        _ => {
            return Err(P::err(
                ht,
                format!("unknown chain hook or not on the output path: {}", ht.text),
            ))
        }
    };
    let device = if p.eat("device") {
        Some(p.take()?.text.clone())
    } else {
        None
    };
    p.expect("priority")?;
    let priority = super::nft_list::parse_priority(p, fam, hook)?;
    p.expect(";")?;
    let mut policy = Policy::Accept;
    if p.eat("policy") {
        policy = match p.take()?.text.as_str() {
            "accept" => Policy::Accept,
            "drop" => Policy::Drop,
            _ => return Err(P::err(&p.toks[p.i - 1], "syntax error, unexpected policy")),
        };
        p.expect(";")?;
    }
    p.expect("}")?;
    Ok(Some(BaseChain {
        ty,
        hook,
        device,
        priority,
        policy,
    }))
}

/// A set's type, `flags interval`, map data type and other options.
type SetSpec = (Vec<DataType>, bool, Option<MapData>, SetOpts);

/// `{ type T [. T] [: mark|verdict]; [size N;] [timeout T;] [flags F[,F];] }`.
fn set_spec(p: &mut P<'_>) -> Result<SetSpec, NftParseError> {
    p.expect("{")?;
    p.expect("type")?;
    let mut ty = Vec::new();
    loop {
        let t = p.take()?;
        ty.push(match t.text.as_str() {
            "ipv4_addr" => DataType::Ipv4Addr,
            "inet_service" => DataType::InetService,
            "mark" => DataType::Mark,
            "inet_proto" => DataType::InetProto,
            "time" => DataType::Time,
            _ => return Err(P::err(t, format!("unknown datatype {}", t.text))),
        });
        if !p.eat(".") {
            break;
        }
    }
    let data = if p.eat(":") {
        let t = p.take()?;
        Some(match t.text.as_str() {
            "mark" => MapData::Mark,
            "verdict" => MapData::Verdict,
            _ => {
                return Err(P::err(
                    t,
                    format!("map data type {} is not supported by ipxmit", t.text),
                ))
            }
        })
    } else {
        None
    };
    p.expect(";")?;
    let (mut interval, mut opts) = (false, SetOpts::default());
    while !p.eat("}") {
        let t = p.take()?;
        match t.text.as_str() {
            "flags" => loop {
                let f = p.take()?;
                match f.text.as_str() {
                    "interval" => interval = true,
                    "timeout" => opts.timeouts = true,
                    "dynamic" => opts.dynamic = true,
                    _ => return Err(P::err(f, format!("unsupported set flag {}", f.text))),
                }
                if !p.eat(",") {
                    break;
                }
            },
            "size" => {
                let n = p.take()?;
                opts.size = u32::try_from(num(n)?).map_err(|_| P::err(n, "size too large"))?;
            }
            "timeout" => {
                let ms = super::nft_rule::time_ms(p.take()?)?;
                opts.timeout = ipxmit::nft::dynset::timeout_ms(ms);
            }
            _ => return Err(P::err(t, format!("syntax error, unexpected {}", t.text))),
        }
        p.expect(";")?;
    }
    Ok((ty, interval, data, opts))
}

/// Carries out an nft command on `nft`, the stack's devices resolving
/// `oif`; returns what nft prints (a listing), or nft's error text.
pub fn run(stack: &Arc<Stack>, nft: &mut Nft, c: &NftCommand) -> Result<Option<String>, String> {
    let Some(table) = &c.table else {
        let Action::List(w) = &c.action else {
            return Ok(None);
        };
        let now = stack.now().as_nanos();
        let out = match c.json {
            true => super::nft_json::list(&nft.ruleset, w, now),
            false => super::nft_list::list(&nft.ruleset, w, c.handles, now),
        };
        return out.map(Some).map_err(|e| render(&c.text, &e));
    };
    let before = nft.ruleset.clone();
    apply(stack, nft, c, &table.text).map_err(|e| match e {
        Refused::Parse(e) => render(&c.text, &e),
        Refused::Nft(e) => {
            let span = blame(&before, c, table, &e);
            let msg = match e {
                NftError::NoDevice | NftError::DatatypeMismatch => e.to_string(),
                e => format!("Could not process rule: {e}"),
            };
            render(&c.text, &NftParseError { msg, span })
        }
    })?;
    Ok(None)
}

/// Why a command was refused.
enum Refused {
    Parse(NftParseError),
    Nft(NftError),
}

impl From<NftError> for Refused {
    fn from(e: NftError) -> Self {
        Refused::Nft(e)
    }
}

impl From<NftParseError> for Refused {
    fn from(e: NftParseError) -> Self {
        Refused::Parse(e)
    }
}

fn apply(stack: &Arc<Stack>, nft: &mut Nft, c: &NftCommand, tn: &str) -> Result<(), Refused> {
    let fam = c.family;
    match &c.action {
        Action::AddTable(create) => nft.commit(stack, |r| r.add_table(fam, tn, *create))?,
        Action::DeleteTable => nft.commit(stack, |r| r.delete_table(fam, tn))?,
        Action::FlushTable => nft.commit(stack, |r| r.flush_table(fam, tn))?,
        Action::AddChain(n, b, create) => {
            nft.commit(stack, |r| r.add_chain(fam, tn, &n.text, b.clone(), *create))?
        }
        Action::DeleteChain(n) => nft.commit(stack, |r| r.delete_chain(fam, tn, &n.text))?,
        Action::FlushChain(n) => nft.commit(stack, |r| r.flush_chain(fam, tn, &n.text))?,
        Action::AddRule(n, stmts, pos) => {
            if let Some(t) = nft.ruleset.table(fam, tn) {
                for s in stmts {
                    if let Stmt::SetUpdate(u) = s {
                        set_update_types(t, u, &c.text)?;
                    }
                }
            }
            let stmts = super::nft_rule::resolve(stack, stmts.clone())?;
            nft.commit(stack, |r| r.add_rule(fam, tn, &n.text, stmts, *pos))?;
        }
        Action::DeleteRule(n, h, _) => {
            nft.commit(stack, |r| r.delete_rule(fam, tn, &n.text, *h))?
        }
        Action::AddSet(n, ty, iv, None, o) => nft.commit(stack, |r| {
            r.add_set_with(fam, tn, &n.text, (ty.clone(), *iv), *o)
        })?,
        Action::AddSet(n, ty, iv, Some(d), _) => nft.commit(stack, |r| {
            r.add_map(fam, tn, &n.text, (ty.clone(), *d), *iv)
        })?,
        Action::AddElements(n, toks) => {
            let set = nft.ruleset.table(fam, tn).ok_or(NftError::NoEntry)?;
            let set = set.set(&n.text).ok_or(NftError::NoEntry)?;
            let mut p = P {
                toks,
                i: 0,
                end: c.text.len(),
            };
            if let Some(d) = set.map {
                let tys: Vec<_> = set
                    .ty
                    .iter()
                    .map(|d| super::nft_rule::ty_of_data(*d))
                    .collect();
                let m = super::nft_rule::map_elems(&mut p, &tys, d == MapData::Verdict)?;
                trailing(&p)?;
                if d == MapData::Verdict {
                    let t = nft.ruleset.table(fam, tn).ok_or(NftError::NoEntry)?;
                    let chains = m.elems.iter().map(|(_, v)| v).chain(&m.default);
                    for v in chains {
                        if let ipxmit::nft::MapValue::Verdict(
                            ipxmit::nft::RuleVerdict::Jump(c) | ipxmit::nft::RuleVerdict::Goto(c),
                        ) = v
                        {
                            t.chain(c).ok_or(NftError::NoEntry)?;
                        }
                    }
                }
                nft.commit(stack, |r| r.add_map_elements(fam, tn, &n.text, &m))?;
                return Ok(());
            }
            let (elems, star) = super::nft_rule::set_elems(&mut p, &set.ty)?;
            trailing(&p)?;
            nft.commit(stack, |r| {
                r.add_elements(fam, tn, &n.text, &elems)?;
                if star {
                    r.add_catchall(fam, tn, &n.text)?;
                }
                Ok(())
            })?;
        }
        Action::List(_) => {}
    }
    Ok(())
}

/// nft's evaluation of a set statement (`stmt_evaluate_set()`): the set
/// must exist (`No such file or directory` at `@NAME`) and have the key's
/// type (`datatype mismatch: expected T, expression has type E`).
fn set_update_types(t: &ipxmit::nft::Table, u: &SetUpdate, text: &str) -> Result<(), Refused> {
    use super::nft_rule::{ty_desc, ty_of, ty_of_data};
    let name = format!("@{}", u.set);
    let at = text.find(&name).unwrap_or(0);
    let span = (at, at + name.len());
    let Some(set) = t.set(&u.set) else {
        let msg = "No such file or directory".into();
        return Err(Refused::Parse(NftParseError { msg, span }));
    };
    let want: Vec<_> = set.ty.iter().map(|d| ty_of_data(*d)).collect();
    let have: Vec<_> = u.keys.iter().map(|k| ty_of(*k)).collect();
    if want == have {
        return Ok(());
    }
    let desc = |v: &[super::nft_rule::Ty]| match v {
        [one] => ty_desc(*one).to_string(),
        v => {
            let parts: Vec<&str> = v.iter().map(|t| ty_desc(*t)).collect();
            format!("concatenation of ({})", parts.join(", "))
        }
    };
    let msg = format!(
        "datatype mismatch: expected {}, expression has type {}",
        desc(&want),
        desc(&have)
    );
    Err(Refused::Parse(NftParseError { msg, span }))
}

/// Tokens after a command's end: nft's syntax error at the first.
fn trailing(p: &P<'_>) -> Result<(), NftParseError> {
    match p.peek() {
        Some(t) => Err(P::err(t, format!("syntax error, unexpected {}", t.text))),
        None => Ok(()),
    }
}

/// The token nft marks for a refusal: the table when it is missing, else
/// the object named, else (a rule handle) the handle.
fn blame(rs: &Ruleset, c: &NftCommand, table: &Tok, e: &NftError) -> (usize, usize) {
    let Some(t) = rs.table(c.family, &table.text) else {
        return table.span;
    };
    let obj = match &c.action {
        Action::AddChain(n, ..)
        | Action::DeleteChain(n)
        | Action::FlushChain(n)
        | Action::AddRule(n, ..)
        | Action::AddSet(n, ..)
        | Action::AddElements(n, _) => n,
        Action::DeleteRule(n, _, span) => {
            return if t.chain(&n.text).is_some() {
                *span
            } else {
                n.span
            };
        }
        _ => return table.span,
    };
    let exists = t.chain(&obj.text).is_some() || t.set(&obj.text).is_some();
    match (e, &c.action) {
        (NftError::NoEntry, Action::AddRule(..)) if exists => (c.text.len() - 1, c.text.len()),
        (NftError::Exists, Action::AddTable(_)) => table.span,
        _ => obj.span,
    }
}
