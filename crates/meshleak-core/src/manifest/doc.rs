//! Kubernetes manifests as YAML (or JSON, which YAML reads) multi-document streams, into
//! trees that keep each node's line: a verdict cites `file:line` of the field that
//! decides it. Read as kubectl reads them (sigs.k8s.io/yaml, go-yaml v2: YAML 1.1): plain
//! integers as Go's `ParseInt(s, 0, 64)` takes them (`02471`, `0o2471`, `0x539`,
//! `0b10100111001` and `1_337` are all 1337), booleans and nulls in YAML 1.1's spellings,
//! merge keys (`<<: *anchor`) merged, anchors and aliases resolved. A key repeated in one
//! mapping is an error: tools disagree on which one counts, so an identity could hide
//! behind the one meshleak did not read.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A node of a document, with the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Any other scalar (floats too: no field read here is one).
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value at `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at a path of mapping keys.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| n.get(k))
    }

    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string-valued field, whatever its YAML type (annotations are strings, but a
    /// plain `false` or `8080` reads as a bool or an int).
    pub fn text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match &self.value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn bool(&self) -> Option<bool> {
        match &self.value {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn seq(&self) -> &[Node] {
        match &self.value {
            Value::Seq(s) => s,
            _ => &[],
        }
    }

    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }
}

/// One document of a stream, with the line it starts on.
#[derive(Clone, Debug)]
pub struct Document {
    /// 1-based: the first document of a stream is 1.
    pub index: usize,
    pub line: usize,
    pub root: Node,
}

/// A stream that could not be read: the line and what is wrong. Documents before it
/// were read and are kept.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub document: usize,
    pub line: usize,
    pub message: String,
}

/// Every document of `text`, and the error that stopped reading, if any. Documents are
/// split as kubectl splits them (k8s.io/apimachinery's YAMLReader): at each line that
/// starts with `---` followed by nothing but spaces or a comment (`---#` too); a `---`
/// followed by anything else is an error. Each document is then parsed on its own, a
/// byte-order mark at its start dropped.
pub fn documents(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    let mut builder = Builder::default();
    let mut chunk = String::new();
    let mut first_line = 1;
    let mut error = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let Some(rest) = line.strip_prefix("---") else {
            chunk.push_str(line);
            continue;
        };
        let rest = rest.trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            error = parse_chunk(&mut builder, &chunk, first_line).or(Some(SyntaxError {
                document: builder.docs.len() + 1,
                line: i + 1,
                message: format!(
                    "invalid document separator `{}`: kubectl allows only spaces or a comment after ---",
                    line.trim_end()
                ),
            }));
            return (builder.docs, builder.failed.or(error));
        }
        if let Some(e) = parse_chunk(&mut builder, &chunk, first_line) {
            return (builder.docs, builder.failed.or(Some(e)));
        }
        chunk.clear();
        first_line = i + 2;
    }
    if error.is_none() {
        error = parse_chunk(&mut builder, &chunk, first_line);
    }
    (builder.docs, builder.failed.or(error))
}

/// Parses one document's text, starting at line `first_line` of the stream.
fn parse_chunk(builder: &mut Builder, chunk: &str, first_line: usize) -> Option<SyntaxError> {
    let chunk = chunk.strip_prefix('\u{feff}').unwrap_or(chunk);
    builder.offset = first_line - 1;
    builder.doc_line = first_line;
    let mut parser = Parser::new_from_str(chunk);
    let failed = parser.load(builder, true).err().map(|e| SyntaxError {
        document: builder.docs.len() + 1,
        line: e.marker().line() + first_line - 1,
        message: e.info().to_string(),
    });
    builder.failed.clone().or(failed)
}

