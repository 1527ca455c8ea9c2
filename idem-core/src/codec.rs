//! How a value becomes a record's `data` and back: a value that serializes as one byte
//! string is recorded as those bytes ([`Codec::Bytes`]), everything else as JSON
//! ([`Codec::Json`]).
//!
//! "One byte string" is decided by serializing the value once into a probe that accepts
//! only that shape, with the usual human-readable flag (so `Uuid` and friends stay
//! strings): `serialize_bytes` (`bytes::Bytes`, `serde_bytes::ByteBuf`), a non-empty
//! sequence of `u8` (`Vec<u8>`, `&[u8]`), or either inside a newtype struct or `Some`.
//! The probe gives up at the first other call, so for any other value it costs one
//! failed call before the JSON encoding.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::value::{Error as DeError, SeqDeserializer};
use serde::de::{DeserializeOwned, Visitor};
use serde::ser::{self, Impossible, Serialize};
use serde::{forward_to_deserialize_any, Deserializer};

use crate::store::Codec;

/// A value encoded for a record: its codec and its data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Encoded {
    /// How `data` is encoded.
    pub codec: Codec,
    /// The encoded value.
    pub data: Bytes,
}

impl Encoded {
    /// Decodes the value as the type the body returned; the error says why it does not
    /// decode.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        decode(&self.codec, &self.data)
    }
}

thread_local! {
    /// The data of the bytes-codec record this thread is decoding, if any: what
    /// [`replayed_bytes`] shares.
    static DECODING: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Inside a `Deserialize` run while idem decodes a value recorded as bytes
/// ([`Codec::Bytes`]: a replay, a journaled step, [`Encoded::decode`]): the part of the
/// record's data that `slice` (borrowed from the deserializer, e.g. in
/// `Visitor::visit_bytes`) points into, as a [`Bytes`] sharing the record's buffer,
/// without a copy. `None` anywhere else (JSON, an empty slice, a slice that is not part
/// of the record, outside such a decode): copy then.
///
/// For a type that keeps a large part of a recorded byte string, such as a recorded
/// HTTP response's body: a replay then costs no copy of it. The shared part keeps the
/// record's whole buffer alive for as long as it lives.
///
/// ```
/// use bytes::Bytes;
/// // Outside a replay there is nothing to share: the caller copies.
/// let body = b"not a record".as_slice();
/// let kept = idem_core::replayed_bytes(body).unwrap_or_else(|| Bytes::copy_from_slice(body));
/// assert_eq!(kept, body);
/// ```
pub fn replayed_bytes(slice: &[u8]) -> Option<Bytes> {
    // `try_with`: a thread tearing down its thread-locals shares nothing, never panics.
    DECODING
        .try_with(|decoding| {
            let decoding = decoding.borrow();
            let data = decoding.as_ref()?;
            let start = data.as_ptr() as usize;
            let at = slice.as_ptr() as usize;
            (!slice.is_empty() && at >= start && at + slice.len() <= start + data.len())
                .then(|| data.slice_ref(slice))
        })
        .ok()
        .flatten()
}

/// Puts back the data decoded before (none, unless a decode runs inside another's
/// `Deserialize`) when a decode ends, unwinding too.
struct Decoding(Option<Bytes>);

impl Drop for Decoding {
    fn drop(&mut self) {
        let before = self.0.take();
        let _ = DECODING.try_with(|decoding| *decoding.borrow_mut() = before);
    }
}

/// Encodes `value` for a record: its bytes as they are when it serializes as one byte
/// string and reads back from them as itself, JSON otherwise.
///
/// The read-back is what makes the choice safe for any type: one whose `Deserialize`
/// does not take a byte string as the value it wrote (an untagged enum whose bytes
/// variant would read back as its `String` variant, say) must not get the bytes codec,
/// or a duplicate would replay another value. It costs a decode and a probe of the
/// bytes when they are chosen (two copies of them), never for JSON values.
pub(crate) fn encode<T: Serialize + DeserializeOwned>(
    value: &T,
) -> Result<Encoded, serde_json::Error> {
    match value.serialize(Probe) {
        Ok(bytes) if reads_back::<T>(&bytes) => Ok(Encoded {
            codec: Codec::Bytes,
            data: bytes,
        }),
        Ok(_) | Err(NotBytes) => serde_json::to_vec(value).map(|mut json| {
            // serde_json starts at 128 bytes: a record keeps only what it holds (a
            // shrink is done in place), and a `Vec` whose length is its capacity
            // becomes `Bytes` without a second allocation.
            json.shrink_to_fit();
            Encoded {
                codec: Codec::Json,
                data: Bytes::from(json),
            }
        }),
    }
}

/// Whether `bytes`, read back as a `T`, is a value that serializes as the same bytes.
fn reads_back<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> bool {
    match T::deserialize(Raw(bytes)) {
        Ok(back) => back.serialize(Probe).is_ok_and(|again| again == bytes),
        Err(_) => false,
    }
}

/// Encodes `value` as JSON (recorded errors).
pub(crate) fn encode_json(json: String) -> Encoded {
    Encoded {
        codec: Codec::Json,
        data: Bytes::from(json),
    }
}

/// Decodes a record's `data` written with `codec`; the error says why not. A bytes
/// value's `Deserialize` can share parts of `data` through [`replayed_bytes`].
pub(crate) fn decode<T: DeserializeOwned>(codec: &Codec, data: &Bytes) -> Result<T, String> {
    match codec {
        Codec::Json => serde_json::from_slice(data).map_err(|e| e.to_string()),
        Codec::Bytes => {
            // Where the thread-local is gone (a thread tearing down), nothing is shared.
            let _restore = DECODING
                .try_with(|decoding| Decoding(decoding.replace(Some(data.clone()))))
                .ok();
            T::deserialize(Raw(data)).map_err(|e| e.to_string())
        }
        Codec::Unknown(name) => Err(format!(
            "the record uses codec `{name}`, which this build cannot read"
        )),
    }
}

/// Not one byte string: the probe's only error.
#[derive(Debug)]
struct NotBytes;

impl fmt::Display for NotBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a byte string")
    }
}

