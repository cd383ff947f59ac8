//! `nft list ruleset` text, as users paste it into issues: read into the document
//! `nft -j list ruleset` gives for the same rules, so both forms mean exactly the same
//! (one reader, [`super::nft_json`]). Each rule keeps the text it was pasted as.
//!
//! Statements this reader does not know are kept as an unknown action holding the rest of
//! the rule (a verdict after them may or may not be reached), never dropped: the
//! verdicts they could decide are `unknown`.

use serde_json::{Value, json};

use super::ParseError;
use crate::model::NAT_FLAGS;

/// Whether `text` looks like nft's listing: its first line that is not blank or a
/// comment opens a table (or flushes the ruleset, as an `nft -f` file starts).
pub(super) fn detect(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("table ") || l == "flush ruleset")
}

pub(super) fn parse(file: &str, text: &str) -> Result<Vec<crate::model::Table>, ParseError> {
    let tokens = tokenize(file, text)?;
    let src: Vec<&str> = text.lines().collect();
    let mut p = Parser {
        file,
        src: &src,
        tokens: &tokens,
        at: 0,
        items: Vec::new(),
        lines: Vec::new(),
    };
    p.ruleset()?;
    let doc = json!({ "nftables": p.items });
    super::nft_json::from_doc(file, &doc, Some(&p.lines))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    /// A double-quoted string, without its quotes.
    Quoted(String),
    Open,
    Close,
    Semi,
    Comma,
    Newline,
}

struct Token {
    tok: Tok,
    line: usize,
    /// Byte offsets of the token in its line's text.
    start: usize,
    end: usize,
}

fn tokenize(file: &str, text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let b = line.as_bytes();
        let mut k = 0;
        while k < b.len() {
            let c = b[k];
            let start = k;
            let tok = match c {
                b' ' | b'\t' | b'\r' => {
                    k += 1;
                    continue;
                }
                // `# handle 7` (nft -a) and comments run to the end of the line.
                b'#' => break,
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b';' => Tok::Semi,
                b',' => Tok::Comma,
                b'"' => {
                    let close = line[k + 1..].find('"').ok_or_else(|| ParseError {
                        file: file.into(),
                        line: n,
                        token: Some(line[k..].to_string()),
                        message: "unterminated string".into(),
                    })?;
                    k += close + 2;
                    out.push(Token {
                        tok: Tok::Quoted(line[start + 1..k - 1].to_string()),
                        line: n,
                        start,
                        end: k,
                    });
                    continue;
                }
                _ => {
                    while k < b.len() && !b" \t\r#{};,\"".contains(&b[k]) {
                        k += 1;
                    }
                    out.push(Token {
                        tok: Tok::Word(line[start..k].to_string()),
                        line: n,
                        start,
                        end: k,
                    });
                    continue;
                }
            };
            k += 1;
            out.push(Token {
                tok,
                line: n,
                start,
                end: k,
            });
        }
        out.push(Token {
            tok: Tok::Newline,
            line: n,
            start: line.len(),
            end: line.len(),
        });
    }
    Ok(out)
}

struct Parser<'a> {
    file: &'a str,
    /// The input's lines, for each rule's text as pasted.
    src: &'a [&'a str],
    tokens: &'a [Token],
    at: usize,
    items: Vec<Value>,
    /// The line of each item.
    lines: Vec<usize>,
}

/// Priorities by name for ip, ip6 and inet tables (nft(8), "PRIORITY").
fn named_priority(name: &str) -> Option<i64> {
    Some(match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        _ => return None,
    })
}

/// Meta keys nft prints without `meta`.
const UNQUALIFIED_META: &[&str] = &[
    "iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup", "mark", "skuid", "skgid",
    "nfproto", "l4proto", "priority", "cgroup",
];

/// Words that begin a match (a left-hand side).
const LEFT_WORDS: &[&str] = &[
    "meta", "ct", "fib", "iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup", "mark",
    "skuid", "skgid", "nfproto", "l4proto", "priority", "cgroup", "ip", "ip6", "tcp", "udp",
    "udplite", "sctp", "dccp", "th", "icmp", "icmpv6", "ah", "esp", "comp", "vlan", "ether", "arp",
];

