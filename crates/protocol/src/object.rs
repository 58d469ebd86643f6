//! Editing one key of a JSON object without re-serializing the rest.
//!
//! The gateway rewrites a few fields on the way through (a tool's `name` loses its route
//! prefix, a `progressToken` is mapped, a listed tool gains one). [`RawObject`] reads an
//! object as an ordered list of keys and *raw* values, so the values it does not touch
//! are copied byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON object with raw values, in document order.
#[derive(Debug, Clone, Default)]
pub struct RawObject<'a> {
    entries: Vec<(Cow<'a, str>, Value<'a>)>,
}

#[derive(Debug, Clone)]
enum Value<'a> {
    Borrowed(&'a RawValue),
    Owned(Box<RawValue>),
}

impl Value<'_> {
    fn get(&self) -> &RawValue {
        match self {
            Value::Borrowed(v) => v,
            Value::Owned(v) => v,
        }
    }
}

impl<'a> RawObject<'a> {
    /// Reads a JSON object. Anything else is an error.
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// An empty object.
    pub fn new() -> Self {
        RawObject::default()
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.get())
    }

    /// The value of `key` when it is a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }

    /// Sets `key`, replacing its value in place or appending it.
    pub fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = Value::Owned(value),
            None => self
                .entries
                .push((Cow::Owned(key.to_owned()), Value::Owned(value))),
        }
    }

    /// Sets `key` to a serializable value.
    pub fn set_value<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.set(key, crate::jsonrpc::raw(value));
    }

    /// Removes `key`, returning whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_ref())
    }

    /// Serializes the object.
    pub fn to_raw(&self) -> Box<RawValue> {
        crate::jsonrpc::raw(self)
    }
}

impl Serialize for RawObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k.as_ref(), v.get())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if entries
                        .iter()
                        .any(|(k, _): &(Cow<'_, str>, Value<'_>)| *k == key)
                    {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    entries.push((key, Value::Borrowed(value)));
                }
                Ok(RawObject { entries })
            }
        }
        deserializer.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_one_key_and_keeps_the_rest_byte_for_byte() {
        let json = r#"{"name":"docs__search","arguments":{"q":"a b",  "n":[1,2]},"_meta":{"progressToken":5}}"#;
        let mut obj = RawObject::parse(json).unwrap();
        assert_eq!(obj.get_str("name").as_deref(), Some("docs__search"));
        obj.set_value("name", "search");
        let out = obj.to_raw();
        assert_eq!(
            out.get(),
            r#"{"name":"search","arguments":{"q":"a b",  "n":[1,2]},"_meta":{"progressToken":5}}"#
        );
    }

    #[test]
    fn appends_removes_and_refuses_non_objects() {
        let mut obj = RawObject::parse("{}").unwrap();
        obj.set_value("a", &1);
        obj.set_value("b", "x");
        assert!(obj.remove("a"));
        assert!(!obj.remove("zz"));
        assert_eq!(obj.to_raw().get(), r#"{"b":"x"}"#);
        assert!(RawObject::parse("[1]").is_err());
        assert!(RawObject::parse(r#"{"a":1,"a":2}"#).is_err());
        let escaped = RawObject::parse(r#"{"n\u0061me":"x"}"#).unwrap();
        assert_eq!(escaped.get_str("name").as_deref(), Some("x"));
    }
}

#[cfg(test)]
mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same property as the `raw_object` fuzz target, on stable.
        #[test]
        fn reads_and_writes_back_the_same_keys(text in prop_oneof![".{0,80}", r#"\{("[a-z]{0,3}":(1|"x"|\[\]|\{\}|null),?){0,4}\}"#]) {
            if let Ok(object) = RawObject::parse(&text) {
                let raw = object.to_raw();
                let again = RawObject::parse(raw.get()).expect("written object parses");
                prop_assert!(again.keys().eq(object.keys()));
            }
        }
    }
}