impl std::error::Error for NotBytes {}

impl ser::Error for NotBytes {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotBytes
    }
}

/// Accepts one byte string, and nothing else.
struct Probe;

/// Gives up on any shape but the ones listed in the module docs: the scalar methods
/// named, or (`compound`) every method of a variant, tuple, map or struct.
macro_rules! not_bytes {
    (compound) => {
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, NotBytes> {
            Err(NotBytes)
        }

        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotBytes> {
            Err(NotBytes)
        }

        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, NotBytes> {
            Err(NotBytes)
        }

        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, NotBytes> {
            Err(NotBytes)
        }

        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotBytes> {
            Err(NotBytes)
        }

        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, NotBytes> {
            Err(NotBytes)
        }

        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, NotBytes> {
            Err(NotBytes)
        }
    };
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, NotBytes> { Err(NotBytes) })*
    };
}

impl ser::Serializer for Probe {
    type Ok = Bytes;
    type Error = NotBytes;
    type SerializeSeq = Octets;
    type SerializeTuple = Impossible<Bytes, NotBytes>;
    type SerializeTupleStruct = Impossible<Bytes, NotBytes>;
    type SerializeTupleVariant = Impossible<Bytes, NotBytes>;
    type SerializeMap = Impossible<Bytes, NotBytes>;
    type SerializeStruct = Impossible<Bytes, NotBytes>;
    type SerializeStructVariant = Impossible<Bytes, NotBytes>;

    fn serialize_bytes(self, bytes: &[u8]) -> Result<Bytes, NotBytes> {
        Ok(Bytes::copy_from_slice(bytes))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, NotBytes> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Bytes, NotBytes> {
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Octets, NotBytes> {
        match len {
            // An empty sequence stays JSON (`[]`): it may be of anything.
            Some(0) => Err(NotBytes),
            len => Ok(Octets(Vec::with_capacity(len.unwrap_or(0)))),
        }
    }

    not_bytes! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
        serialize_u32(u32), serialize_u64(u64), serialize_u128(u128), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_none(),
        serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }

    not_bytes!(compound);
}

/// A sequence being probed: bytes so far.
struct Octets(Vec<u8>);

impl ser::SerializeSeq for Octets {
    type Ok = Bytes;
    type Error = NotBytes;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotBytes> {
        self.0.push(value.serialize(Octet)?);
        Ok(())
    }

    fn end(self) -> Result<Bytes, NotBytes> {
        if self.0.is_empty() {
            Err(NotBytes)
        } else {
            Ok(Bytes::from(self.0))
        }
    }
}

/// One element of a probed sequence: a `u8`, or not bytes.
struct Octet;

impl ser::Serializer for Octet {
    type Ok = u8;
    type Error = NotBytes;
    type SerializeSeq = Impossible<u8, NotBytes>;
    type SerializeTuple = Impossible<u8, NotBytes>;
    type SerializeTupleStruct = Impossible<u8, NotBytes>;
    type SerializeTupleVariant = Impossible<u8, NotBytes>;
    type SerializeMap = Impossible<u8, NotBytes>;
    type SerializeStruct = Impossible<u8, NotBytes>;
    type SerializeStructVariant = Impossible<u8, NotBytes>;

    fn serialize_u8(self, byte: u8) -> Result<u8, NotBytes> {
        Ok(byte)
    }

    not_bytes! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_i128(i128), serialize_u16(u16),
        serialize_u32(u32), serialize_u64(u64), serialize_u128(u128), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, NotBytes> {
        Err(NotBytes)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotBytes> {
        Err(NotBytes)
    }

    not_bytes!(compound);
}

/// Recorded bytes, offered to a value's `Deserialize` as a byte string (or, to a
/// sequence, as its `u8`s); any other shape is a type error naming what was expected.
struct Raw<'a>(&'a [u8]);

impl<'de> Deserializer<'de> for Raw<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bytes(self.0)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(SeqDeserializer::new(self.0.iter().copied()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}