/// Words that start a statement rather than continue the one before.
const STATEMENTS: &[&str] = &[
    "accept",
    "drop",
    "return",
    "continue",
    "jump",
    "goto",
    "reject",
    "redirect",
    "dnat",
    "snat",
    "masquerade",
    "tproxy",
    "notrack",
    "counter",
    "log",
    "comment",
];

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn line(&self) -> usize {
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .map_or(0, |t| t.line)
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        let token = self.tokens.get(self.at).and_then(|t| match &t.tok {
            Tok::Word(w) | Tok::Quoted(w) => Some(w.clone()),
            _ => None,
        });
        ParseError {
            file: self.file.into(),
            line: self.line(),
            token,
            message: message.into(),
        }
    }

    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.tokens.get(self.at).map(|t| &t.tok);
        self.at += 1;
        t
    }

    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline | Tok::Semi)) {
            self.at += 1;
        }
    }

    fn word(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Word(w) | Tok::Quoted(w)) => {
                self.at += 1;
                Ok(w.clone())
            }
            _ => Err(self.err(format!("expected {what}"))),
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&tok) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}")))
        }
    }

    fn push(&mut self, item: Value, line: usize) {
        self.items.push(item);
        self.lines.push(line);
    }

    fn ruleset(&mut self) -> Result<(), ParseError> {
        loop {
            self.skip_newlines();
            match self.next() {
                None => return Ok(()),
                Some(Tok::Word(w)) if w == "table" => self.table()?,
                Some(Tok::Word(w)) if w == "flush" => {
                    self.word("`ruleset`")?;
                }
                _ => {
                    self.at -= 1;
                    return Err(self.err(
                        "expected `table FAMILY NAME {` (nft list ruleset output); `add rule` commands are not read",
                    ));
                }
            }
        }
    }

    fn table(&mut self) -> Result<(), ParseError> {
        let line = self.line();
        let family = self.word("a table family")?;
        let name = self.word("a table name")?;
        self.expect(Tok::Open, "`{` after the table's name")?;
        self.push(json!({"table": {"family": family, "name": name}}), line);
        loop {
            self.skip_newlines();
            match self.next() {
                Some(Tok::Close) => return Ok(()),
                Some(Tok::Word(w)) if w == "chain" => self.chain(&family, &name)?,
                Some(Tok::Word(w)) if w == "set" || w == "map" => {
                    let kind = if w == "set" { "set" } else { "map" };
                    self.set(kind, &family, &name)?
                }
                Some(Tok::Word(w)) if w == "flags" || w == "comment" => self.rest_of_line(),
                // Flowtables and stateful objects: their contents decide nothing this
                // reader models (a rule using one is unknown where it is reached).
                Some(Tok::Word(_)) => {
                    self.word("a name")?;
                    self.skip_block()?;
                }
                None => {
                    return Err(self.err(format!("table {family} {name} is not closed by `}}`")));
                }
                _ => {
                    self.at -= 1;
                    return Err(self.err("expected chain, set or `}`"));
                }
            }
        }
    }

    fn rest_of_line(&mut self) {
        while !matches!(self.peek(), None | Some(Tok::Newline | Tok::Semi)) {
            self.at += 1;
        }
    }

    /// Skips `{ ... }`, nested braces included.
    fn skip_block(&mut self) -> Result<(), ParseError> {
        self.skip_newlines();
        self.expect(Tok::Open, "`{`")?;
        let mut depth = 1;
        while depth > 0 {
            match self.next() {
                Some(Tok::Open) => depth += 1,
                Some(Tok::Close) => depth -= 1,
                Some(_) => {}
                None => return Err(self.err("block is not closed by `}`")),
            }
        }
        Ok(())
    }

    /// `NAME {` opening a chain or set: its line and name.
    fn block_head(&mut self, what: &str) -> Result<(usize, String), ParseError> {
        let line = self.line();
        let name = self.word(&format!("a {what} name"))?;
        self.expect(Tok::Open, &format!("`{{` after the {what}'s name"))?;
        Ok((line, name))
    }

    fn chain(&mut self, family: &str, table: &str) -> Result<(), ParseError> {
        let (line, name) = self.block_head("chain")?;
        let mut chain = json!({"family": family, "table": table, "name": name});
        let mut rules = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                Some(Tok::Close) => {
                    self.at += 1;
                    break;
                }
                None => return Err(self.err(format!("chain {name} is not closed by `}}`"))),
                Some(Tok::Word(w)) if w == "type" => self.chain_type(&mut chain)?,
                Some(Tok::Word(w)) if w == "policy" => {
                    self.at += 1;
                    chain["policy"] = json!(self.word("a policy")?);
                }
                Some(Tok::Word(w)) if w == "comment" || w == "devices" || w == "flags" => {
                    self.rest_of_line();
                }
                Some(_) => rules.push(self.rule(family, table, &name)?),
            }
        }
        self.push(json!({ "chain": chain }), line);
        for (rule, line) in rules {
            self.push(rule, line);
        }
        Ok(())
    }

    /// `type nat hook output priority -100` (priorities by name, with an offset too).
    fn chain_type(&mut self, chain: &mut Value) -> Result<(), ParseError> {
        self.at += 1;
        chain["type"] = json!(self.word("a chain type")?);
        if self.word("`hook`")? != "hook" {
            self.at -= 1;
            return Err(self.err("expected `hook`"));
        }
        chain["hook"] = json!(self.word("a hook")?);
        if matches!(self.peek(), Some(Tok::Word(w)) if w == "device") {
            self.at += 1;
            self.word("a device")?;
        }
        if self.word("`priority`")? != "priority" {
            self.at -= 1;
            return Err(self.err("expected `priority`"));
        }
        let first = self.word("a priority")?;
        let mut prio = match first.parse::<i64>() {
            Ok(n) => n,
            Err(_) => named_priority(&first)
                .ok_or_else(|| self.err(format!("unknown priority {first}")))?,
        };
        if let Some(Tok::Word(op)) = self.peek()
            && (op == "+" || op == "-")
        {
            let minus = op == "-";
            self.at += 1;
            let n: i64 = self
                .word("a priority offset")?
                .parse()
                .map_err(|_| self.err("expected a number after the priority's sign"))?;
            prio += if minus { -n } else { n };
        }
        chain["prio"] = json!(prio);
        Ok(())
    }

    /// A `set` or `map` block (`kind`): as `nft -j` writes it, its key's type and a map's
    /// elements as `[key, value]` pairs.
    fn set(&mut self, kind: &str, family: &str, table: &str) -> Result<(), ParseError> {
        let (line, name) = self.block_head(kind)?;
        let mut set = json!({"family": family, "table": table, "name": name});
        loop {
            self.skip_newlines();
            match self.next() {
                Some(Tok::Close) => break,
                Some(Tok::Word(w)) if w == "elements" => {
                    if self.word("`=`")? != "=" {
                        self.at -= 1;
                        return Err(self.err("expected `=` after `elements`"));
                    }
                    set["elem"] = self.value()?;
                    if let Some(list) = set["elem"].get("set").cloned() {
                        set["elem"] = list;
                    }
                }
                Some(Tok::Word(w)) if w == "type" => set["type"] = self.key_type(),
                Some(Tok::Word(w)) if w == "typeof" => {
                    if let Some(key) = self.key_typeof() {
                        set["type"] = json!({ "typeof": key });
                    }
                }
                Some(Tok::Word(_)) => self.rest_of_line(),
                None => return Err(self.err(format!("{kind} {name} is not closed by `}}`"))),
                _ => {}
            }
        }
        self.push(json!({ kind: set }), line);
        Ok(())
    }

    /// A set's `type ipv4_addr . inet_service` as `nft -j` writes it: one name, or the
    /// names a concatenation joins (a map's `: TYPE` after them skipped). The declaration
    /// is what shows an empty set's key is a concatenation.
    fn key_type(&mut self) -> Value {
        let mut names = Vec::new();
        while let Some(Tok::Word(w)) = self.peek() {
            if w == ":" {
                break;
            }
            if w != "." {
                names.push(json!(w));
            }
            self.at += 1;
        }
        self.rest_of_line();
        match names.len() {
            1 => names.remove(0),
            _ => Value::Array(names),
        }
    }

    /// A set's `typeof ip daddr . tcp dport`: the expression, as a match's left-hand side
    /// (nft 1.1's `nft -j` writes it so, under `typeof`); `None` for one this reader does
    /// not know (the set's key is then undeclared, never a parse error).
    fn key_typeof(&mut self) -> Option<Value> {
        let start = self.at;
        let key = self.left().ok();
        if key.is_none() {
            self.at = start;
        }
        self.rest_of_line();
        key
    }

    /// One rule line: its statements as `nft -j` writes them, and its text as pasted.
    fn rule(
        &mut self,
        family: &str,
        table: &str,
        chain: &str,
    ) -> Result<(Value, usize), ParseError> {
        let first = &self.tokens[self.at];
        let (line, from) = (first.line, first.start);
        let mut expr = Vec::new();
        let mut comment = None;
        while !matches!(self.peek(), None | Some(Tok::Newline)) {
            if matches!(self.peek(), Some(Tok::Word(w)) if w == "comment") {
                self.at += 1;
                comment = Some(self.word("the comment's text")?);
                continue;
            }
            expr.push(self.statement()?);
        }
        let end = self.tokens[..self.at]
            .iter()
            .rev()
            .find(|t| t.line == line && t.tok != Tok::Newline)
            .map_or(from, |t| t.end);
        let text = self.src[line - 1]
            .get(from..end)
            .unwrap_or_default()
            .to_string();
        let mut rule = json!({
            "family": family, "table": table, "chain": chain, "expr": expr, "listing": text,
        });
        if let Some(c) = comment {
            rule["comment"] = json!(c);
        }
        Ok((json!({ "rule": rule }), line))
    }

    fn statement(&mut self) -> Result<Value, ParseError> {
        let start = self.at;
        let Some(Tok::Word(word)) = self.peek() else {
            return Err(self.err("expected a statement"));
        };
        let word = word.clone();
        self.at += 1;
        Ok(match word.as_str() {
            "accept" | "drop" | "return" | "continue" | "notrack" => json!({ word: null }),

            "jump" | "goto" => json!({ word: {"target": self.word("a chain name")?} }),
            "counter" => {
                while matches!(self.peek(), Some(Tok::Word(w)) if w == "packets" || w == "bytes") {
                    self.at += 2;
                }
                json!({"counter": null})
            }
            "log" => {
                let mut body = json!({});
                while let Some(Tok::Word(w)) = self.peek() {
                    let key = w.clone();
                    if ![
                        "prefix",
                        "level",
                        "group",
                        "snaplen",
                        "queue-threshold",
                        "flags",
                    ]
                    .contains(&key.as_str())
                    {
                        break;
                    }
                    self.at += 1;
                    let v = self.word("a log option's value")?;
                    if key == "prefix" {
                        body["prefix"] = json!(v);
                    }
                }
                json!({ "log": body })
            }
            "reject" => {
                let mut body = json!({});
                if matches!(self.peek(), Some(Tok::Word(w)) if w == "with") {
                    self.at += 1;
                    let mut parts = Vec::new();
                    while let Some(Tok::Word(w)) = self.peek() {
                        if STATEMENTS.contains(&w.as_str()) {
                            break;
                        }
                        parts.push(w.clone());
                        self.at += 1;
                    }
                    body["type"] = json!(parts.join(" "));
                }
                json!({ "reject": body })
            }
            // `redirect [to :PORT] [FLAGS]`, `masquerade [to :PORT] [FLAGS]`.
            "redirect" | "masquerade" => {
                let mut body = json!({});
                if matches!(self.peek(), Some(Tok::Word(w)) if w == "to") {
                    self.at += 1;
                    let target = self.word("`:PORT`")?;
                    let port = target.strip_prefix(':').ok_or_else(|| {
                        self.at -= 1;
                        self.err(format!("expected `:PORT` after `{word} to`"))
                    })?;
                    body["port"] = scalar(port);
                }
                self.nat_flags(&mut body, None);
                json!({ word: body })
            }
            "dnat" | "snat" | "tproxy" => self.nat(&word)?,
            w if LEFT_WORDS.contains(&w) => {
                self.at = start;
                let left = self.left()?;
                self.after_left(left)?
            }
            "limit" => self.limit()?,
            _ => {
                self.at = start;
                self.unknown_rest()
            }
        })
    }

    /// A left-hand side: `ip daddr`, `meta mark`, `skuid`, `fib daddr . oif type`, and
    /// concatenations of them (`ip saddr . tcp dport`).
    fn left(&mut self) -> Result<Value, ParseError> {
        let mut parts = vec![self.left_one()?];
        while matches!(self.peek(), Some(Tok::Word(w)) if w == ".") {
            self.at += 1;
            parts.push(self.left_one()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            json!({ "concat": parts })
        })
    }

    fn left_one(&mut self) -> Result<Value, ParseError> {
        let word = self.word("a match")?;
        Ok(match word.as_str() {
            "meta" | "ct" => json!({ word.as_str(): {"key": self.word("a key")?} }),
            "fib" => {
                let mut flags = vec![self.word("a fib flag")?];
                while matches!(self.peek(), Some(Tok::Word(w)) if w == ".") {
                    self.at += 1;
                    flags.push(self.word("a fib flag")?);
                }
                let result = self.word("a fib result")?;
                json!({"fib": {"result": result, "flags": flags}})
            }
            w if UNQUALIFIED_META.contains(&w) => json!({"meta": {"key": word}}),
            w if LEFT_WORDS.contains(&w) => {
                let field = self.word("a header field")?;
                json!({"payload": {"protocol": word, "field": field}})
            }
            _ => {
                self.at -= 1;
                return Err(self.err("expected a match"));
            }
        })
    }

    /// `limit rate [over] 10/second [burst 5 packets]`: a test meshleak does not model.
    fn limit(&mut self) -> Result<Value, ParseError> {
        let start = self.at - 1;
        if self.word("`rate`")? != "rate" {
            self.at -= 1;
            return Err(self.err("expected `rate` after `limit`"));
        }
        if matches!(self.peek(), Some(Tok::Word(w)) if w == "over") {
            self.at += 1;
        }
        self.word("a rate")?;
        // `10 mbytes/second` puts a unit before the slash.
        if matches!(self.peek(), Some(Tok::Word(w)) if w.starts_with('/') || w.contains("bytes/")) {
            self.at += 1;
        }
        if matches!(self.peek(), Some(Tok::Word(w)) if w == "burst") {
            self.at += 3;
        }
        Ok(json!({"limit": {"listing": self.text_since(start)}}))
    }

    /// `dnat ip to 10.0.0.1:80`, `snat to [fd00::1]:53`, `tproxy ip to :15006`.
    fn nat(&mut self, word: &str) -> Result<Value, ParseError> {
        let mut body = json!({});
        if let Some(Tok::Word(f)) = self.peek()
            && (f == "ip" || f == "ip6")
        {
            body["family"] = json!(f);
            self.at += 1;
        }
        // `dnat prefix to NET`: NETMAP, as `nft -j` lists it.
        let prefix = matches!(self.peek(), Some(Tok::Word(w)) if w == "prefix");
        if prefix {
            body["type_flags"] = json!("prefix");
            self.at += 1;
        }
        if self.word("`to`")? != "to" {
            self.at -= 1;
            return Err(self.err(format!("expected `to` after `{word}`")));
        }
        let target = self.word("an address or :PORT")?;
        let (addr, port) = split_host_port(&target)
            .ok_or_else(|| self.err(format!("`{target}` is not ADDRESS[:PORT] or :PORT")))?;
        if !addr.is_empty() {
            body["addr"] = scalar(addr);
        }
        if let Some(p) = port {
            body["port"] = scalar(p);
        }
        self.nat_flags(&mut body, prefix.then_some("netmap"));
        Ok(json!({ word: body }))
    }

    /// `persistent`, `random`, `fully-random` flags after a NAT target, as `nft -j`
    /// lists them, with `implied` (`netmap` for `prefix to`) after them.
    fn nat_flags(&mut self, body: &mut Value, implied: Option<&str>) {
        let mut flags = Vec::new();
        while let Some(Tok::Word(w)) = self.peek() {
            if !NAT_FLAGS.iter().any(|(_, nft, _)| nft == w) {
                break;
            }
            flags.push(json!(w));
            self.at += 1;
            if self.peek() == Some(&Tok::Comma) {
                self.at += 1;
            }
        }
        flags.extend(implied.map(|f| json!(f)));
        match flags.len() {
            0 => {}
            1 => body["flags"] = flags.remove(0),
            _ => body["flags"] = json!(flags),
        }
    }

    /// A bitwise operator next (`&`, `|`, `^`, or nft's words for them), taken, as
    /// `nft -j` names it.
    fn bit_op(&mut self) -> Option<&'static str> {
        let Some(Tok::Word(w)) = self.peek() else {
            return None;
        };
        let op = match w.as_str() {
            "&" | "and" => "&",
            "|" | "or" => "|",
            "^" | "xor" => "^",
            _ => return None,
        };
        self.at += 1;
        Some(op)
    }

    /// What follows a left-hand side: a bitmask, then a comparison, a `set` (mangle), or
    /// a verdict map.
    fn after_left(&mut self, mut left: Value) -> Result<Value, ParseError> {
        if matches!(self.peek(), Some(Tok::Word(w)) if w == "set") {
            self.at += 1;
            let value = self.expression()?;
            return Ok(json!({"mangle": {"key": left, "value": value}}));
        }
        while let Some(op) = self.bit_op() {
            let v = self.value()?;
            left = json!({ op: [left, v] });
        }
        if matches!(self.peek(), Some(Tok::Word(w)) if w == "vmap") {
            self.at += 1;
            let data = self.value()?;
            return Ok(json!({"vmap": {"key": left, "data": data}}));
        }
        let mut op = "==";
        if let Some(Tok::Word(w)) = self.peek() {
            let known = [
                "==", "!=", "<", ">", "<=", ">=", "eq", "ne", "lt", "gt", "le", "ge",
            ];
            if known.contains(&w.as_str()) {
                op = match w.as_str() {
                    "eq" => "==",
                    "ne" => "!=",
                    "lt" => "<",
                    "gt" => ">",
                    "le" => "<=",
                    "ge" => ">=",
                    other => other,
                };
                // `op` borrows the token list, which outlives the parser's position.
                self.at += 1;
            }
        }
        let right = self.value()?;
        // A bare comma list (`ct state established,related`) is a flag set: nft -j says `in`.
        let op = if right.is_array() && op == "==" {
            "in"
        } else {
            op
        };
        Ok(json!({"match": {"op": op, "left": left, "right": right}}))
    }

    /// A mangle's value: `0x539`, `meta mark`, `meta mark & 0xffffff00 | 0x4`.
    fn expression(&mut self) -> Result<Value, ParseError> {
        let mut v = match self.peek() {
            Some(Tok::Word(w)) if w == "meta" || w == "ct" => {
                let kind = w.clone();
                self.at += 1;
                json!({ kind: {"key": self.word("a key")?} })
            }
            Some(Tok::Word(w)) if w == "mark" => {
                self.at += 1;
                json!({"meta": {"key": "mark"}})
            }
            _ => scalar(&self.word("a value")?),
        };
        while let Some(op) = self.bit_op() {
            let r = scalar(&self.word("a value")?);
            v = json!({ op: [v, r] });
        }
        Ok(v)
    }

    /// A right-hand side: a value, a `{ ... }` set (newlines inside allowed), `@set`, or a
    /// bare comma list of flags.
    fn value(&mut self) -> Result<Value, ParseError> {
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let mut items = Vec::new();
            loop {
                while matches!(self.peek(), Some(Tok::Newline | Tok::Comma)) {
                    self.at += 1;
                }
                match self.peek() {
                    Some(Tok::Close) => {
                        self.at += 1;
                        break;
                    }
                    None => return Err(self.err("set is not closed by `}`")),
                    _ => {
                        let mut item = self.single()?;
                        // A map's `key : value` pair, as nft -j writes it: [key, value].
                        if matches!(self.peek(), Some(Tok::Word(w)) if w == ":") {
                            self.at += 1;
                            item = json!([item, self.map_value()?]);
                        }
                        items.push(item);
                        // Element options (`timeout 1h`, `counter ...`) run to the comma.
                        while !matches!(
                            self.peek(),
                            None | Some(Tok::Comma | Tok::Close | Tok::Newline)
                        ) {
                            self.at += 1;
                        }
                    }
                }
            }
            return Ok(json!({ "set": items }));
        }
        let first = self.single()?;
        if self.peek() != Some(&Tok::Comma) {
            return Ok(first);
        }
        let mut list = vec![first];
        while self.peek() == Some(&Tok::Comma) {
            self.at += 1;
            list.push(self.single()?);
        }
        Ok(Value::Array(list))
    }

    /// A map element's value: a verdict (`accept`, `jump NAME`) as a statement, or data.
    fn map_value(&mut self) -> Result<Value, ParseError> {
        let w = self.word("a map value")?;
        Ok(match w.as_str() {
            "accept" | "drop" | "return" | "continue" => json!({ w: null }),
            "jump" | "goto" => json!({ w: {"target": self.word("a chain name")?} }),
            _ => scalar(&w),
        })
    }

    /// One value, or a concatenation of values (`192.0.2.1 . 80`), or flags joined by `|`
    /// (`established | related`), as `nft -j` writes them.
    fn single(&mut self) -> Result<Value, ParseError> {
        let first = self.atom()?;
        for (sep, key) in [(".", "concat"), ("|", "|")] {
            if matches!(self.peek(), Some(Tok::Word(w)) if w == sep) {
                let mut parts = vec![first];
                while matches!(self.peek(), Some(Tok::Word(w)) if w == sep) {
                    self.at += 1;
                    parts.push(self.atom()?);
                }
                return Ok(json!({ key: parts }));
            }
        }
        Ok(first)
    }

    fn atom(&mut self) -> Result<Value, ParseError> {
        match self.next() {
            Some(Tok::Quoted(q)) => Ok(json!(q)),
            Some(Tok::Word(w)) => Ok(scalar(w)),
            _ => {
                self.at -= 1;
                Err(self.err("expected a value"))
            }
        }
    }

    fn text_since(&self, start: usize) -> String {
        let toks = &self.tokens[start..self.at];
        toks.iter()
            .map(|t| match &t.tok {
                Tok::Word(w) => w.clone(),
                Tok::Quoted(q) => format!("\"{q}\""),
                Tok::Open => "{".into(),
                Tok::Close => "}".into(),
                Tok::Semi => ";".into(),
                Tok::Comma => ",".into(),
                Tok::Newline => String::new(),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A statement this reader does not know: it and the rest of the rule become one
    /// unknown action (what follows may be a verdict it decides whether to reach).
    fn unknown_rest(&mut self) -> Value {
        let start = self.at;
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Tok::Newline if depth == 0 => break,
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.at += 1;
        }
        json!({"listing": {"text": self.text_since(start)}})
    }
}

/// `10.0.0.1:80`, `[fd00::1]:80`, `:15001`, `fd00::1`, `10.0.0.1`.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')));
    }
    if let Some(port) = text.strip_prefix(':') {
        return Some(("", Some(port)));
    }
    match text.matches(':').count() {
        1 => {
            let (h, p) = text.split_once(':')?;
            Some((h, Some(p)))
        }
        _ => Some((text, None)),
    }
}

/// A word as `nft -j` writes it: numbers (decimal or hex) as numbers, `A-B` as a range,
/// `ADDR/LEN` as a prefix, anything else as a string.
fn scalar(word: &str) -> Value {
    if let Some(n) = number(word) {
        return json!(n);
    }
    if let Some((a, b)) = word.split_once('-')
        && let (Some(x), Some(y)) = (number(a), number(b))
    {
        return json!({"range": [x, y]});
    }
    if let Some((a, b)) = word.split_once('-')
        && a.parse::<std::net::IpAddr>().is_ok()
        && b.parse::<std::net::IpAddr>().is_ok()
    {
        return json!({"range": [a, b]});
    }
    if let Some((addr, len)) = word.split_once('/')
        && addr.parse::<std::net::IpAddr>().is_ok()
        && let Ok(len) = len.parse::<u8>()
    {
        return json!({"prefix": {"addr": addr, "len": len}});
    }
    json!(word)
}

fn number(word: &str) -> Option<u64> {
    match word.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None if word.bytes().all(|b| b.is_ascii_digit()) && !word.is_empty() => word.parse().ok(),
        None => None,
    }
}
