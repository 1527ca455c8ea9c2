//! The canonical encoding of the common keys written straight into the output, with no
//! tree: a scalar (a string, an integer, a bool, a unit variant, through newtypes and
//! `Some`), or a tuple of scalars. Any other shape (a sequence, a map, a struct, a
//! float) gives up, and the caller encodes the value through the tree, which also
//! produces every error; both write the same bytes (`tests/golden.rs` and the unit test
//! below compare them).

use std::fmt::Display;

use serde::ser::{self, Impossible, Serialize};

use super::canonical::write_str;

/// Not a shape this path writes: encode through the tree.
#[derive(Debug)]
pub(super) struct Fallback;

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a scalar or a tuple of scalars")
    }
}

impl std::error::Error for Fallback {}

impl ser::Error for Fallback {
    fn custom<T: Display>(_: T) -> Self {
        Fallback
    }
}

/// Writes `value`'s canonical encoding into `out` if it is a scalar or a tuple of
/// scalars. `Ok(true)` when it is empty as a key: `""` or `null`, or a tuple with such
/// a part (or no part). On `Err`, `out` holds a partial encoding: clear it.
pub(super) fn write_key<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<bool, Fallback> {
    value.serialize(Key { out })
}

/// The top level: a scalar, or a tuple whose parts are scalars.
struct Key<'a> {
    out: &'a mut Vec<u8>,
}

/// One scalar; `Ok(true)` when it is `""` or `null`.
struct Scalar<'a> {
    out: &'a mut Vec<u8>,
}

/// A tuple's parts so far: whether one was empty, and how many.
struct Parts<'a> {
    out: &'a mut Vec<u8>,
    empty_part: bool,
    count: usize,
}

/// An integer in decimal, as `Display` writes it (`itoa`, without the formatter).
fn int(out: &mut Vec<u8>, v: impl itoa::Integer) -> Result<bool, Fallback> {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    Ok(false)
}

