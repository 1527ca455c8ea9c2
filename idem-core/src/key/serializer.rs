//! The serde serializer that turns a value into the canonical encoding's tree.

use serde::ser::{self, Serialize};

use super::canonical::Node;
use super::error::KeyError;

fn float_error() -> KeyError {
    KeyError::new(
        "floats cannot be part of a key: their text form is not canonical; use an integer (cents, milliseconds) or a string",
    )
}

pub(super) struct NodeSerializer;

pub(super) struct SeqBuilder {
    items: Vec<Node>,
    /// Built by `serialize_tuple`: a composite key's parts.
    tuple: bool,
    /// For tuple and struct variants: the variant name wrapping the result.
    variant: Option<&'static str>,
}

pub(super) struct MapBuilder {
    entries: Vec<(String, Node)>,
    pending_key: Option<String>,
    variant: Option<&'static str>,
}

fn wrap(variant: Option<&'static str>, node: Node) -> Node {
    match variant {
        Some(name) => Node::Map(vec![(name.to_owned(), node)]),
        None => node,
    }
}

impl ser::Serializer for NodeSerializer {
    type Ok = Node;
    type Error = KeyError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Node, KeyError> {
        Ok(Node::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i16(self, v: i16) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i32(self, v: i32) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i64(self, v: i64) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_i128(self, v: i128) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u8(self, v: u8) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u16(self, v: u16) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u32(self, v: u32) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u64(self, v: u64) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_u128(self, v: u128) -> Result<Node, KeyError> {
        Ok(Node::Int(v.to_string()))
    }
    fn serialize_f32(self, _: f32) -> Result<Node, KeyError> {
        Err(float_error())
    }
    fn serialize_f64(self, _: f64) -> Result<Node, KeyError> {
        Err(float_error())
    }
    fn serialize_char(self, v: char) -> Result<Node, KeyError> {
        Ok(Node::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, KeyError> {
        Ok(Node::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Node, KeyError> {
        Ok(Node::Seq(
            v.iter().map(|b| Node::Int(b.to_string())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Node, KeyError> {
        Ok(Node::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, KeyError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, KeyError> {
        Ok(Node::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Node, KeyError> {
        Ok(Node::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Node, KeyError> {
        Ok(Node::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Node, KeyError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Node, KeyError> {
        Ok(wrap(Some(variant), value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, KeyError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0)),
            tuple: false,
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, KeyError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            tuple: true,
            variant: None,
        })
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqBuilder, KeyError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, KeyError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            tuple: false,
            variant: Some(variant),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            pending_key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapBuilder, KeyError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, KeyError> {
        Ok(MapBuilder {
            entries: Vec::with_capacity(len),
            pending_key: None,
            variant: Some(variant),
        })
    }
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.items.push(value.serialize(NodeSerializer)?);
        Ok(())
    }
    fn finish(self) -> Result<Node, KeyError> {
        let node = match self.tuple {
            true => Node::Tuple(self.items),
            false => Node::Seq(self.items),
        };
        Ok(wrap(self.variant, node))
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        self.push(value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl MapBuilder {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), KeyError> {
        self.entries
            .push((key.to_owned(), value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn finish(self) -> Result<Node, KeyError> {
        Ok(wrap(self.variant, Node::Map(self.entries)))
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), KeyError> {
        self.pending_key = Some(match key.serialize(NodeSerializer)? {
            Node::Str(s) | Node::Int(s) => s,
            _ => {
                return Err(KeyError::new(
                    "map keys inside a key must be strings or integers",
                ))
            }
        });
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), KeyError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| KeyError::new("a map value came without its key"))?;
        self.entries.push((key, value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Node;
    type Error = KeyError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Node, KeyError> {
        self.finish()
    }
}