#[derive(Default)]
struct Builder {
    /// A repeated key: (line, message) of the first.
    error: Option<(usize, String)>,
    docs: Vec<Document>,
    /// The first document with a repeated key: reading stops there.
    failed: Option<SyntaxError>,
    doc_line: usize,
    /// Lines before the document being parsed.
    offset: usize,
    /// Open collections: a sequence's items, or a mapping's entries and a pending key.
    stack: Vec<Open>,
    anchors: Vec<(usize, Node)>,
}

enum Open {
    Seq(Node, usize),
    Map(Node, usize, Option<String>),
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => {
                if let Some((line, message)) = self.error.take() {
                    self.failed.get_or_insert(SyntaxError {
                        document: self.docs.len() + 1,
                        line,
                        message,
                    });
                }
                if self.failed.is_none() {
                    self.docs.push(Document {
                        index: self.docs.len() + 1,
                        line: self.doc_line,
                        root: node,
                    });
                }
            }
            Some(Open::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Open::Map(map, _, key)) => match key.take() {
                None => *key = Some(node.text().unwrap_or_default()),
                Some(k) => {
                    if let Value::Map(entries) = &mut map.value {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line() + self.offset;
        match ev {
            Event::DocumentStart => self.doc_line = self.doc_line.max(line),
            Event::Scalar(text, style, anchor, tag) => {
                let value = match (tag.as_ref().and_then(core_tag), style) {
                    (Some(t), _) => tagged(t, &text),
                    (None, TScalarStyle::Plain) if text == "<<" => Value::Str(MERGE.into()),
                    (None, TScalarStyle::Plain) => plain(&text),
                    (None, _) => Value::Str(text),
                };
                self.push(Node { line, value }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(
                Node {
                    line,
                    value: Value::Seq(Vec::new()),
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(
                Node {
                    line,
                    value: Value::Map(Vec::new()),
                },
                anchor,
                None,
            )),
            Event::SequenceEnd => {
                if let Some(Open::Seq(n, a)) = self.stack.pop() {
                    self.push(n, a);
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(mut n, a, _)) = self.stack.pop() {
                    if let Value::Map(entries) = &mut n.value {
                        if let Some(dup) = repeated(entries) {
                            self.error.get_or_insert(dup);
                        }
                        merge(entries);
                    }
                    self.push(n, a);
                }
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone())
                    .unwrap_or(Node {
                        line,
                        value: Value::Null,
                    });
                self.push(node, 0);
            }
            _ => {}
        }
    }
}

/// A plain `<<` key (a quoted one is an ordinary key).
const MERGE: &str = "\u{0}<<";

/// Merge keys as go-yaml v2 applies them: the mapping's entries in order, each `<<` setting
/// its mapping's keys (of a sequence of mappings, the last first, so earlier ones win)
/// over what came before it, and a later key over a merged one.
fn merge(entries: &mut Vec<(String, Node)>) {
    if !entries.iter().any(|(k, _)| k == MERGE) {
        return;
    }
    let mut out: Vec<(String, Node)> = Vec::new();
    let mut set = |k: &str, v: &Node| match out.iter_mut().find(|(e, _)| e == k) {
        Some(slot) => slot.1 = v.clone(),
        None => out.push((k.to_string(), v.clone())),
    };
    for (k, v) in entries.iter() {
        if k != MERGE {
            set(k, v);
            continue;
        }
        let sources: Vec<&Node> = match &v.value {
            Value::Seq(s) => s.iter().rev().collect(),
            _ => vec![v],
        };
        for s in sources {
            for (mk, mv) in s.entries() {
                set(mk, mv);
            }
        }
    }
    *entries = out;
}

/// The YAML core tag (`!!int`, `!!str`, ...) a scalar carries, if any.
fn core_tag(tag: &yaml_rust2::parser::Tag) -> Option<&str> {
    matches!(tag.handle.as_str(), "!!" | "tag:yaml.org,2002:").then_some(tag.suffix.as_str())
}

/// A scalar with an explicit core tag, as go-yaml v2 reads it: `!!int "1337"` is 1337,
/// `!!bool "true"` true, `!!str 1337` the text.
fn tagged(tag: &str, text: &str) -> Value {
    match tag {
        "str" => Value::Str(text.to_string()),
        "null" => Value::Null,
        "bool" | "int" | "float" => match plain(text) {
            Value::Str(_) => Value::Str(text.to_string()),
            v => v,
        },
        _ => plain(text),
    }
}

/// A key given twice in one mapping (merge keys aside): (line, message).
fn repeated(entries: &[(String, Node)]) -> Option<(usize, String)> {
    entries.iter().enumerate().find_map(|(i, (k, v))| {
        if k == MERGE {
            return None;
        }
        let first = entries[..i].iter().find(|(e, _)| e == k)?;
        Some((
            v.line,
            format!(
                "key `{k}` is repeated (lines {} and {}): Kubernetes tools disagree on which counts; keep one",
                first.1.line, v.line
            ),
        ))
    })
}

/// A plain scalar as go-yaml v2 (YAML 1.1, which kubectl reads with) types it.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            Value::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            Value::Bool(false)
        }
        _ => go_int(text)
            .or_else(|| whole_float(text))
            .map_or_else(|| Value::Str(text.to_string()), Value::Int),
    }
}

/// A float that is a whole number (`1337.0`, `1.337e3`): kubectl turns YAML into JSON,
/// where it is the integer an int field takes.
fn whole_float(text: &str) -> Option<i64> {
    if text.starts_with('_') {
        return None;
    }
    let digits = text.replace('_', "");
    let looks = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && digits.bytes().any(|b| b.is_ascii_digit());
    let f: f64 = digits.parse().ok().filter(|_| looks)?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// go-yaml v2's integers: Go's `strconv.ParseInt(s, 0, 64)` (a sign, then `0x`/`0o`/`0b`
/// or a leading `0` for octal, or decimal) of the text without its `_`s.
fn go_int(text: &str) -> Option<i64> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower)
    };
    // go-yaml v2 drops every `_` before it parses (a leading one makes a string).
    if body.starts_with('_') {
        return None;
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(&digits, radix).ok()?;
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_lines_types_and_aliases() {
        let text = "\
# helm template output
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    sidecar.istio.io/inject: \"false\"
    port: 8080
spec:
  securityContext: &sc
    runAsGroup: 1337
  containers:
    - name: app
      securityContext: *sc
---
{\"kind\": \"List\", \"items\": []}
";
        let (docs, err) = documents(text);
        assert_eq!(err, None);
        assert_eq!(docs.len(), 2);
        let pod = &docs[0].root;
        assert_eq!(docs[0].line, 3);
        assert_eq!(pod.at(&["metadata", "name"]).unwrap().str(), Some("web"));
        let ann = pod.at(&["metadata", "annotations"]).unwrap();
        assert_eq!(
            ann.get("sidecar.istio.io/inject").unwrap().value,
            Value::Str("false".into())
        );
        assert_eq!(ann.get("port").unwrap().text().as_deref(), Some("8080"));
        let group = pod.at(&["spec", "securityContext", "runAsGroup"]).unwrap();
        assert_eq!((group.int(), group.line), (Some(1337), 12));
        let c = &pod.at(&["spec", "containers"]).unwrap().seq()[0];
        assert_eq!(
            c.at(&["securityContext", "runAsGroup"]).unwrap().int(),
            Some(1337)
        );
        assert_eq!(docs[1].root.get("kind").unwrap().str(), Some("List"));
    }

    /// What kubectl (go-yaml v2) reads as 1337, merge keys, and a repeated key.
    #[test]
    fn integers_merges_and_repeated_keys_as_kubectl_reads_them() {
        for text in [
            "1337",
            "02471",
            "0o2471",
            "0x539",
            "0X539",
            "0b10100111001",
            "1_337",
            "+1337",
        ] {
            assert_eq!(plain(text), Value::Int(1337), "{text}");
        }
        // Not an integer to Go, but a float that YAML-to-JSON makes one.
        assert_eq!(plain("08"), Value::Int(8));
        assert_eq!(plain("1337.0"), Value::Int(1337));
        assert_eq!(plain("1__337_"), Value::Int(1337));
        for text in ["0x", "_1337", "13.5", "inf", "\"1337\""] {
            assert!(matches!(plain(text), Value::Str(_)), "{text}");
        }
        assert_eq!(plain("yes"), Value::Bool(true));
        let (docs, err) = documents(
            "base: &sc {runAsUser: 10001, runAsGroup: 1337}\nsc:\n  <<: *sc\n  runAsUser: 10002\n",
        );
        assert_eq!(err, None);
        let sc = docs[0].root.get("sc").unwrap();
        assert_eq!(sc.get("runAsUser").unwrap().int(), Some(10002));
        assert_eq!(sc.get("runAsGroup").unwrap().int(), Some(1337));
        assert!(sc.get("<<").is_none());
        let (docs, err) =
            documents("kind: Pod\n---\nsc: {runAsGroup: 10001}\nx:\n  a: 1\n  a: 2\n");
        assert_eq!(docs.len(), 1);
        let err = err.unwrap();
        assert_eq!((err.document, err.line), (2, 6));
        assert!(
            err.message.contains("key `a` is repeated (lines 5 and 6)"),
            "{err:?}"
        );
    }

    /// What a hiding manifest tries: a merge after the key it overrides, two merges, a
    /// quoted `<<`, tags, a byte-order mark and `---#` between documents.
    #[test]
    fn documents_split_and_merged_as_kubectl_does() {
        let group = |text: &str| {
            let (docs, err) = documents(text);
            assert_eq!(err, None, "{text}");
            docs.last()
                .and_then(|d| d.root.at(&["sc", "runAsGroup"]))
                .map(|n| n.value.clone())
        };
        let g = |v: i64| Some(Value::Int(v));
        assert_eq!(
            group("x: &e {runAsGroup: 1337}\nsc:\n  runAsGroup: 10001\n  <<: *e\n"),
            g(1337)
        );
        assert_eq!(
            group("a: &a {runAsGroup: 10001}\nb: &b {runAsGroup: 1337}\nsc:\n  <<: *a\n  <<: *b\n"),
            g(1337)
        );
        assert_eq!(
            group("a: &a {runAsGroup: 10001}\nsc:\n  \"<<\": *a\n"),
            None
        );
        assert_eq!(group("sc: {runAsGroup: !!int \"1337\"}\n"), g(1337));
        assert_eq!(group("sc: {runAsGroup: 1.337e3}\n"), g(1337));
        assert_eq!(
            documents("h: !!bool \"true\"\n").0[0]
                .root
                .get("h")
                .unwrap()
                .value,
            Value::Bool(true)
        );
        let (docs, err) =
            documents("kind: ConfigMap\n---\n\u{feff}kind: Pod\n---#x\n{\"kind\": \"Pod\"}\n");
        assert_eq!(err, None);
        let kinds: Vec<(Option<&str>, usize)> = docs
            .iter()
            .map(|d| (d.root.get("kind").and_then(Node::str), d.root.line))
            .collect();
        assert_eq!(
            kinds,
            vec![(Some("ConfigMap"), 1), (Some("Pod"), 3), (Some("Pod"), 5)]
        );
        let (docs, err) = documents("kind: Pod\n--- kind: Service\n");
        assert_eq!(docs.len(), 1);
        assert_eq!(err.unwrap().line, 2);
    }

    #[test]
    fn a_syntax_error_names_its_document_and_line_and_keeps_the_ones_before() {
        let (docs, err) = documents("kind: Pod\n---\nkind: [Pod\nname: x\n");
        assert_eq!(docs.len(), 1);
        let err = err.unwrap();
        assert_eq!(err.document, 2);
        assert!(err.line >= 3, "{err:?}");
    }
}
