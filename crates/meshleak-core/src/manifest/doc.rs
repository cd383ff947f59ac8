//! Kubernetes manifests as YAML (or JSON, which YAML reads) multi-document streams, into
//! trees that keep each node's line: a verdict cites `file:line` of the field that
//! decides it. Scalars are typed as YAML 1.2's core schema types them (plain `true`,
//! `1337`, `null`); quoted ones stay strings. Anchors and aliases are resolved.

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

/// Every document of `text`, and the error that stopped reading, if any.
pub fn documents(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let error = parser.load(&mut builder, true).err().map(|e| SyntaxError {
        document: builder.docs.len() + 1,
        line: e.marker().line(),
        message: e.info().to_string(),
    });
    (builder.docs, error)
}

#[derive(Default)]
struct Builder {
    docs: Vec<Document>,
    doc_line: usize,
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
            None => self.docs.push(Document {
                index: self.docs.len() + 1,
                line: self.doc_line,
                root: node,
            }),
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
        let line = mark.line();
        match ev {
            Event::DocumentStart => self.doc_line = line,
            Event::Scalar(text, style, anchor, _) => {
                let value = if style == TScalarStyle::Plain {
                    plain(&text)
                } else {
                    Value::Str(text)
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
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(n, a) | Open::Map(n, a, _)) => self.push(n, a),
                None => {}
            },
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

/// A plain scalar as YAML 1.2's core schema types it.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            let int = text
                .strip_prefix("0x")
                .map(|h| i64::from_str_radix(h, 16))
                .or_else(|| text.strip_prefix("0o").map(|o| i64::from_str_radix(o, 8)))
                .unwrap_or_else(|| text.parse());
            int.map_or_else(|_| Value::Str(text.to_string()), Value::Int)
        }
    }
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
        assert_eq!(docs[0].line, 2);
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

    #[test]
    fn a_syntax_error_names_its_document_and_line_and_keeps_the_ones_before() {
        let (docs, err) = documents("kind: Pod\n---\nkind: [Pod\nname: x\n");
        assert_eq!(docs.len(), 1);
        let err = err.unwrap();
        assert_eq!(err.document, 2);
        assert!(err.line >= 3, "{err:?}");
    }
}
