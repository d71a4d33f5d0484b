//! [`Guid`]: a 32-character uppercase hexadecimal identifier, constructible only valid.
//!
//! The format rule lives here and nowhere else. Generation uses `rand::random`, whose
//! `ThreadRng` is a ChaCha12 CSPRNG seeded from the operating system and reseeded periodically; all
//! 128 bits are random (no UUID version bits, no timestamp).

use std::fmt;
use std::str::FromStr;

/// Number of characters in a GUID.
pub const GUID_LEN: usize = 32;

/// A valid GUID: exactly 32 characters, each `0-9` or `A-F`.
///
/// There is no way to build a `Guid` from unchecked text: use [`Guid::parse`] (or
/// [`str::parse`]) or [`Guid::random`].
///
/// ```
/// use guidstore::Guid;
/// let guid = Guid::parse("9094E4C980C74043A4B586B420E69DDF").unwrap();
/// assert_eq!(guid.as_str(), "9094E4C980C74043A4B586B420E69DDF");
/// assert!(Guid::parse("9094e4c980c74043a4b586b420e69ddf").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; GUID_LEN]);

/// Why a text is not a [`Guid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuidError {
    /// The text does not have exactly 32 bytes.
    #[error("GUID must be 32 uppercase hexadecimal characters (got {0} bytes)")]
    Length(usize),
    /// A character outside `0-9A-F` at the given byte offset.
    #[error("GUID must be 32 uppercase hexadecimal characters (invalid character at position {0})")]
    Character(usize),
    /// A JSON `guid` value that is not a string.
    #[error("GUID must be a string of 32 uppercase hexadecimal characters")]
    NotAString,
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

impl Guid {
    /// Parses `text` as a GUID: exactly 32 bytes, each an ASCII digit or `A`–`F`.
    pub fn parse(text: &str) -> Result<Guid, GuidError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Parses raw bytes (for example an undecoded URL path segment) as a GUID.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Guid, GuidError> {
        let array: [u8; GUID_LEN] = bytes.try_into().map_err(|_| GuidError::Length(bytes.len()))?;
        if let Some(position) = array.iter().position(|b| !matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
            return Err(GuidError::Character(position));
        }
        Ok(Guid(array))
    }

    /// A new GUID of 128 bits from a cryptographically secure generator, as 32 uppercase hex digits.
    pub fn random() -> Guid {
        let bits: u128 = rand::random();
        let mut out = [0u8; GUID_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let nibble = (bits >> (4 * (GUID_LEN - 1 - i))) & 0xF;
            *slot = HEX_UPPER[nibble as usize];
        }
        Guid(out)
    }

    /// The GUID's 128 bits, most significant first: its 16-byte storage form. Byte order follows
    /// the text, so 16-byte keys sort as the GUIDs' texts do.
    pub(crate) fn to_bytes(self) -> [u8; GUID_LEN / 2] {
        let mut bytes = [0u8; GUID_LEN / 2];
        for (byte, pair) in bytes.iter_mut().zip(self.0.chunks_exact(2)) {
            if let [high, low] = pair {
                *byte = (hex_value(*high) << 4) | hex_value(*low);
            }
        }
        bytes
    }

    /// The GUID whose 128 bits are `bytes` (most significant first), the inverse of `to_bytes`.
    pub(crate) fn from_bytes(bytes: [u8; GUID_LEN / 2]) -> Guid {
        let mut out = [0u8; GUID_LEN];
        for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
            if let [high, low] = pair {
                *high = HEX_UPPER[usize::from(byte >> 4)];
                *low = HEX_UPPER[usize::from(byte & 0xF)];
            }
        }
        Guid(out)
    }

    /// The GUID as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (see `parse_bytes` and `random`).
        std::str::from_utf8(&self.0).expect("a Guid holds ASCII hexadecimal digits")
    }
}

/// The value of one uppercase hexadecimal digit (a `Guid` holds nothing else).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'A' + 10,
    }
}

impl FromStr for Guid {
    type Err = GuidError;
    fn from_str(text: &str) -> Result<Guid, GuidError> {
        Guid::parse(text)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.as_str())
    }
}

impl AsRef<str> for Guid {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Guid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Guid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Guid::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl rusqlite::types::ToSql for Guid {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(&self.0)))
    }
}

impl rusqlite::types::FromSql for Guid {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Guid> {
        let bytes = value.as_bytes()?;
        Guid::parse_bytes(bytes).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sixteen_bytes_round_trip_and_sort_as_the_text() {
        let low = Guid::parse("0123456789ABCDEF0123456789ABCDEF").unwrap();
        assert_eq!(low.to_bytes()[..3], [0x01, 0x23, 0x45]);
        assert_eq!(Guid::from_bytes(low.to_bytes()), low);
        for _ in 0..100 {
            let (a, b) = (Guid::random(), Guid::random());
            assert_eq!(Guid::from_bytes(a.to_bytes()), a);
            assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.as_str().cmp(b.as_str()));
        }
    }

    #[test]
    fn parse_accepts_only_32_uppercase_hex() {
        let cases: &[(&str, bool)] = &[
            ("9094E4C980C74043A4B586B420E69DDF", true),
            ("00000000000000000000000000000000", true),
            ("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", true),
            ("9094e4c980c74043a4b586b420e69ddf", false),
            ("9094E4C9-80C7-4043-A4B5-86B420E69DDF", false),
            ("{9094E4C980C74043A4B586B420E69DDF}", false),
            ("9094E4C980C74043A4B586B420E69DD", false),
            ("9094E4C980C74043A4B586B420E69DDF0", false),
            ("", false),
            ("9094E4C980C74043A4B586B420E69DDÉ", false),
            ("９094E4C980C74043A4B586B420E69DD", false),
            ("9094E4C980C74043A4B586B420E69DG0", false),
            (" 094E4C980C74043A4B586B420E69DDF", false),
        ];
        for (text, ok) in cases {
            assert_eq!(Guid::parse(text).is_ok(), *ok, "{text:?}");
        }
    }

    #[test]
    fn random_guids_are_valid_and_distinct() {
        let a = Guid::random();
        let b = Guid::random();
        assert_ne!(a, b);
        assert_eq!(Guid::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let guid = Guid::random();
        let json = serde_json::to_string(&guid).unwrap();
        assert_eq!(json, format!("\"{guid}\""));
        assert_eq!(serde_json::from_str::<Guid>(&json).unwrap(), guid);
        assert!(serde_json::from_str::<Guid>("\"abc\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Guid::parse_bytes(&bytes);
        }

        #[test]
        fn parse_round_trips(text in "[0-9A-F]{32}") {
            let guid = Guid::parse(&text).unwrap();
            prop_assert_eq!(guid.as_str(), text.as_str());
            prop_assert_eq!(guid.to_string().parse::<Guid>().unwrap(), guid);
        }

        #[test]
        fn parse_rejects_other_lengths(text in "[0-9A-F]{0,31}|[0-9A-F]{33,40}") {
            prop_assert!(Guid::parse(&text).is_err());
        }
    }
}
