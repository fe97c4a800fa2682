//! Base group keys: dimension values as slots, encoded compactly, and the interner that
//! turns strings into slot ids.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};
use serde::{Deserialize, Serialize};

/// One dimension value in a base group's key. `Str` holds the id of the text in the
/// store's [`Interner`], so equal texts have equal slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) enum Slot {
    Null,
    U64(u64),
    I64(i64),
    Str(usize),
    Time(u64),
}

impl Slot {
    /// The value as a number, as [`Value::as_i128`] reads it.
    pub(super) fn as_i128(self) -> Option<i128> {
        match self {
            Slot::U64(v) | Slot::Time(v) => Some(v.into()),
            Slot::I64(v) => Some(v.into()),
            Slot::Null | Slot::Str(_) => None,
        }
    }
}

/// A base group's key: its second and its dimension values, encoded compactly (a tag byte
/// per slot, then the value as a varint: about 40 bytes for a process event instead of
/// 200 as slots), with the hash of both kept alongside: a table resize re-hashes every
/// key, and reading it here saves following each key's pointer.
pub(super) struct BaseKey {
    pub(super) hash: u64,
    pub(super) second: u64,
    pub(super) dims: Box<[u8]>,
}

/// A key borrowed from the sink's buffer, to look groups up without allocating.
pub(super) struct KeyRef<'a> {
    pub(super) hash: u64,
    pub(super) second: u64,
    pub(super) dims: &'a [u8],
}

impl Hash for BaseKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for BaseKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.second == other.second && self.dims == other.dims
    }
}

impl Eq for BaseKey {}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<BaseKey> for KeyRef<'_> {
    fn equivalent(&self, key: &BaseKey) -> bool {
        self.hash == key.hash && self.second == key.second && *self.dims == *key.dims
    }
}

impl KeyRef<'_> {
    pub(super) fn to_owned(&self) -> BaseKey {
        BaseKey {
            hash: self.hash,
            second: self.second,
            dims: self.dims.into(),
        }
    }
}

const TAG_NULL: u8 = 0;
const TAG_U64: u8 = 1;
const TAG_I64: u8 = 2;
const TAG_STR: u8 = 3;
const TAG_TIME: u8 = 4;

pub(super) fn encode_slot(out: &mut Vec<u8>, slot: Slot) {
    let (tag, word) = match slot {
        Slot::Null => (TAG_NULL, 0),
        Slot::U64(v) => (TAG_U64, v),
        // Zigzag, so small negative numbers stay short.
        Slot::I64(v) => (TAG_I64, ((v << 1) ^ (v >> 63)) as u64),
        Slot::Str(id) => (TAG_STR, id as u64),
        Slot::Time(v) => (TAG_TIME, v),
    };
    out.push(tag);
    if tag != TAG_NULL {
        let mut word = word;
        while word >= 0x80 {
            out.push(word as u8 | 0x80);
            word >>= 7;
        }
        out.push(word as u8);
    }
}

/// Decodes `n` slots into `out`. Keys are only ever written by [`encode_slot`]; should
/// one run short anyway, the missing slots read as null rather than panic.
pub(super) fn decode_slots(bytes: &[u8], n: usize, out: &mut Vec<Slot>) {
    out.clear();
    let mut at = 0;
    while out.len() < n {
        let Some(&tag) = bytes.get(at) else {
            out.push(Slot::Null);
            continue;
        };
        at += 1;
        let mut word = 0u64;
        if tag != TAG_NULL {
            let mut shift = 0;
            while let Some(&byte) = bytes.get(at) {
                at += 1;
                if shift < 64 {
                    word |= u64::from(byte & 0x7f) << shift;
                }
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        out.push(match tag {
            TAG_U64 => Slot::U64(word),
            TAG_I64 => Slot::I64((word >> 1) as i64 ^ -((word & 1) as i64)),
            TAG_STR => Slot::Str(word as usize),
            TAG_TIME => Slot::Time(word),
            _ => Slot::Null,
        });
    }
}

/// Distinct strings, each kept once; a string's id is its index in `strings`.
#[derive(Default)]
pub(super) struct Interner {
    pub(super) ids: HashMap<Arc<str>, usize>,
    pub(super) strings: Vec<Arc<str>>,
}

impl Interner {
    pub(super) fn intern(&mut self, text: &str) -> usize {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let text: Arc<str> = text.into();
        let id = self.strings.len();
        self.strings.push(text.clone());
        self.ids.insert(text, id);
        id
    }
}