/// The scalar methods, the same for the top level and a tuple's part.
macro_rules! scalars {
    () => {
        fn serialize_bool(self, v: bool) -> Result<bool, Fallback> {
            self.out
                .extend_from_slice(if v { b"true" } else { b"false" });
            Ok(false)
        }
        fn serialize_i8(self, v: i8) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_i16(self, v: i16) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_i32(self, v: i32) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_i64(self, v: i64) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_i128(self, v: i128) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_u8(self, v: u8) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_u16(self, v: u16) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_u32(self, v: u32) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_u64(self, v: u64) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_u128(self, v: u128) -> Result<bool, Fallback> {
            int(self.out, v)
        }
        fn serialize_f32(self, _: f32) -> Result<bool, Fallback> {
            Err(Fallback)
        }
        fn serialize_f64(self, _: f64) -> Result<bool, Fallback> {
            Err(Fallback)
        }
        fn serialize_char(self, v: char) -> Result<bool, Fallback> {
            write_str(v.encode_utf8(&mut [0; 4]), self.out);
            Ok(false)
        }
        fn serialize_str(self, v: &str) -> Result<bool, Fallback> {
            write_str(v, self.out);
            Ok(v.is_empty())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<bool, Fallback> {
            Err(Fallback)
        }
        fn serialize_none(self) -> Result<bool, Fallback> {
            self.out.extend_from_slice(b"null");
            Ok(true)
        }
        fn serialize_unit(self) -> Result<bool, Fallback> {
            self.serialize_none()
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<bool, Fallback> {
            self.serialize_none()
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<bool, Fallback> {
            write_str(variant, self.out);
            Ok(variant.is_empty())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<bool, Fallback> {
            value.serialize(self)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<bool, Fallback> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<bool, Fallback> {
            Err(Fallback)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Fallback> {
            Err(Fallback)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Fallback> {
            Err(Fallback)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Fallback> {
            Err(Fallback)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Fallback> {
            Err(Fallback)
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Fallback> {
            Err(Fallback)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Fallback> {
            Err(Fallback)
        }
    };
}

impl<'a> ser::Serializer for Key<'a> {
    type Ok = bool;
    type Error = Fallback;
    type SerializeSeq = Impossible<bool, Fallback>;
    type SerializeTuple = Parts<'a>;
    type SerializeTupleStruct = Impossible<bool, Fallback>;
    type SerializeTupleVariant = Impossible<bool, Fallback>;
    type SerializeMap = Impossible<bool, Fallback>;
    type SerializeStruct = Impossible<bool, Fallback>;
    type SerializeStructVariant = Impossible<bool, Fallback>;

    scalars!();

    fn serialize_tuple(self, _: usize) -> Result<Parts<'a>, Fallback> {
        self.out.push(b'[');
        Ok(Parts {
            out: self.out,
            empty_part: false,
            count: 0,
        })
    }
}

impl ser::Serializer for Scalar<'_> {
    type Ok = bool;
    type Error = Fallback;
    type SerializeSeq = Impossible<bool, Fallback>;
    type SerializeTuple = Impossible<bool, Fallback>;
    type SerializeTupleStruct = Impossible<bool, Fallback>;
    type SerializeTupleVariant = Impossible<bool, Fallback>;
    type SerializeMap = Impossible<bool, Fallback>;
    type SerializeStruct = Impossible<bool, Fallback>;
    type SerializeStructVariant = Impossible<bool, Fallback>;

    scalars!();

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Fallback> {
        Err(Fallback)
    }
}

impl ser::SerializeTuple for Parts<'_> {
    type Ok = bool;
    type Error = Fallback;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Fallback> {
        if self.count > 0 {
            self.out.push(b',');
        }
        self.count += 1;
        self.empty_part |= value.serialize(Scalar { out: self.out })?;
        Ok(())
    }

    fn end(self) -> Result<bool, Fallback> {
        self.out.push(b']');
        Ok(self.empty_part || self.count == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::canonical::tree_key;
    use super::*;

    /// The direct path writes what the tree writes, and finds the same keys empty.
    #[test]
    fn writes_what_the_tree_writes() {
        #[derive(serde::Serialize)]
        enum Kind {
            Order,
            #[serde(rename = "")]
            Blank,
        }
        #[derive(serde::Serialize)]
        struct Id(u64);
        fn same<T: Serialize>(value: T) {
            let mut direct = Vec::new();
            let empty = write_key(&value, &mut direct).expect("a direct shape");
            let tree = tree_key(&value);
            match tree {
                Ok(bytes) => {
                    assert!(!empty, "{:?}", String::from_utf8_lossy(&bytes));
                    assert_eq!(direct, bytes);
                }
                Err(error) => assert!(empty && error.is_empty_key(), "{error}"),
            }
        }
        same("req-1");
        same("é \" \\ \n \u{1} \u{1f}");
        same("");
        same(0u8);
        same(-7i8);
        same(u64::MAX);
        same(i64::MIN);
        same(u128::MAX);
        same(i128::MIN);
        same(true);
        same('x');
        same('"');
        same(None::<u64>);
        same(Some("a"));
        same(());
        same(Kind::Order);
        same(Kind::Blank);
        same(Id(7));
        same(("tenant", 7u64));
        same(("tenant", ""));
        same(("tenant", None::<&str>));
        same((Some(1u8), Id(2), Kind::Order, 'c', false));
        for shape in [
            write_key(&vec![1u8], &mut Vec::new()).is_err(),
            write_key(&1.5f64, &mut Vec::new()).is_err(),
            write_key(&("a", vec![1u8]), &mut Vec::new()).is_err(),
            write_key(&std::collections::BTreeMap::from([(1, 2)]), &mut Vec::new()).is_err(),
        ] {
            assert!(shape, "compound values and floats go through the tree");
        }
    }
}
